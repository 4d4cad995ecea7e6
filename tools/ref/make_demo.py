"""The embedded default of `make demo`: a tiny random-weight Llama, a small
byte-level BPE tokenizer trained on the demo data, and grading records in the
seeds' format (score, max_score, normalized_score, rubric_alignment[question,
answer, score, max_score], feedback).

    /work/venv-ref/bin/python tools/ref/make_demo.py      (torch, transformers, tokenizers)

Writes examples/models/tiny-llama/ (config.json, model.safetensors in bf16,
tokenizer.json, tokenizer_config.json, generation_config.json) and
examples/data/grading/grading_{1,2}.json.
The records are generated from a seeded list of questions and answer
qualities, so the task (the score follows the answers' quality words) is
learnable by a small adapter. The base model starts from random weights and is
pretrained here for 300 steps on the questions and answers (not the grading),
so it is a tiny language model, not a capable one."""
import json
import os
import random

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
rng = random.Random(42)

QUESTIONS = [
    ("Why does ice float on water?", "ice is less dense than liquid water because of its open crystal lattice"),
    ("What causes the seasons on Earth?", "the tilt of Earth's axis changes how directly sunlight strikes each hemisphere"),
    ("What does a catalyst do in a reaction?", "it lowers the activation energy without being consumed"),
    ("Why do we see lightning before thunder?", "light travels much faster than sound"),
    ("What is the role of mitochondria?", "they produce most of the cell's ATP through respiration"),
    ("Why is the sky blue?", "shorter blue wavelengths scatter more in the atmosphere"),
    ("What is Newton's third law?", "every action has an equal and opposite reaction"),
    ("How do vaccines protect us?", "they train the immune system to recognise a pathogen"),
]
QUALITY = [  # (score out of 5, how the answer is phrased, feedback word)
    (5, "{a}.", "complete and precise"),
    (4, "Mostly, {a}, but the explanation is brief.", "correct but brief"),
    (3, "Partly: {a}, though some steps are missing.", "partly correct"),
    (2, "I think it is because of heat, maybe {a}?", "unsure and vague"),
    (1, "Because it is like that.", "missing the key idea"),
    (0, "I don't know.", "no answer"),
]


def record():
    items = rng.sample(QUESTIONS, 3)
    rubric, total, words = [], 0, []
    for q, a in items:
        score, phrase, word = rng.choice(QUALITY)
        rubric.append({"question": q, "answer": phrase.format(a=a), "score": score, "max_score": 5})
        total += score
        words.append(word)
    feedback = "; ".join(f"Q{i + 1} {w}" for i, w in enumerate(words)) + "."
    return {"score": total, "max_score": 15, "normalized_score": round(total / 15, 2),
            "rubric_alignment": rubric, "feedback": feedback}


os.makedirs(os.path.join(ROOT, "data", "grading"), exist_ok=True)
records = [record() for _ in range(48)]
json.dump(records[:24], open(os.path.join(ROOT, "data", "grading", "grading_1.json"), "w"), indent=1)
json.dump(records[24:], open(os.path.join(ROOT, "data", "grading", "grading_2.json"), "w"), indent=1)

# Tokenizer: byte-level BPE with Llama 3's special tokens, trained on the records' text.
specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
corpus = [json.dumps(r) for r in records] + [q + " " + a for q, a in QUESTIONS] + \
         [p.format(a="x") for _, p, _ in QUALITY] + [w for _, _, w in QUALITY]
tok.train_from_iterator(corpus * 4, trainers.BpeTrainer(
    vocab_size=1000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tok.post_processor = processors.TemplateProcessing(
    single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])
out = os.path.join(ROOT, "models", "tiny-llama")
os.makedirs(out, exist_ok=True)
tok.save(os.path.join(out, "tokenizer.json"))
vocab = tok.get_vocab_size()
bos, eos = tok.token_to_id("<|begin_of_text|>"), tok.token_to_id("<|eot_id|>")
json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "model_max_length": 1024,
           "tokenizer_class": "PreTrainedTokenizerFast"}, open(os.path.join(out, "tokenizer_config.json"), "w"), indent=1)

torch.manual_seed(0)
config = LlamaConfig(vocab_size=vocab, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                     rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                     bos_token_id=bos, eos_token_id=eos, dtype="bfloat16")
model = LlamaForCausalLM(config)
# A short pretraining on other text of the same kind (the questions, model
# answers of every quality, and feedback phrases, but never the grading
# completions), so the base speaks the language and the adapter has the
# grading left to learn.
texts = [q + " " + p.format(a=a) + " " + w for q, a in QUESTIONS for _, p, w in QUALITY]
opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
model.train()
for step in range(300):
    batch = rng.sample(texts, 16)
    enc = [tok.encode(t).ids[:64] for t in batch]
    width = max(len(e) for e in enc)
    ids = torch.tensor([e + [eos] * (width - len(e)) for e in enc])
    labels = torch.tensor([e + [-100] * (width - len(e)) for e in enc])
    loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
print("pretraining loss", float(loss))
model = model.to(torch.bfloat16)
model.save_pretrained(out, safe_serialization=True)
print("vocab", vocab, "params", sum(p.numel() for p in model.parameters()))
