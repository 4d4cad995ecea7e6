"""A tiny random-weight gpt-oss for end-to-end runs of the program (tests/cli_test.sh).

    /work/venv-ref/bin/python tools/ref/make_tiny_gptoss_example.py   (torch, transformers 5)

Writes examples/models/tiny-gptoss/: a GptOssForCausalLM shaped as
tests/fixtures/tiny-gptoss (hidden 64, 2 layers: sliding window 8 then full,
4 heads, 2 KV heads, head_dim 16, 4 experts top-2, intermediate 32, gpt-oss's
yarn rope, sinks, biases) but with the vocabulary of examples/models/tiny-llama,
whose tokenizer.json and tokenizer_config.json it copies, so that it trains on
examples/data/grading. transformers' own initialisation from a fixed seed, not
pretrained, except that the biases (which transformers zeroes) are drawn like
the weights, so that loading and applying them matters. Saved by
save_pretrained in bf16, the experts dequantized as a bf16 save of the released
checkpoints writes them (not MXFP4). Every file has the same bytes on each run."""
import json
import os
import shutil

import torch
from transformers import GptOssConfig, GptOssForCausalLM

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "models")
LLAMA = os.path.join(ROOT, "tiny-llama")
OUT = os.path.join(ROOT, "tiny-gptoss")

llama = json.load(open(os.path.join(LLAMA, "config.json")))
generation = json.load(open(os.path.join(LLAMA, "generation_config.json")))
assert (llama["bos_token_id"], llama["eos_token_id"]) == (generation["bos_token_id"], generation["eos_token_id"])

torch.manual_seed(0)
config = GptOssConfig(vocab_size=llama["vocab_size"], hidden_size=64, intermediate_size=32, num_hidden_layers=2,
                      layer_types=["sliding_attention", "full_attention"], num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=2,
                      sliding_window=8, max_position_embeddings=1024, rms_norm_eps=1e-5, swiglu_limit=7.0,
                      attention_bias=True, tie_word_embeddings=False, router_aux_loss_coef=0.0,
                      output_router_logits=False,
                      # openai/gpt-oss-20b's rope, written the way transformers 5 keeps it
                      rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0,
                                       "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                                       "original_max_position_embeddings": 4096},
                      bos_token_id=llama["bos_token_id"], eos_token_id=llama["eos_token_id"], pad_token_id=None,
                      dtype="bfloat16")
model = GptOssForCausalLM(config)
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.normal_(0, config.initializer_range)
model = model.to(torch.bfloat16)
os.makedirs(OUT, exist_ok=True)
model.save_pretrained(OUT, safe_serialization=True)
for name in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copyfile(os.path.join(LLAMA, name), os.path.join(OUT, name))
size = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
print("params", sum(p.numel() for p in model.parameters()), "files", sorted(os.listdir(OUT)), "bytes", size)
assert size < 1 << 20, "examples/models/tiny-gptoss is meant to stay under 1 MB"
