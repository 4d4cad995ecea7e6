#!/usr/bin/env python3
"""Tokenizer throughput, one thread: tune against Hugging Face `tokenizers` (and tiktoken,
where installed) on the same documents and the same vocabulary, in one run.

tune is timed by bench/tokenizer/bench_tokenizer.c (built here through make), which times
tok_encode alone; `tokenizers` by Tokenizer.encode(doc, add_special_tokens=False) in a loop
and by encode_batch with TOKENIZERS_PARALLELISM=false (which runs it on one thread): the
faster of the two is the reference, so the ratio is against the library's best single-thread
path. tiktoken runs encode_ordinary per document over the rank file with tune's
tok_load_tiktoken beside it. Each timing is the fastest of --repeat passes after a warm-up,
in CPU time of the encoding thread (time.thread_time, CLOCK_THREAD_CPUTIME_ID; all three
encode on the calling thread here), so that other work on a shared machine does not skew
the ratio; wall times are printed too. All of them must give the same ids (checksums
compared); a mismatch is reported and the exit status is 1.

The text, made the same on every run (no download):
  code          the .py files at the top of this Python's standard library, in name order,
                until --code-mb MB: real code, comments and English docstrings
  multilingual  generated from a fixed seed: sentences in English, French, German, Spanish,
                Russian, Greek, Chinese, Japanese, Korean, Arabic and Hindi, with numbers,
                emoji, URLs and runs of spaces and newlines, --text-mb MB in 4 KB documents
The vocabulary is o200k_harmony (gpt-oss), the full one that tools/ref/
make_tokenizer_fixtures.py writes to build/ref-vocab/ (the committed fixtures are subsets,
which tokenize other text differently).

Run from the repository root with a Python that has `tokenizers` (tiktoken optional):
    tools/ref/.venv/bin/python tools/bench_tokenizer.py
Prints a table and the Markdown rows for bench/RESULTS.md."""
import argparse
import json
import os
import platform
import random
import subprocess
import sys
import sysconfig
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # before importing tokenizers
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import tokenizers  # noqa: E402

try:
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext import openai_public
except ImportError:
    tiktoken = None

VOCAB = "build/ref-vocab/o200k_harmony"
OUT = "build/bench/tokenizer"
BENCH = "build/bench/tokenizer/bench_tokenizer"


def code_docs(mb):
    """Whole .py files of the standard library's top folder, in name order."""
    lib = sysconfig.get_paths()["stdlib"]
    docs, total = [], 0
    for name in sorted(os.listdir(lib)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(lib, name), encoding="utf-8", errors="replace") as f:
            text = f.read().replace("\0", "")
        docs.append(text)
        total += len(text.encode())
        if total >= mb * 1e6:
            break
    return docs


WORDS = {
    "en": "the of and to in is that for it as with was on be by at this from have or one had not but what all "
          "were when we there can an your which their said if will each about how up out them then she many "
          "some so these would other into has more her two like him see time could no make than first been "
          "its who now people my made over did down only way find use may water long little very after words "
          "called just where most know tokenizer training gradient checkpoint memory throughput",
    "fr": "le de un être et à il avoir ne je son que se qui ce dans en du elle au pour pas vous par sur faire "
          "plus dire me on mon lui nous comme mais pouvoir avec tout y aller voir bien où sans tu ou leur "
          "homme si deux mari moi vouloir te femme venir quand grand celui notre devoir là jour prendre même "
          "déjà élève été très après français garçon cœur œuvre",
    "de": "der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an werden "
          "aus er hat dass sie nach wird bei einer um am sind noch wie einem über einen so zum war haben nur "
          "oder aber vor zur bis mehr durch man sein wurde sei größer Straße Mädchen über Übung schön müssen",
    "es": "de la que el en y a los se del las un por con no una su para es al lo como más o pero sus le ha "
          "me si sin sobre este ya entre cuando todo esta ser son dos también fue había era muy años hasta "
          "desde está mi porque qué sólo han yo hay vez puede todos así nos ni parte tiene él uno niño año",
    "ru": "и в не на я быть он с что а по это она этот к но они мы как из у который то за свой что весь год "
          "от так о для ты же все тот мочь вы человек такой его сказать только или еще бы себя один как уже "
          "до время если сам когда другой вот говорить наш мой знать стать при чтобы дело жизнь",
    "el": "και το η του να ο τα της με που την σε για από δεν τη τον είναι θα στο ένα στην οι των μου στα "
          "αλλά τους όπως μια έχει ότι ή μας ήταν πιο σου αυτό στη κατά μετά μέσα",
    "zh": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可"
          "她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三"
          "已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女",
    "ja": "これはテストです。日本語の文章を少し書きます。今日は天気がいいですね。東京タワーに行きました。"
          "ひらがな カタカナ 漢字 まじり の ぶんしょう を トークナイザー で 分割 します。",
    "ko": "안녕하세요 저는 학생입니다 오늘 날씨가 좋네요 한국어 문장을 토크나이저로 나눕니다 서울 부산 대학교 "
          "컴퓨터 프로그램 데이터 학습 모델",
    "ar": "في من على إلى أن هذا التي الذي مع كان عن هذه بين كل لا ما هو ذلك بعد قد عند أو لم إن حتى البيانات "
          "النموذج التدريب",
    "hi": "के में की है और से को एक यह पर भी हैं था कि जो कर लिए ने इस तो हो गया किया प्रशिक्षण मॉडल डेटा",
}
EMOJI = ["😀", "👍🏽", "🚀", "🎉", "❤️", "🇫🇷", "👨‍👩‍👧", "✅", "🔥", "🤖"]


def multilingual_docs(mb, seed=42):
    """Paragraphs of sentences in random languages with numbers, emoji, URLs, code-ish tokens
    and runs of whitespace; 4 KB documents."""
    rng = random.Random(seed)
    lists = {k: (list(v) if k == "zh" else v.split()) for k, v in WORDS.items()}
    langs = sorted(lists)

    def sentence():
        lang = rng.choice(langs)
        n = rng.randint(4, 18)
        sep = "" if lang == "zh" else " "
        words = [rng.choice(lists[lang]) for _ in range(n)]
        extra = rng.random()
        if extra < 0.15:
            words.insert(rng.randrange(len(words) + 1), str(rng.randint(0, 10 ** rng.randint(1, 9))))
        elif extra < 0.25:
            words.insert(rng.randrange(len(words) + 1), rng.choice(EMOJI))
        elif extra < 0.30:
            words.append(f"https://example.org/{rng.choice(lists['en'])}/{rng.randint(1, 999)}?q={rng.random():.3f}")
        elif extra < 0.35:
            words.append(f"x_{rng.randint(0, 99)} = f({rng.random():.4f}, '{rng.choice(lists['en'])}')")
        s = sep.join(words)
        return s[0].upper() + s[1:] + rng.choice([".", "!", "?", "。", "…", ";"])

    docs, doc, total = [], [], 0
    while total < mb * 1e6:
        para = " ".join(sentence() for _ in range(rng.randint(2, 7)))
        para += rng.choice(["\n\n", "\n", "  \n", "\n\n\n", "\t\n", " "])
        doc.append(para)
        size = sum(len(p.encode()) for p in doc)
        if size >= 4096:
            docs.append("".join(doc))
            total += size
            doc = []
    return docs


def checksum(all_ids):
    """bench_tokenizer.c's checksum: h = h * 1000003 + id + 1 over 64 bits, * 1000003 per doc."""
    h, m = 0, (1 << 64) - 1
    for ids in all_ids:
        for i in ids:
            h = (h * 1000003 + i + 1) & m
        h = (h * 1000003) & m
    return f"{h:016x}"


def best_time(fn, repeat):
    """(CPU seconds, wall seconds) of the fastest of `repeat` calls after a warm-up."""
    fn()
    cpu = wall = float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        cpu, wall = min(cpu, time.thread_time() - c0), min(wall, time.perf_counter() - t0)
    return cpu, wall


def run_tune(args, docs_path, repeat):
    out = subprocess.run([BENCH, *args, docs_path, "--repeat", str(repeat)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bench_tokenizer failed: {out.stderr.strip()}")
    r = json.loads(out.stdout)
    r["wall"], r["seconds"] = r["seconds"], r["cpu_seconds"]
    return r


def run_hf(tok, docs, repeat):
    ids = [e.ids for e in tok.encode_batch(docs, add_special_tokens=False)]
    t_loop = best_time(lambda: [tok.encode(d, add_special_tokens=False) for d in docs], repeat)
    t_batch = best_time(lambda: tok.encode_batch(docs, add_special_tokens=False), repeat)
    best = min(t_loop, t_batch)
    return {"tokens": sum(map(len, ids)), "seconds": best[0], "wall": best[1], "loop": t_loop,
            "batch": t_batch, "checksum": checksum(ids)}


def tiktoken_encoding(ranks_path):
    ranks = load_tiktoken_bpe(ranks_path)
    openai_public.load_tiktoken_bpe = lambda *a, **k: ranks
    params = openai_public.ENCODING_CONSTRUCTORS["o200k_harmony"]()
    return tiktoken.Encoding(**params)


def run_tiktoken(enc, docs, repeat):
    ids = [enc.encode_ordinary(d) for d in docs]
    t = best_time(lambda: [enc.encode_ordinary(d) for d in docs], repeat)
    return {"tokens": sum(map(len, ids)), "seconds": t[0], "wall": t[1], "checksum": checksum(ids)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", default=VOCAB, help="folder with tokenizer.json and o200k_base.tiktoken")
    ap.add_argument("--code-mb", type=float, default=3.0)
    ap.add_argument("--text-mb", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    tok_json = os.path.join(args.vocab, "tokenizer.json")
    ranks = os.path.join(args.vocab, "o200k_base.tiktoken")
    if not os.path.exists(tok_json):
        sys.exit(f"{tok_json} is missing: run tools/ref/make_tokenizer_fixtures.py first (it writes the "
                 "full o200k_harmony vocabulary there)")
    subprocess.run(["make", "--no-print-directory", "-s", BENCH], check=True)
    os.makedirs(OUT, exist_ok=True)
    hf = tokenizers.Tokenizer.from_file(tok_json)
    enc = tiktoken_encoding(ranks) if tiktoken and os.path.exists(ranks) else None

    rows = []
    corpora = [("code", code_docs(args.code_mb)), ("multilingual", multilingual_docs(args.text_mb))]
    corpora.append(("all", corpora[0][1] + corpora[1][1]))
    for name, docs in corpora:
        path = os.path.join(OUT, f"{name}.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
        mb = sum(len(d.encode()) for d in docs) / 1e6
        r = {"corpus": name, "docs": len(docs), "mb": mb,
             "tune": run_tune(["--json", tok_json], path, args.repeat), "hf": run_hf(hf, docs, args.repeat)}
        if enc:
            r["tune_tiktoken"] = run_tune(["--tiktoken", ranks, "o200k_harmony"], path, args.repeat)
            r["tiktoken"] = run_tiktoken(enc, docs, args.repeat)
        rows.append(r)

    def rate(x, mb):
        return mb / x["seconds"], x["tokens"] / x["seconds"]

    print(f"o200k_harmony ({tok_json}); tokenizers {tokenizers.__version__}"
          + (f", tiktoken {tiktoken.__version__}" if enc else "") + f"; {platform.processor() or platform.machine()}"
          f", one thread, best of {args.repeat}, CPU time")
    head = f"{'corpus':<13} {'MB':>6} {'tokens':>9}  {'tune MB/s':>9} {'tok/s':>10}  {'HF MB/s':>8} {'tok/s':>10}  {'ratio':>5}"
    if enc:
        head += f"  {'tune-tt MB/s':>12} {'tiktoken MB/s':>13} {'ratio':>5}"
    print(head)
    md = []
    bad = []
    for r in rows:
        mb = r["mb"]
        t_mb, t_tok = rate(r["tune"], mb)
        h_mb, h_tok = rate(r["hf"], mb)
        line = (f"{r['corpus']:<13} {mb:6.2f} {r['tune']['tokens']:9d}  {t_mb:9.2f} {t_tok:10.0f}  {h_mb:8.2f} "
                f"{h_tok:10.0f}  {t_mb / h_mb:5.2f}")
        mdl = (f"| {r['corpus']} | {mb:.2f} | {r['tune']['tokens']:,} | {t_mb:.2f} | {t_tok:,.0f} | {h_mb:.2f} | "
               f"{h_tok:,.0f} | {t_mb / h_mb:.2f}x |")
        if r["tune"]["checksum"] != r["hf"]["checksum"]:
            bad.append(f"{r['corpus']}: tune and tokenizers give different ids")
        if enc:
            tt_mb, _ = rate(r["tune_tiktoken"], mb)
            k_mb, _ = rate(r["tiktoken"], mb)
            line += f"  {tt_mb:12.2f} {k_mb:13.2f} {tt_mb / k_mb:5.2f}"
            mdl += f" {tt_mb:.2f} | {k_mb:.2f} | {tt_mb / k_mb:.2f}x |"
            if r["tune_tiktoken"]["checksum"] != r["tiktoken"]["checksum"]:
                bad.append(f"{r['corpus']}: tune (rank file) and tiktoken give different ids")
        print(line)
        md.append(mdl)
    for r in rows:
        print(f"  {r['corpus']}: CPU (wall) seconds: tune {r['tune']['seconds']:.3f} ({r['tune']['wall']:.3f}); "
              f"tokenizers encode loop {r['hf']['loop'][0]:.3f} ({r['hf']['loop'][1]:.3f}), encode_batch "
              f"{r['hf']['batch'][0]:.3f} ({r['hf']['batch'][1]:.3f})"
              + (f"; tune rank file {r['tune_tiktoken']['seconds']:.3f} ({r['tune_tiktoken']['wall']:.3f}), tiktoken "
                 f"{r['tiktoken']['seconds']:.3f} ({r['tiktoken']['wall']:.3f})" if enc else ""))
    print("ids: " + ("; ".join(bad) if bad else "equal (tune = tokenizers" + (", tune = tiktoken" if enc else "") + ")"))
    print("\nMarkdown:")
    print("| corpus | MB | tokens | tune MB/s | tune tokens/s | tokenizers MB/s | tokenizers tokens/s | ratio |"
          + (" tune (rank file) MB/s | tiktoken MB/s | ratio |" if enc else ""))
    print("|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if enc else ""))
    print("\n".join(md))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
