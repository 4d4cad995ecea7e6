#!/usr/bin/env python3
"""Makes tests/fixtures/data/expected.json, the parity fixture of tests/test_data.c.

For the seed-style grading records (tests/fixtures/data/grading/*.json, in name order, as the
seeds' load_dataset("json", data_files="./data/*.json") reads them) and the prompt/completion
records (tests/fixtures/data/prompt_completion.jsonl) it writes what the Hugging Face stack
gives, with the llama3_style test tokenizer through the `tokenizers` library:

  prompt, completion  the grading template (tests/fixtures/data/grading.template.json)
                      written again here as a Python f-string function, independently of the
                      C template engine, so the test checks the engine against Python's str()
  ids                 tokenizer(prompt + completion) (add_special_tokens=True: BOS) + [eos],
                      the seeds' input_ids before truncation
  trained             per token, 1 when the token ends after the prompt's last character (the
                      token offsets `tokenizers` reports) or is the appended EOS: the loss
                      mask tune documents in src/data/dataset.h
  seed_prompt_len     len(tokenizer(prompt)["input_ids"]): the seeds mask that many tokens
  straddle            the two rules disagree (a token spans the prompt/completion boundary)

eos: "<|end_of_text|>" (Llama 3's eos_token).

Run: /work/venv-ref/bin/python tools/ref/make_data_fixtures.py   (from the repo root; needs
     the tokenizers package)
"""
import glob
import json

from tokenizers import Tokenizer

DATA = "tests/fixtures/data"
TOKENIZER = "tests/fixtures/tokenizer/llama3_style.tokenizer.json"
EOS = "<|end_of_text|>"


def grading_prompt(r):
    out = "Grade the student's answers.\n"
    for i, q in enumerate(r["rubric_alignment"]):
        out += f"Q{i + 1}: {q['question']}\nA: {q['answer']}\n({q['max_score']} points)\n"
    return out + "Grade:\n"


def grading_completion(r):
    out = f"Score: {r['score']}/{r['max_score']} ({r['normalized_score']})\n"
    for i, q in enumerate(r["rubric_alignment"]):
        out += f"Q{i + 1}: {q['score']}/{q['max_score']}\n"
    feedback = r["feedback"]
    return out + f"Feedback: {'' if feedback is None else feedback}"


def case(tok, eos_id, prompt, completion):
    enc = tok.encode(prompt + completion)
    trained = [1 if end > len(prompt) else 0 for (_, end) in enc.offsets]
    seed_prompt_len = len(tok.encode(prompt).ids)
    first = trained.index(1) if 1 in trained else len(trained)
    return {
        "prompt": prompt,
        "completion": completion,
        "ids": enc.ids + [eos_id],
        "trained": trained + [1],
        "seed_prompt_len": seed_prompt_len,
        "straddle": first != seed_prompt_len,
    }


def main():
    tok = Tokenizer.from_file(TOKENIZER)
    eos_id = tok.token_to_id(EOS)
    grading = []
    for path in sorted(glob.glob(f"{DATA}/grading/*.json")):
        for r in json.load(open(path)):
            grading.append(case(tok, eos_id, grading_prompt(r), grading_completion(r)))
    pc = []
    for line in open(f"{DATA}/prompt_completion.jsonl"):
        if line.strip():
            r = json.loads(line)
            pc.append(case(tok, eos_id, r["prompt"], r["completion"]))
    head = {"tokenizer": TOKENIZER, "eos": EOS, "eos_id": eos_id}
    with open(f"{DATA}/expected.json", "w") as f:  # one case a line, for readable diffs
        f.write(json.dumps(head, ensure_ascii=False)[:-1])
        for name, cases in (("grading", grading), ("prompt_completion", pc)):
            lines = ",\n  ".join(json.dumps(c, ensure_ascii=False) for c in cases)
            f.write(f',\n "{name}": [\n  {lines}\n ]')
        f.write("\n}\n")
    n = sum(c["straddle"] for c in grading + pc)
    print(f"{DATA}/expected.json: {len(grading)} grading, {len(pc)} prompt/completion cases, "
          f"{n} where the seeds' prompt-length mask differs")


if __name__ == "__main__":
    main()
