"""CPU training throughput of tune against transformers+PEFT, same machine, same run.

    /work/venv-ref/bin/python tools/bench_cpu_train.py            (torch, transformers, peft, tokenizers)

1. Makes (once, deterministically) build/bench-cpu/model: a random-weight Llama of ~100M
   parameters (hidden 768, 12 layers, 12 heads / 4 kv heads, intermediate 2048, vocab 32000,
   tied embeddings: 100.1M), saved in bf16 by transformers' save_pretrained, with a
   32000-token byte-level BPE tokenizer trained here on generated text; and
   build/bench-cpu/data/train.jsonl: {"text": ...} records, each well over --seq tokens, so
   every micro-batch row is one truncated record of exactly --seq tokens in both stacks
   (no packing, no padding, full causal attention over 512 tokens).
2. Runs, alternating (tune, transformers, tune, transformers, ...) to cancel machine drift:
   (a) build/tune train --seq 512 --micro-batch 1 --r 16 --alpha 32 --targets q,k,v,o
       --dropout 0 --max-steps N (fp32 CPU backend), tokens/s from OUTPUT/metrics.jsonl;
   (b) transformers + PEFT on the same model files: LoRA r16 alpha32 on q,k,v,o, dropout 0,
       fp32 weights, sdpa attention, AdamW (lr 2e-4, linear decay), grad-norm clip 1.0 (tune's
       default), torch.set_num_threads(2), the same --seq and micro-batch 1;
   optionally (c) the same as (b) under torch.autocast("cpu", bfloat16) (--bf16), labelled, with
   ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 (this VM advertises AMX but using it raises SIGILL), and
   (d) tune again with OPENBLAS_CORETYPE=X (--coretype X), labelled.
   Each run is a child process; its peak RSS is ru_maxrss of that child (os.wait4).
   tokens/s of a run = sum(tokens) / sum(seconds) over steps after the first --warmup steps.
   Both stacks time the same thing per step: forward, backward, grad norm + clip, AdamW
   (tune's step timer in src/train/trainer.c; time.perf_counter around the same in (b)).
3. Writes bench/cpu/RESULTS.md (date, machine, commit, command, table) and
   bench/cpu/last_run.json (every step of every run).

tune is built from HEAD's sources (git archive) into build/bench-cpu/head, so that other
people's uncommitted edits and rebuilds of build/tune do not change the binary mid-run
(--tune PATH to measure another binary).

Options: --steps N (optimizer steps per run, default 20), --warmup K (default 2), --rounds R
(A/B pairs, default 2), --bf16, --coretype X, --threads T (default 2), --nice N (niceness of
every benchmarked child, both stacks alike), --tune PATH, --prepare-only, --results PATH.
"""
import argparse
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
WORK = os.path.join(ROOT, "build", "bench-cpu")
MODEL = os.path.join(WORK, "model")
DATA = os.path.join(WORK, "data", "train.jsonl")

CONFIG = dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
              num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=2048,
              rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True)
RECORDS = 96          # enough for --steps up to 96 at micro-batch 1 in one epoch
WORDS_PER_RECORD = 900


# ---------------------------------------------------------------- data, tokenizer, model

def make_lexicon(rng, n):
    """n distinct pseudo-words built from syllables (a seeded, self-contained vocabulary)."""
    onsets = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
              "br", "ch", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr", "qu"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y"]
    codas = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck"]
    words, seen = [], set()
    while len(words) < n:
        w = "".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                    for _ in range(rng.choice([1, 1, 2, 2, 2, 3, 3, 4])))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def make_text(rng, lexicon, weights, n_words):
    out, sentence = [], []
    for w in rng.choices(lexicon, weights=weights, k=n_words):
        sentence.append(w)
        if len(sentence) >= rng.randint(6, 18):
            s = " ".join(sentence)
            out.append(s[0].upper() + s[1:] + rng.choice([".", ".", ".", "?", "!", ";"]))
            sentence = []
    if sentence:
        out.append(" ".join(sentence) + ".")
    return " ".join(out)


def prepare():
    if os.path.exists(os.path.join(MODEL, "model.safetensors")) and os.path.exists(DATA):
        return
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM

    rng = random.Random(1234)
    lexicon = make_lexicon(rng, 60000)
    weights = [1.0 / (i + 1) ** 1.05 for i in range(len(lexicon))]  # Zipf-like
    corpus = [make_text(rng, lexicon, weights, 2000) for _ in range(1500)]   # tokenizer training text
    records = [make_text(rng, lexicon, weights, WORDS_PER_RECORD) for _ in range(RECORDS)]

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=CONFIG["vocab_size"], special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])
    if tok.get_vocab_size() != CONFIG["vocab_size"]:
        sys.exit(f"tokenizer has {tok.get_vocab_size()} tokens, wanted {CONFIG['vocab_size']}")
    os.makedirs(MODEL, exist_ok=True)
    tok.save(os.path.join(MODEL, "tokenizer.json"))
    bos, eos = tok.token_to_id("<|begin_of_text|>"), tok.token_to_id("<|eot_id|>")
    with open(os.path.join(MODEL, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "model_max_length": 2048,
                   "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=1)

    torch.manual_seed(0)
    config = LlamaConfig(**CONFIG, bos_token_id=bos, eos_token_id=eos, dtype="bfloat16")
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(MODEL, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())

    os.makedirs(os.path.dirname(DATA), exist_ok=True)
    shortest = min(len(tok.encode(r).ids) for r in records)
    with open(DATA, "w") as f:
        for r in records:
            f.write(json.dumps({"text": r}) + "\n")
    print(f"prepared {MODEL}: {n:,} parameters, vocab {tok.get_vocab_size()}; "
          f"{DATA}: {RECORDS} records, shortest {shortest} tokens", flush=True)


# ---------------------------------------------------------------- transformers+PEFT worker

def hf_worker(a):
    """One transformers+PEFT run; prints one JSON line per step."""
    import torch
    from peft import LoraConfig, get_peft_model
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    torch.manual_seed(42)
    tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    with open(DATA) as f:
        texts = [json.loads(line)["text"] for line in f]
    rows = [tok.encode(t).ids[:a.seq] for t in texts]
    assert all(len(r) == a.seq for r in rows), "a record is shorter than --seq"
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, bias="none",
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                             task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / a.steps))
    print(json.dumps({"trainable": sum(p.numel() for p in params),
                      "total": sum(p.numel() for p in model.parameters())}), flush=True)
    for step in range(a.steps):
        ids = torch.tensor([rows[step % len(rows)]])
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if a.bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids).loss
        else:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        dt = time.perf_counter() - t0
        print(json.dumps({"step": step + 1, "loss": float(loss), "grad_norm": float(norm),
                          "tokens": ids.numel(), "seconds": dt}), flush=True)


# ---------------------------------------------------------------- driver

NICE = 0


def prioritize():
    """In the child: its own session, hence its own scheduler autogroup (with autogroups on,
    CFS shares the CPU between sessions first, so a plain nice value would only rank it
    against this script), given niceness NICE, and NICE as its own niceness too."""
    os.setsid()
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(NICE))
    except OSError:
        pass
    os.nice(NICE)


def run_child(cmd, env=None, log=None):
    """Runs cmd; returns (stdout text, facts: wall s, peak RSS MiB and CPU s of that child, load)."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with open(log, "w") if log else open(os.devnull, "w") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, cwd=ROOT, text=True,
                             preexec_fn=prioritize if NICE else None)
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{cmd[0]} failed ({code}); see {log}\n{out[-2000:]}")
    return out, {"wall_s": time.perf_counter() - t0, "rss_mib": ru.ru_maxrss / 1024.0,
                 "cpu_s": ru.ru_utime + ru.ru_stime, "load1_before": load}


def build_tune():
    """tune built from HEAD (git archive) into build/bench-cpu/head, apart from the shared checkout's build/."""
    d = os.path.join(WORK, "head")
    subprocess.run(["rm", "-rf", d], check=True)
    os.makedirs(d)
    subprocess.run(f"git archive HEAD Makefile src | tar -x -C {d}", shell=True, check=True, cwd=ROOT)
    subprocess.run(["make", "-C", d, "-j2", "-s", "build/tune"], check=True, stdout=subprocess.DEVNULL)
    return os.path.join(d, "build", "tune")


def rate(steps, warmup):
    timed = [s for s in steps if s["step"] > warmup]
    return sum(s["tokens"] for s in timed) / sum(s["seconds"] for s in timed)


def best(steps, warmup):
    """tokens/s of the fastest timed step: the least disturbed by other jobs on a shared machine."""
    return max(s["tokens"] / s["seconds"] for s in steps if s["step"] > warmup)


def run_tune(a, k, coretype=None):
    tag = f"tune-{coretype}" if coretype else "tune"
    out_dir = os.path.join(WORK, f"run-{tag}-{k}")
    subprocess.run(["rm", "-rf", out_dir], check=True)
    cmd = [a.tune, "train", "--model", MODEL, "--data", DATA, "--output", out_dir, "--seq", str(a.seq),
           "--micro-batch", "1", "--r", "16", "--alpha", "32", "--targets", "q,k,v,o", "--dropout", "0",
           "--max-steps", str(a.steps), "--lr", "2e-4", "--logging-steps", "1"]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    env.pop("OPENBLAS_CORETYPE", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    _, facts = run_child(cmd, env, os.path.join(WORK, f"run-{tag}-{k}.log"))
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        steps = [json.loads(line) for line in f if '"tokens_per_s"' in line]
    for s in steps:
        s["seconds"] = s["tokens"] / s["tokens_per_s"]
    label = f"tune (fp32, OPENBLAS_CORETYPE={coretype})" if coretype else "tune (fp32)"
    return dict(facts, stack=label, cmd=" ".join(cmd), steps=steps)


def run_hf(a, k, bf16):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--steps", str(a.steps), "--seq", str(a.seq),
           "--threads", str(a.threads)] + (["--bf16"] if bf16 else [])
    tag = "hf-bf16" if bf16 else "hf"
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    if bf16:  # AMX tiles raise SIGILL in this VM (the kernel does not grant them); oneDNN stops at AVX512-BF16
        env["ONEDNN_MAX_CPU_ISA"] = "AVX512_CORE_BF16"
    out, facts = run_child(cmd, env,
                               os.path.join(WORK, f"run-{tag}-{k}.log"))
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    steps = [x for x in lines if "step" in x]
    label = "transformers+PEFT (bf16 autocast)" if bf16 else "transformers+PEFT (fp32)"
    return dict(facts, stack=label, cmd=" ".join(cmd), steps=steps, params=lines[0])


def blas_core(tune):
    """The OpenBLAS kernels tune ends up with on this CPU (OpenBLAS's own pick first; since
    1c5c0ad tune names the core from the CPU's features and re-executes itself)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env["OPENBLAS_VERBOSE"] = "2"
    r = subprocess.run([tune, "--help"], capture_output=True, text=True, env=env)
    cores = [line.split(":", 1)[1].strip() for line in (r.stdout + r.stderr).splitlines() if line.startswith("Core:")]
    if not cores:
        return "?"
    return cores[-1] + (f" (libopenblas alone picks {cores[0]}; tune re-executes itself with OPENBLAS_CORETYPE)"
                        if len(cores) > 1 and cores[0] != cores[-1] else "")


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--tune", help="a tune binary (default: built from HEAD into build/bench-cpu/head)")
    ap.add_argument("--coretype", help="also run tune with OPENBLAS_CORETYPE=this (labelled)")
    ap.add_argument("--nice", type=int, default=0, help="niceness of every benchmarked child (both stacks)")
    ap.add_argument("--prepare-only", action="store_true")
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "cpu", "RESULTS.md"))
    a = ap.parse_args()
    if a.worker:
        return hf_worker(a)
    prepare()
    if a.prepare_only:
        return
    if a.steps > RECORDS:
        sys.exit(f"--steps at most {RECORDS}")
    global NICE
    NICE = a.nice
    a.tune = os.path.abspath(a.tune) if a.tune else build_tune()
    started = time.time()
    runs = []
    for k in range(1, a.rounds + 1):
        for fn in ([lambda: run_tune(a, k), lambda: run_hf(a, k, False)] +
                   ([lambda: run_tune(a, k, a.coretype)] if a.coretype else []) +
                   ([lambda: run_hf(a, k, True)] if a.bf16 else [])):
            r = fn()
            r["round"] = k
            r["tokens_per_s"] = rate(r["steps"], a.warmup)
            r["best_tokens_per_s"] = best(r["steps"], a.warmup)
            runs.append(r)
            print(f"round {k}  {r['stack']:42s} {r['tokens_per_s']:8.1f} tokens/s (best step "
                  f"{r['best_tokens_per_s']:.1f})  "
                  f"peak RSS {r['rss_mib']:7.0f} MiB  wall {r['wall_s']:.0f} s  cpu {r['cpu_s']:.0f} s  "
                  f"load {r['load1_before']:.1f}", flush=True)
    total = time.time() - started

    stacks = list(dict.fromkeys(r["stack"] for r in runs))
    med = {s: statistics.median(r["tokens_per_s"] for r in runs if r["stack"] == s) for s in stacks}
    bmed = {s: statistics.median(r["best_tokens_per_s"] for r in runs if r["stack"] == s) for s in stacks}
    rss = {s: max(r["rss_mib"] for r in runs if r["stack"] == s) for s in stacks}
    step_s = {s: statistics.median(x["seconds"] for r in runs if r["stack"] == s
                                   for x in r["steps"] if x["step"] > a.warmup) for s in stacks}
    ratio = med["tune (fp32)"] / med["transformers+PEFT (fp32)"]
    bratio = bmed["tune (fp32)"] / bmed["transformers+PEFT (fp32)"]
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    flags = sh("grep -m1 '^flags' /proc/cpuinfo")
    isa = ", ".join(x for x in ["avx2", "avx512f", "avx512_bf16", "amx_bf16"] if f" {x}" in flags)
    mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    head = sh("git rev-parse HEAD")
    dirty = sh("git status --porcelain --untracked-files=no")
    import torch, transformers, peft  # noqa: E401 (versions only)
    cmdline = "/work/venv-ref/bin/python tools/bench_cpu_train.py " + " ".join(sys.argv[1:])
    hf0 = next(r for r in runs if r["stack"].startswith("transformers"))

    L = ["# CPU training throughput: tune vs transformers+PEFT (issue 5)", "",
         "Written by `tools/bench_cpu_train.py`; profile of tune's CPU step in `bench/cpu/PROFILE.md`.", "",
         f"- Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
         f"- Machine: {sh('nproc')} cores (`nproc`), {cpu} ({isa}), "
         f"{mem_gib} GiB RAM, {platform.platform()}",
         f"- Commit: `{head}`" + (" (working tree has uncommitted changes to tracked files)" if dirty else ""),
         f"- Stacks: tune `{os.path.relpath(a.tune, ROOT)}`" +
         (" (built from HEAD by the script)" if "bench-cpu/head" in a.tune else "") + " (CPU backend, fp32, OpenBLAS + OpenMP, "
         f"OMP_NUM_THREADS={a.threads}, OpenBLAS kernels {blas_core(a.tune)}); torch {torch.__version__}, transformers {transformers.__version__}, "
         f"peft {peft.__version__}, torch.set_num_threads({a.threads}), sdpa attention" +
         ("; the bf16 autocast runs with ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 (this VM advertises AMX, but "
          "AMX instructions raise SIGILL here)" if a.bf16 else ""),
         f"- Model: random-weight Llama, hidden 768, 12 layers, 12 heads / 4 kv heads, intermediate 2048, "
         f"vocab 32000, tied embeddings: {hf0['params']['total'] - hf0['params']['trainable']:,} parameters "
         f"(bf16 safetensors by save_pretrained, computed in fp32); LoRA r16 alpha32 dropout 0 on q,k,v,o: "
         f"{hf0['params']['trainable']:,} trainable",
         f"- Run: seq {a.seq}, micro-batch 1, grad-accum 1, AdamW lr 2e-4 linear, grad clip 1.0; "
         f"{a.steps} steps per run, tokens/s over steps {a.warmup + 1}..{a.steps} "
         f"(sum tokens / sum step seconds), runs alternated, {a.rounds} of each; total {total / 60:.1f} min",
         f"- Command: `{cmdline}`", "",
         "| round | stack | tokens/s | best step tokens/s | median step s | peak RSS MiB | process wall s | "
         "process CPU s | load avg (1 min) before |",
         "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        ms = statistics.median(x["seconds"] for x in r["steps"] if x["step"] > a.warmup)
        L.append(f"| {r['round']} | {r['stack']} | {r['tokens_per_s']:.1f} | {r['best_tokens_per_s']:.1f} | {ms:.3f} | {r['rss_mib']:.0f} | "
                 f"{r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['load1_before']:.1f} |")
    L += ["", "| stack | median tokens/s | tune / this | median best-step tokens/s | tune / this | "
          "median step s | max peak RSS MiB |", "|---|---|---|---|---|---|---|"]
    for s in stacks:
        L.append(f"| {s} | {med[s]:.1f} | {med['tune (fp32)'] / med[s]:.3f} | {bmed[s]:.1f} | "
                 f"{bmed['tune (fp32)'] / bmed[s]:.3f} | {step_s[s]:.3f} | {rss[s]:.0f} |")
    L += ["", "The machine is shared: other jobs (builds, tests) ran during the measurement; the load "
          "average column shows how busy it was when each run started" +
          (f"; every benchmarked process ran in its own session (scheduler autogroup) at nice {a.nice}, "
           "both stacks alike, to keep the other jobs off its cores." if a.nice else "."),
          "", f"**Ratio tune / transformers+PEFT (fp32, same precision): {ratio:.3f}** "
          f"({'tune is faster' if ratio >= 1 else 'tune is slower'}; goal >= 1); on the best step of each run: "
          f"{bratio:.3f}.", ""]
    os.makedirs(os.path.dirname(a.results), exist_ok=True)
    with open(a.results, "w") as f:
        f.write("\n".join(L))
    with open(os.path.join(os.path.dirname(a.results), "last_run.json"), "w") as f:
        json.dump({"args": vars(a), "runs": runs}, f, indent=1)
    print("\n".join(L[-(len(stacks) + 5):]))
    print(f"wrote {a.results}")


if __name__ == "__main__":
    main()
