"""Checks that an adapter written by `tune train` loads in PEFT and behaves as in tune:
PeftModel.from_pretrained on the base, then greedy generation of the same prompt must
give the same tokens as `tune generate` (whose output is passed in).

    /work/venv-ref/bin/python tools/ref/check_peft_load.py BASE ADAPTER PROMPT_FILE TUNE_OUTPUT_FILE

A check by hand, of tokens; the logits of every position are compared in `make test`
(tests/test_llama.c, fixture tests/fixtures/peft_roundtrip made by make_peft_roundtrip.py).
"""
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base, adapter, prompt_file, tune_file = sys.argv[1:5]
prompt = open(prompt_file).read()
tok = AutoTokenizer.from_pretrained(base)
model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
model = PeftModel.from_pretrained(model, adapter)
model.eval()
ids = tok(prompt, return_tensors="pt").input_ids
out = model.generate(ids, max_new_tokens=32, do_sample=False, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.eos_token_id)
text = prompt + tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
tune_text = open(tune_file).read().rstrip("\n")
print("peft :", repr(text[len(prompt):]))
print("tune :", repr(tune_text[len(prompt):]))
sys.exit(0 if text == tune_text else 1)
