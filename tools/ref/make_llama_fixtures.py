"""Golden fixtures for the Llama-family engine, made by transformers + PEFT.

    /work/venv-ref/bin/python tools/ref/make_llama_fixtures.py   (any venv with torch, transformers, peft)

For each of two tiny random models, tests/fixtures/tiny-llama (Llama: llama3
rope scaling, GQA, untied head) and tests/fixtures/tiny-qwen2 (Qwen2: q/k/v
biases, tied embeddings), writes config.json + model.safetensors (fp32), a
PEFT LoRA adapter on all seven linears saved by PEFT itself (adapter/, with
lora_B made non-zero so every gradient is), and golden.safetensors:
  - a packed batch of two sequences, the loss (mean over the labelled tokens of
    both) and the gradient of every LoRA tensor, computed by running each
    sequence through the PEFT model separately (transformers' own causal mask);
  - the next-token logits after the first sequence (generation);
  - two weights of PEFT's merge_and_unload() (for `tune merge`);
  - three AdamW steps on that batch with a linear warmup schedule and
    gradient clipping: each step's loss and pre-clip gradient norm, and every
    LoRA tensor after the third;
  - full fine-tuning: the gradient of every parameter of the base model."""
import json
import os

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import (AutoModelForCausalLM, LlamaConfig, Qwen2Config, get_linear_schedule_with_warmup)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures")
SHAPE = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
             attn_implementation="eager", dtype="float32")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def batch_loss(model, seqs, labels, starts):
    total = torch.zeros((), dtype=torch.float64)
    for s, (a, b) in zip(seqs, zip(starts[:-1], starts[1:])):
        logits = model(input_ids=s[None]).logits[0]
        total = total + torch.nn.functional.cross_entropy(logits.double(), labels[a:b], ignore_index=-100,
                                                          reduction="sum")
    return total


def lora_name(name):
    return name.replace("base_model.model.", "")


def make(name, config, seed):
    out = os.path.join(FIXTURES, name)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).float()
    with torch.no_grad():  # norms and biases away from their init so their use is tested
        for pname, p in model.named_parameters():
            if "norm" in pname:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif pname.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)

    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      target_modules=TARGETS)
    peft_model = get_peft_model(model, lora)
    with torch.no_grad():
        for pname, p in peft_model.named_parameters():
            if "lora_B" in pname:
                p.copy_(0.1 * torch.randn_like(p))
    peft_model.save_pretrained(os.path.join(out, "adapter"))

    # Two sequences packed end to end; labels[t] is the id expected after token t.
    seqs = [torch.randint(0, 96, (7,)), torch.randint(0, 96, (5,))]
    ids, labels, starts = [], [], [0]
    for s in seqs:
        ids.append(s)
        labels.append(torch.cat([s[1:], torch.tensor([-100])]))
        starts.append(starts[-1] + len(s))
    labels[0][:2] = -100  # a masked prompt
    ids, labels = torch.cat(ids), torch.cat(labels)
    count = int((labels != -100).sum())
    golden = {"input_ids": ids.to(torch.int32), "labels": labels.to(torch.int32),
              "starts": torch.tensor(starts, dtype=torch.int32), "count": torch.tensor([count], dtype=torch.int32)}

    peft_model.eval()
    with torch.no_grad():  # for generation: the next-token logits after the first sequence
        golden["last_logits"] = peft_model(input_ids=seqs[0][None]).logits[0, -1].contiguous()
    peft_model.train()
    total = batch_loss(peft_model, seqs, labels, starts)
    (total / count).backward()
    golden["loss_sum"] = total.detach().reshape(1).float()
    trainable = [(n, p) for n, p in peft_model.named_parameters() if p.requires_grad]
    for pname, p in trainable:
        golden[lora_name(pname) + ".grad"] = p.grad.detach().contiguous()

    # Three optimizer steps, as tune's trainer takes them: AdamW, a linear
    # schedule with one warmup step, clipping at 0.5.
    peft_model.zero_grad()
    opt = torch.optim.AdamW([p for _, p in trainable], lr=1e-2, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=1, num_training_steps=4)
    losses, norms = [], []
    for _ in range(3):
        total = batch_loss(peft_model, seqs, labels, starts)
        (total / count).backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_([p for _, p in trainable], 0.5)))
        losses.append(float(total / count))
        opt.step()
        sched.step()
        opt.zero_grad()
    golden["steps.loss"] = torch.tensor(losses, dtype=torch.float64)
    golden["steps.grad_norm"] = torch.tensor(norms, dtype=torch.float64)
    for pname, p in trainable:
        golden["steps." + lora_name(pname)] = p.detach().contiguous().clone()

    # PEFT's own merge of the saved (untrained) adapter: W + (alpha / r) B A.
    fresh = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32),
                                      os.path.join(out, "adapter"))
    merged = fresh.merge_and_unload().state_dict()
    for wname in ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"]:
        golden["merged." + wname] = merged[wname].detach().contiguous()
    # Full fine-tuning: the gradient of every parameter of the base model.
    base = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    base.train()
    (batch_loss(base, seqs, labels, starts) / count).backward()
    for pname, p in base.named_parameters():
        golden["full." + pname + ".grad"] = p.grad.detach().contiguous()
    save_file(golden, os.path.join(out, "golden.safetensors"))
    print(name, "loss", float(golden["loss_sum"]) / count, "steps", losses)


make("tiny-llama", LlamaConfig(**SHAPE, head_dim=8, tie_word_embeddings=False,
                                rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                              "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
     1234)
make("tiny-qwen2", Qwen2Config(**SHAPE, tie_word_embeddings=True, use_sliding_window=False), 99)
