"""The round-trip fixture: an adapter written by `tune train`, loaded by PEFT on
transformers' Llama, must give tune's logits (tests/test_llama.c,
test_peft_roundtrip_logits, checks tune's side).

    /work/venv-ref/bin/python tools/ref/make_peft_roundtrip.py [ADAPTER_DIR [BASE_DIR]]

ADAPTER_DIR (default tests/fixtures/peft_roundtrip) holds adapter_config.json +
adapter_model.safetensors as tune wrote them; BASE_DIR (default
examples/models/tiny-llama) is the base model. Writes ADAPTER_DIR/logits.safetensors:
  - input_ids int32 [T]: three prompts tokenized by the model's tokenizer.json
    (with its BOS), cut to 16, 14 and 10 tokens, laid end to end;
  - starts int32 [S + 1]: sequence s is tokens [starts[s], starts[s+1]);
  - logits float32 [T, V]: transformers' logits (fp32, eval mode) of every
    position, each sequence run on its own.
The fixture is kept small (all of it under 300 KB), hence the short sequences.

Before writing, it makes sure PEFT did load the adapter, so that an ignored
one cannot make a fixture equal to the base model's: every lora_A/lora_B of
the file is in the PEFT model with the same values, every lora_B is non-zero,
and the logits differ from the base model's (adapter disabled) by a relative
L2 error above MIN_ADAPTER_EFFECT in every sequence."""
import os
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
PROMPTS = [
    "Grade the answers.\nQ1: Why is the sky blue?\nA: Air scatters blue light more than red.\n(5 points)\n",
    "Why does ice float on water?\nA: Ice is less dense than liquid water.\n",
    "Score: 4/5\nFeedback: Clear, but the explanation is brief.",
]
LENGTHS = [16, 14, 10]
MIN_ADAPTER_EFFECT = 1e-2


def rel_l2(got, want):
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


def check_adapter_loaded(model, adapter_file):
    """Every tensor of the file is in the PEFT model, equal (PEFT names them
    ...lora_A.weight; in the model they are ...lora_A.default.weight)."""
    saved = load_file(adapter_file)
    params = dict(model.named_parameters())
    for name, t in saved.items():
        key = name.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight",
                                                                              ".lora_B.default.weight")
        if key not in params:
            sys.exit(f"{name}: not in the PEFT model (as {key})")
        if not torch.equal(params[key].detach(), t.float()):
            sys.exit(f"{name}: PEFT holds other values than the file")
        if ".lora_B." in name and not t.abs().max() > 0:
            sys.exit(f"{name}: zero (an untrained adapter would not test the load)")
    n_lora = sum(".lora_" in k for k in params)
    if n_lora != len(saved):
        sys.exit(f"the PEFT model has {n_lora} LoRA tensors, the file {len(saved)}")
    return len(saved)


def main():
    adapter = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures", "peft_roundtrip")
    base = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "examples", "models", "tiny-llama")
    tok = Tokenizer.from_file(os.path.join(base, "tokenizer.json"))
    seqs = []
    for prompt, n in zip(PROMPTS, LENGTHS):
        ids = tok.encode(prompt, add_special_tokens=True).ids
        if len(ids) < n:
            sys.exit(f"{prompt!r}: {len(ids)} tokens, fewer than {n}")
        seqs.append(torch.tensor(ids[:n], dtype=torch.int64))

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="eager")
    model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    n_tensors = check_adapter_loaded(model, os.path.join(adapter, "adapter_model.safetensors"))

    logits = []
    with torch.no_grad():
        for s in seqs:
            with_adapter = model(input_ids=s[None]).logits[0].float()
            with model.disable_adapter():
                without = model(input_ids=s[None]).logits[0].float()
            effect = rel_l2(with_adapter, without)
            print(f"{len(s)} tokens: adapter moves the logits by {effect:.3g} (relative L2)")
            if not effect > MIN_ADAPTER_EFFECT:
                sys.exit(f"the adapter changes the logits by {effect:.3g} only: did PEFT load it?")
            logits.append(with_adapter)

    starts = [0]
    for s in seqs:
        starts.append(starts[-1] + len(s))
    out = {
        "input_ids": torch.cat(seqs).to(torch.int32),
        "starts": torch.tensor(starts, dtype=torch.int32),
        "logits": torch.cat(logits).contiguous(),
    }
    path = os.path.normpath(os.path.join(adapter, "logits.safetensors"))
    save_file(out, path)
    print(f"{path}: {len(seqs)} sequences, {starts[-1]} positions, {n_tensors} LoRA tensors checked loaded")


if __name__ == "__main__":
    main()
