#!/usr/bin/env python3
"""Writes tests/fuzz/seeds/<target>/: seed inputs in the layout each fuzz target reads (an
option byte first, NUL-separated parts, one chat case per file), made from the fixtures of
tests/fixtures and the presets' config.json. Run from the repository root after changing a
fixture or a target's input layout; the outputs are committed, so neither make test nor CI
needs Python for them. Standard library only; `build/tune` must be built (for the presets).

Targets that read a fixture as it is (safetensors, tokenizer files) take it straight from
tests/fixtures (tests/fuzz/run.sh lists them) and get nothing here."""
import json
import os
import shutil
import subprocess

FIX = "tests/fixtures"
OUT = "tests/fuzz/seeds"


def write(target, name, data):
    os.makedirs(os.path.join(OUT, target), exist_ok=True)
    with open(os.path.join(OUT, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def encode_seeds():
    # fuzz_encode: byte 0 = tokenizer (bits 0-2, 7 of them) | add-special (8) | specials as
    # text (16); then the text. The parity corpus of the tokenizer tests, spread over all.
    cases = json.load(open(f"{FIX}/tokenizer/llama3_style.expected.json"))["cases"]
    for i, c in enumerate(cases):
        opt = (i % 7) | ((i // 7) % 4) << 3
        write("fuzz_encode", f"case{i:02d}", bytes([opt]) + c["text"].encode())


def template_seeds():
    # fuzz_template: PROMPT \0 COMPLETION \0 RECORD, or COMPLETION \0 RECORD.
    t = json.load(open(f"{FIX}/data/grading.template.json"))
    records = []
    for name in sorted(os.listdir(f"{FIX}/data/grading")):
        records += json.load(open(f"{FIX}/data/grading/{name}"))
    for i, r in enumerate(records):
        write("fuzz_template", f"grading{i}", "\0".join([t["prompt"], t["completion"], json.dumps(r)]))
    syntax = [
        ("Q: {q}\n", "A: {a.b} {list[1].x} {missing?}", {"q": "x", "a": {"b": 2.5}, "list": [{}, {"x": True}]}),
        ("{#each items}{@index}/{@number}: {.}\n{/each}", "{{literal}} {n}", {"items": ["a", "b"], "n": None}),
        ("{#each outer}{#each inner}{v}{w}{/each}{/each}", "{#each none?}x{/each}",
         {"outer": [{"inner": [{"v": 1}], "w": "o"}], "w": "r"}),
        (None, "text only: {t}", {"t": "hello"}),
    ]
    for i, (p, c, r) in enumerate(syntax):
        parts = ([p] if p is not None else []) + [c, json.dumps(r)]
        write("fuzz_template", f"syntax{i}", "\0".join(parts))


def dataset_seeds():
    # fuzz_dataset: byte 0 = jsonl (1) | chat format << 1 | chat (8) | template (16) |
    # add-special (32) | max_length 32 (64) | keep end (128); then the file.
    def put(name, opt, path):
        write("fuzz_dataset", name, bytes([opt]) + open(path, "rb").read())

    put("text", 1 | 32, f"{FIX}/data/text.jsonl")
    put("prompt_completion", 1 | 64, f"{FIX}/data/prompt_completion.jsonl")
    for fmt in range(4):
        put(f"chat{fmt}", 1 | fmt << 1 | 8 | (128 if fmt == 3 else 0), f"{FIX}/data/chat.jsonl")
    put("grading", 16 | 64, f"{FIX}/data/grading/train_1.json")
    for name in sorted(os.listdir(f"{FIX}/data/bad")):
        put(f"bad_{name}", int(name.endswith(".jsonl")) | 8, f"{FIX}/data/bad/{name}")


def chat_seeds():
    # fuzz_chat: {"options": ..., "messages": [...]}, one case of the chat fixtures a file.
    for fmt in ("harmony", "llama3", "chatml", "mistral"):
        for i, c in enumerate(json.load(open(f"{FIX}/chat/{fmt}.json"))["cases"]):
            case = {"options": c.get("options", {}), "messages": c["messages"]}
            write("fuzz_chat", f"{fmt}{i:02d}", json.dumps(case, ensure_ascii=False))


def spec_seeds():
    # fuzz_spec: the presets' config.json (every family and RoPE type tune knows).
    names = subprocess.run(["build/tune", "inspect", "--help"], capture_output=True, text=True,
                           check=True).stdout.split("presets:")[1].split()
    for name in names:
        text = subprocess.run(["build/tune", "inspect", name, "--config"], capture_output=True,
                              text=True, check=True).stdout
        write("fuzz_spec", name, text)


if __name__ == "__main__":
    shutil.rmtree(OUT, ignore_errors=True)
    encode_seeds()
    template_seeds()
    dataset_seeds()
    chat_seeds()
    spec_seeds()
    for t in sorted(os.listdir(OUT)):
        print(f"{OUT}/{t}: {len(os.listdir(os.path.join(OUT, t)))} seeds")
