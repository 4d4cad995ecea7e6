#!/usr/bin/env python3
"""Measure the peak GPU memory of transformers + PEFT training steps.

Calibration data for the transformers+PEFT estimate in plan/estimate.c (see
bench/tfpeft/README.md). For each configuration of a grid it builds a model
from an inline config (random weights, bf16, on the GPU; nothing is downloaded),
applies PEFT LoRA or trains all weights, runs three AdamW(fused) steps on random
tokens and records torch.cuda.max_memory_allocated / max_memory_reserved.

Each model family runs in its own subprocess (fresh CUDA state); inside it the
configurations run one after the other, with everything freed, gc.collect(),
torch.cuda.empty_cache() and reset_peak_memory_stats() in between.

Usage (on the GPU machine):
  python3 tools/calibrate_tfpeft.py --out $OUT/measurements.csv \
      --models llama-3.2-1b,llama-3.1-8b --budget-s 540 [--grid tiny|full]
"""
import argparse
import csv
import datetime
import gc
import os
import subprocess
import sys
import time

COLUMNS = [
    "model", "family", "hidden", "intermediate", "layers", "heads", "kv_heads",
    "head_dim", "vocab", "tied", "params", "trainable_params", "trainable_dtype",
    "method", "r", "targets", "seq", "micro_batch", "tokens", "attn", "grad_ckpt",
    "peak_allocated", "peak_reserved",
    "build_peak_allocated", "after_build_allocated", "after_build_reserved",
    "after_step1_allocated", "peak_alloc_step1", "peak_alloc_step2",
    "peak_alloc_step3", "peak_reserved_step1", "peak_reserved_step2",
    "peak_reserved_step3", "loss", "build_s", "steps_s", "status",
]

LLAMA3_ROPE = {"rope_type": "llama3", "factor": 32.0, "high_freq_factor": 4.0,
               "low_freq_factor": 1.0, "original_max_position_embeddings": 8192}
LLAMA31_ROPE = dict(LLAMA3_ROPE, factor=8.0)

# Real config.json fields of each model (architecture-relevant ones).
MODELS = {
    "llama-3.2-1b": ("llama", dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64,
        vocab_size=128256, tie_word_embeddings=True, rms_norm_eps=1e-5,
        rope_theta=500000.0, rope_scaling=LLAMA3_ROPE,
        max_position_embeddings=131072, hidden_act="silu",
        attention_bias=False, mlp_bias=False,
        bos_token_id=128000, eos_token_id=128001)),
    "llama-3.2-3b": ("llama", dict(
        hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
        num_attention_heads=24, num_key_value_heads=8, head_dim=128,
        vocab_size=128256, tie_word_embeddings=True, rms_norm_eps=1e-5,
        rope_theta=500000.0, rope_scaling=LLAMA3_ROPE,
        max_position_embeddings=131072, hidden_act="silu",
        attention_bias=False, mlp_bias=False,
        bos_token_id=128000, eos_token_id=128001)),
    "llama-3.1-8b": ("llama", dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128,
        vocab_size=128256, tie_word_embeddings=False, rms_norm_eps=1e-5,
        rope_theta=500000.0, rope_scaling=LLAMA31_ROPE,
        max_position_embeddings=131072, hidden_act="silu",
        attention_bias=False, mlp_bias=False,
        bos_token_id=128000, eos_token_id=128001)),
    "llama-2-7b": ("llama", dict(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=32, head_dim=128,
        vocab_size=32000, tie_word_embeddings=False, rms_norm_eps=1e-5,
        rope_theta=10000.0, max_position_embeddings=4096, hidden_act="silu",
        attention_bias=False, mlp_bias=False, bos_token_id=1, eos_token_id=2)),
    "mistral-7b-v0.1": ("mistral", dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128,
        vocab_size=32000, tie_word_embeddings=False, rms_norm_eps=1e-5,
        rope_theta=10000.0, max_position_embeddings=32768, sliding_window=4096,
        hidden_act="silu", bos_token_id=1, eos_token_id=2)),
    "qwen2.5-7b": ("qwen2", dict(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
        num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
        tie_word_embeddings=False, rms_norm_eps=1e-6, rope_theta=1000000.0,
        max_position_embeddings=131072, use_sliding_window=False,
        sliding_window=131072, max_window_layers=28, hidden_act="silu",
        bos_token_id=151643, eos_token_id=151643)),
    # gpt-oss-20b shapes at reduced depth (4 of 24 layers); optional, not fitted.
    "gpt-oss-20b-4l": ("gpt_oss", dict(
        hidden_size=2880, intermediate_size=2880, num_hidden_layers=4,
        num_attention_heads=64, num_key_value_heads=8, head_dim=64,
        vocab_size=201088, num_local_experts=32, num_experts_per_tok=4,
        tie_word_embeddings=False, rms_norm_eps=1e-5, rope_theta=150000.0,
        sliding_window=128, layer_types=["sliding_attention", "full_attention"] * 2,
        max_position_embeddings=131072)),
}

TARGETS = {
    "q,k,v,o": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "q,k,v,o,gate,up,down": ["q_proj", "k_proj", "v_proj", "o_proj",
                             "gate_proj", "up_proj", "down_proj"],
}
QKVO, ALL = "q,k,v,o", "q,k,v,o,gate,up,down"

# (method, r, targets, seq, micro_batch, attn, grad_ckpt), in priority order.
LORA_GRID = [
    ("lora", 16, ALL, 1024, 1, "sdpa", 0),
    ("lora", 16, ALL, 2048, 2, "sdpa", 1),
    ("lora", 16, ALL, 1024, 2, "eager", 0),
    ("lora", 16, ALL, 2048, 2, "eager", 1),
    ("lora", 8, QKVO, 1024, 2, "sdpa", 0),
    ("lora", 8, QKVO, 2048, 4, "sdpa", 1),
    ("lora", 16, ALL, 512, 1, "sdpa", 0),
    ("lora", 16, ALL, 4096, 1, "sdpa", 1),
    ("lora", 16, ALL, 2048, 1, "sdpa", 0),
    ("lora", 16, ALL, 512, 4, "sdpa", 0),
    ("lora", 16, ALL, 2048, 4, "sdpa", 1),
    ("lora", 16, ALL, 512, 1, "eager", 0),
    ("lora", 16, ALL, 4096, 1, "eager", 1),
    ("lora", 8, QKVO, 1024, 1, "eager", 0),
    ("lora", 8, QKVO, 2048, 1, "eager", 1),
    ("lora", 8, ALL, 1024, 1, "sdpa", 0),
    ("lora", 16, QKVO, 1024, 4, "sdpa", 1),
    ("lora", 16, ALL, 1024, 1, "sdpa", 1),
    ("lora", 16, ALL, 4096, 2, "sdpa", 1),
    ("lora", 16, ALL, 2048, 1, "eager", 0),
    ("lora", 16, ALL, 2048, 2, "sdpa", 0),
    ("lora", 8, ALL, 1024, 4, "eager", 1),
    ("lora", 8, QKVO, 512, 2, "eager", 0),
    ("lora", 16, QKVO, 2048, 1, "sdpa", 0),
    ("lora", 8, ALL, 4096, 2, "eager", 1),
    ("lora", 16, ALL, 4096, 4, "sdpa", 1),
    ("lora", 8, ALL, 2048, 2, "eager", 0),
]
FULL_GRID = [
    ("full", 0, "", 1024, 1, "sdpa", 0),
    ("full", 0, "", 2048, 2, "sdpa", 1),
    ("full", 0, "", 1024, 2, "eager", 0),
    ("full", 0, "", 2048, 2, "eager", 1),
    ("full", 0, "", 512, 4, "sdpa", 0),
    ("full", 0, "", 4096, 1, "sdpa", 1),
    ("full", 0, "", 2048, 4, "sdpa", 1),
    ("full", 0, "", 512, 1, "eager", 0),
]
TINY_GRID = [
    ("lora", 16, ALL, 1024, 1, "sdpa", 0),
    ("full", 0, "", 1024, 2, "eager", 1),
]


def grid_for(model, kind):
    if kind == "tiny":
        if model == "gpt-oss-20b-4l":
            return [("lora", 16, QKVO, 1024, 1, "eager", 0)]
        if model == "llama-3.2-1b":
            return TINY_GRID
        return TINY_GRID[:1]
    if model == "gpt-oss-20b-4l":
        return [("lora", 16, QKVO, 1024, 1, "eager", 0),
                ("lora", 16, QKVO, 2048, 2, "eager", 1)]
    g = list(LORA_GRID)
    if model == "llama-3.2-1b":
        # full fine-tuning interleaved so it is covered early
        g = [x for pair in zip(g, FULL_GRID) for x in pair] + g[len(FULL_GRID):]
    elif model == "llama-3.2-3b":
        g = [x for pair in zip(g, FULL_GRID[:5]) for x in pair] + g[5:]
    return g


def make_config(model, attn):
    import transformers
    family, fields = MODELS[model]
    cls = {"llama": transformers.LlamaConfig, "mistral": transformers.MistralConfig,
           "qwen2": transformers.Qwen2Config,
           "gpt_oss": getattr(transformers, "GptOssConfig", None)}[family]
    fields = dict(fields)
    try:
        cfg = cls(**fields)
    except Exception:
        fields.pop("rope_scaling", None)
        cfg = cls(**fields)
    cfg.use_cache = False
    cfg.attention_dropout = 0.0
    return family, cfg


def rough_estimate(model, cfg, method, r, targets, seq, mb, attn, ckpt):
    """Crude upper-ish estimate, only used to skip configs that cannot fit."""
    h, i, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    V, H = cfg.vocab_size, cfg.num_attention_heads
    kv = cfg.num_key_value_heads * (getattr(cfg, "head_dim", None) or h // H)
    P = V * h * (1 if cfg.tie_word_embeddings else 2) + L * (2 * h * h + 2 * h * kv + 3 * h * i)
    tokens = seq * mb
    lora_in = 0
    if method == "lora":
        lora_in = {QKVO: 4 * h, ALL: 6 * h + i}[targets]
    per_tok_layer = 34 * h + 10 * i + 5 * lora_in
    eager = 8 * mb * H * seq * seq if attn == "eager" else 0
    if ckpt:
        act = tokens * L * 2 * h + tokens * per_tok_layer + eager
    else:
        act = tokens * L * per_tok_layer + L * eager
    state = 8 * P if method == "full" else 2 * P
    return state + act + 16 * tokens * V


def run_one(model, c, total_mem):
    import torch
    import transformers
    method, r, targets, seq, mb, attn, ckpt = c
    family, cfg = make_config(model, attn)
    row = dict(model=model, family=family, hidden=cfg.hidden_size,
               intermediate=cfg.intermediate_size, layers=cfg.num_hidden_layers,
               heads=cfg.num_attention_heads, kv_heads=cfg.num_key_value_heads,
               head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
               vocab=cfg.vocab_size, tied=int(bool(cfg.tie_word_embeddings)),
               method=method, r=r, targets=targets, seq=seq, micro_batch=mb,
               tokens=seq * mb, attn=attn, grad_ckpt="full" if ckpt else "none")
    est = rough_estimate(model, cfg, method, r, targets, seq, mb, attn, ckpt)
    if est > 1.15 * total_mem:
        row["status"] = "skipped_est_%.1fGiB" % (est / 2**30)
        return row
    torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    with torch.device("cuda"):
        try:
            m = transformers.AutoModelForCausalLM.from_config(
                cfg, dtype=torch.bfloat16, attn_implementation=attn)
        except TypeError:
            m = transformers.AutoModelForCausalLM.from_config(
                cfg, torch_dtype=torch.bfloat16, attn_implementation=attn)
    m.config.use_cache = False
    if method == "lora":
        for p in m.parameters():
            p.requires_grad_(False)
    if ckpt:
        m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if method == "lora":
            m.enable_input_require_grads()
    if method == "lora":
        import peft
        lc = peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules=TARGETS[targets],
                             lora_dropout=0.05, bias="none", task_type="CAUSAL_LM")
        m = peft.get_peft_model(m, lc)
    m.train()
    torch.cuda.synchronize()
    row["build_s"] = round(time.time() - t0, 2)
    row["params"] = sum(p.numel() for p in m.parameters())
    tp = [p for p in m.parameters() if p.requires_grad]
    row["trainable_params"] = sum(p.numel() for p in tp)
    row["trainable_dtype"] = str(tp[0].dtype).replace("torch.", "") if tp else ""
    row["build_peak_allocated"] = torch.cuda.max_memory_allocated()
    row["after_build_allocated"] = torch.cuda.memory_allocated()
    row["after_build_reserved"] = torch.cuda.memory_reserved()
    opt = torch.optim.AdamW(tp, lr=1e-5, fused=True)
    t0 = time.time()
    status = "ok"
    loss_v = None
    try:
        for step in range(3):
            ids = torch.randint(0, cfg.vocab_size, (mb, seq), device="cuda")
            loss = m(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss_v = float(loss.detach())
            del loss, ids
            torch.cuda.synchronize()
            if step == 0:
                row["after_step1_allocated"] = torch.cuda.memory_allocated()
            row["peak_alloc_step%d" % (step + 1)] = torch.cuda.max_memory_allocated()
            row["peak_reserved_step%d" % (step + 1)] = torch.cuda.max_memory_reserved()
    except torch.cuda.OutOfMemoryError:
        status = "oom"
    row["steps_s"] = round(time.time() - t0, 2)
    row["loss"] = "" if loss_v is None else round(loss_v, 4)
    row["peak_allocated"] = torch.cuda.max_memory_allocated()
    row["peak_reserved"] = torch.cuda.max_memory_reserved()
    row["status"] = status
    del opt, tp, m
    return row


def worker(args):
    import torch
    total_mem = torch.cuda.get_device_properties(0).total_memory
    deadline = args.deadline
    grid = grid_for(args.model, args.grid)
    with open(args.out, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        for c in grid:
            if time.time() > deadline:
                print("# deadline reached in %s, %d configs left" % (args.model, len(grid) - grid.index(c)), flush=True)
                break
            try:
                row = run_one(args.model, c, total_mem)
            except torch.cuda.OutOfMemoryError:
                row = dict(zip(["method", "r", "targets", "seq", "micro_batch", "attn"], c[:6]),
                           model=args.model, grad_ckpt="full" if c[6] else "none",
                           peak_allocated=torch.cuda.max_memory_allocated(),
                           peak_reserved=torch.cuda.max_memory_reserved(), status="oom_build")
            except Exception as e:  # record and go on
                row = dict(zip(["method", "r", "targets", "seq", "micro_batch", "attn"], c[:6]),
                           model=args.model, grad_ckpt="full" if c[6] else "none",
                           status="error:" + repr(e)[:200].replace(",", ";").replace("\n", " "))
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            w.writerow(row)
            f.flush()
            print("ROW " + ",".join(str(row.get(k, "")) for k in COLUMNS), flush=True)


def env_lines():
    import torch
    import transformers
    import peft
    lines = [
        "date: " + datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "gpu: " + torch.cuda.get_device_name(0),
        "gpu_total_memory: %d" % torch.cuda.get_device_properties(0).total_memory,
        "python: " + sys.version.split()[0],
        "torch: " + torch.__version__ + " (cuda " + str(torch.version.cuda) + ")",
        "transformers: " + transformers.__version__,
        "peft: " + peft.__version__,
        "command: " + " ".join(sys.argv),
    ]
    try:
        import safetensors
        lines.append("safetensors: " + safetensors.__version__)
    except Exception:
        pass
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default=",".join(k for k in MODELS if k != "gpt-oss-20b-4l"))
    ap.add_argument("--grid", default="full", choices=["full", "tiny"])
    ap.add_argument("--budget-s", type=float, default=540)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--model")
    ap.add_argument("--deadline", type=float)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    t_start = time.time()
    deadline = t_start + args.budget_s
    models = args.models.split(",")
    env = env_lines()
    for line in env:
        print("# " + line, flush=True)
    with open(os.path.join(os.path.dirname(os.path.abspath(args.out)), "env.txt"), "w") as f:
        f.write("\n".join(env) + "\n")
    new = not os.path.exists(args.out)
    with open(args.out, "a", newline="") as f:
        if new:
            for line in env:
                f.write("# " + line + "\n")
            f.write(",".join(COLUMNS) + "\n")
    print(",".join(COLUMNS), flush=True)
    for k, model in enumerate(models):
        now = time.time()
        left = deadline - now
        if left < 10:
            print("# no time left for " + ",".join(models[k:]), flush=True)
            break
        # share the remaining time among the remaining families
        share = left / (len(models) - k)
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--model", model,
               "--grid", args.grid, "--out", args.out, "--deadline", str(now + share)]
        print("# family %s: %.0f s" % (model, share), flush=True)
        try:
            subprocess.run(cmd, timeout=left + 5)
        except subprocess.TimeoutExpired:
            print("# worker for %s timed out" % model, flush=True)
    print("# total %.1f s" % (time.time() - t_start), flush=True)


if __name__ == "__main__":
    main()
