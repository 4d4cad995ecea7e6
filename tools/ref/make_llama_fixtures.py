"""Golden fixtures for the Llama-family engine, made by transformers + PEFT.

    /work/venv-ref/bin/python tools/ref/make_llama_fixtures.py   (any venv with torch, transformers, peft)

Writes tests/fixtures/tiny-llama/: a tiny random LlamaForCausalLM (llama3 rope
scaling, GQA, untied head) as config.json + model.safetensors (fp32), a PEFT
LoRA adapter on all seven linears saved by PEFT itself (adapter/, with lora_B
made non-zero so every gradient is), and golden.safetensors: a packed batch of
two sequences, the loss (mean over labelled tokens of both) and the gradient
of every LoRA tensor, computed by running each sequence through the PEFT model
separately (transformers' own causal mask, no packing tricks), and two weights
of PEFT's merge_and_unload() for `tune merge`."""
import json
import os

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "tiny-llama")
torch.manual_seed(1234)

config = LlamaConfig(
    vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
    rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
    attn_implementation="eager", dtype="float32",
)
model = LlamaForCausalLM(config).float()
with torch.no_grad():  # norms away from 1 so their use is tested
    for name, p in model.named_parameters():
        if "norm" in name:
            p.copy_(1 + 0.1 * torch.randn_like(p))
os.makedirs(OUT, exist_ok=True)
model.save_pretrained(OUT, safe_serialization=True)

lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                  target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
peft_model = get_peft_model(model, lora)
with torch.no_grad():
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.copy_(0.1 * torch.randn_like(p))
peft_model.save_pretrained(os.path.join(OUT, "adapter"))

# Two sequences packed end to end; labels[t] is the id expected after token t.
seqs = [torch.randint(0, 96, (7,)), torch.randint(0, 96, (5,))]
ids, labels, starts = [], [], [0]
for s in seqs:
    lab = torch.cat([s[1:], torch.tensor([-100])])
    ids.append(s)
    labels.append(lab)
    starts.append(starts[-1] + len(s))
labels[0][:2] = -100  # a masked prompt
ids, labels = torch.cat(ids), torch.cat(labels)
count = int((labels != -100).sum())

peft_model.eval()
with torch.no_grad():  # for generation: the next-token logits after the first sequence
    last_logits = peft_model(input_ids=seqs[0][None]).logits[0, -1].contiguous()
peft_model.train()
total = torch.zeros((), dtype=torch.float64)
for s, (a, b) in zip(seqs, zip(starts[:-1], starts[1:])):
    logits = peft_model(input_ids=s[None]).logits[0]
    total = total + torch.nn.functional.cross_entropy(
        logits.double(), labels[a:b], ignore_index=-100, reduction="sum")
(total / count).backward()

golden = {
    "input_ids": ids.to(torch.int32), "labels": labels.to(torch.int32),
    "starts": torch.tensor(starts, dtype=torch.int32),
    "loss_sum": total.detach().reshape(1).float(), "count": torch.tensor([count], dtype=torch.int32),
}
for name, p in peft_model.named_parameters():
    if p.requires_grad:
        golden[name.replace("base_model.model.", "") + ".grad"] = p.grad.detach().contiguous()
golden["last_logits"] = last_logits
merged = peft_model.merge_and_unload()  # PEFT's own merge: W + (alpha / r) B A
for name in ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"]:
    golden["merged." + name] = merged.state_dict()[name].detach().contiguous()
save_file(golden, os.path.join(OUT, "golden.safetensors"))
json.dump({"loss_mean": float(total / count), "count": count}, open(os.path.join(OUT, "golden.json"), "w"))
print("loss", float(total / count), "count", count, "grads", sum(1 for k in golden if k.endswith(".grad")))
