"""A tiny random-weight gpt-oss for end-to-end runs of the program (tests/cli_test.sh).

    /work/venv/bin/python tools/ref/make_tiny_gptoss_example.py   (torch, transformers 5, tokenizers)

Writes examples/models/tiny-gptoss/: a GptOssForCausalLM shaped as
tests/fixtures/tiny-gptoss (hidden 64, 2 layers: sliding window 8 then full,
4 heads, 2 KV heads, head_dim 16, 4 experts top-2, intermediate 32, gpt-oss's
yarn rope, sinks, biases) with the byte-level BPE of examples/models/tiny-llama
(so that it trains on examples/data/grading) and, like o200k_harmony, the
harmony format's special tokens added after it (so that it trains on chat
records in harmony and generation stops at <|return|> / <|call|>). As the
released gpt-oss: no BOS added by the tokenizer, the vocabulary padded past the
tokenizer's ids, eos_token_id [<|return|>, <|endoftext|>, <|call|>] in
generation_config.json, the harmony template as chat_template.jinja.
transformers' own initialisation from a fixed seed, not pretrained, except that
the biases (which transformers zeroes) are drawn like the weights, so that
loading and applying them matters. Saved by save_pretrained in bf16, the
experts dequantized as a bf16 save of the released checkpoints writes them (not
MXFP4). Every file has the same bytes on each run."""
import json
import os
import shutil

import torch
from transformers import GptOssConfig, GptOssForCausalLM, PreTrainedTokenizerFast

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "models")
LLAMA = os.path.join(ROOT, "tiny-llama")
OUT = os.path.join(ROOT, "tiny-gptoss")

TEMPLATE = os.path.join(os.path.dirname(__file__), "chat_templates", "gpt-oss.jinja")
# o200k_harmony's special tokens that the harmony format writes, in its order (ids 199998...)
HARMONY = ["<|startoftext|>", "<|endoftext|>", "<|return|>", "<|constrain|>", "<|channel|>", "<|start|>",
           "<|end|>", "<|message|>", "<|call|>"]

tokenizer = json.load(open(os.path.join(LLAMA, "tokenizer.json")))
first = 1 + max(max(tokenizer["model"]["vocab"].values()), max(t["id"] for t in tokenizer["added_tokens"]))
for i, content in enumerate(HARMONY):
    tokenizer["added_tokens"].append({"id": first + i, "content": content, "single_word": False, "lstrip": False,
                                      "rstrip": False, "normalized": False, "special": True})
tokenizer["post_processor"] = None  # gpt-oss adds no BOS
ids = {content: first + i for i, content in enumerate(HARMONY)}
vocab = (first + len(HARMONY) + 7) // 8 * 8

torch.manual_seed(0)
config = GptOssConfig(vocab_size=vocab, hidden_size=64, intermediate_size=32, num_hidden_layers=2,
                      layer_types=["sliding_attention", "full_attention"], num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=2,
                      sliding_window=8, max_position_embeddings=1024, rms_norm_eps=1e-5, swiglu_limit=7.0,
                      attention_bias=True, tie_word_embeddings=False, router_aux_loss_coef=0.0,
                      output_router_logits=False,
                      # openai/gpt-oss-20b's rope, written the way transformers 5 keeps it
                      rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0,
                                       "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                                       "original_max_position_embeddings": 4096},
                      bos_token_id=ids["<|startoftext|>"], eos_token_id=ids["<|return|>"],
                      pad_token_id=ids["<|endoftext|>"],
                      dtype="bfloat16")
model = GptOssForCausalLM(config)
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.normal_(0, config.initializer_range)
model = model.to(torch.bfloat16)
os.makedirs(OUT, exist_ok=True)
model.generation_config.eos_token_id = [ids["<|return|>"], ids["<|endoftext|>"], ids["<|call|>"]]
model.save_pretrained(OUT, safe_serialization=True)
with open(os.path.join(OUT, "tokenizer.json"), "w") as f:
    json.dump(tokenizer, f, ensure_ascii=False)
with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
    json.dump({"bos_token": "<|startoftext|>", "eos_token": "<|return|>", "pad_token": "<|endoftext|>",
               "model_max_length": 1024, "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=1)
shutil.copyfile(TEMPLATE, os.path.join(OUT, "chat_template.jinja"))

# The tokenizer loads in Hugging Face tokenizers, matches each marker whole, adds no BOS,
# and renders the template's text to what transformers' tokenizer gives.
fast = PreTrainedTokenizerFast.from_pretrained(OUT)
text = fast.apply_chat_template([{"role": "user", "content": "Q: 2+2? A: 4."}], tokenize=False,
                                add_generation_prompt=True)
assert text.endswith("<|end|><|start|>assistant"), text
encoded = fast(text)["input_ids"]
assert encoded[0] == ids["<|start|>"] and encoded.count(ids["<|start|>"]) == text.count("<|start|>"), encoded
assert all(fast.convert_tokens_to_ids(t) == ids[t] for t in HARMONY)
size = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
print("params", sum(p.numel() for p in model.parameters()), "files", sorted(os.listdir(OUT)), "bytes", size)
assert size < 1 << 20, "examples/models/tiny-gptoss is meant to stay under 1 MB"
