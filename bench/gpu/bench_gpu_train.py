"""GPU training throughput and memory of tune against transformers+PEFT, in one call, same GPU.

    python3 bench/gpu/bench_gpu_train.py [--steps N] [--warmup K] [--rows a,b] [--json OUT]

Needs build/cuda/train_step (`make cuda`) and python3 with torch, transformers and peft (the
lent GPU machine has them). For each row of ROWS (issue 6's settings), on random weights at the
preset's real shapes (the config.json is tune's preset, printed by train_step, so both stacks
build the very same model):
  - tune: build/cuda/train_step, a child process: forward + backward + grad norm + clip 1.0 +
    AdamW per step, one sequence of --seq random tokens per micro-batch row;
  - transformers+PEFT, a child process: AutoModelForCausalLM.from_config in bf16 on the GPU, sdpa
    attention, get_peft_model with the same LoRA (dropout 0), torch.optim.AdamW(fused=True),
    clip_grad_norm_(1.0), the same tokens; full fine-tuning keeps fp32 weights under bf16
    autocast (what Trainer's bf16=True does). Gradient checkpointing: gradient_checkpointing_enable
    (use_reentrant=False).
tokens/s = tokens of the timed steps / their seconds (the device waited for before each clock
reading), after --warmup steps. Memory: tune's plan total and what its backend held at peak
(plan buffers + workspace); torch's max_memory_allocated and max_memory_reserved. MFU: model
FLOPs of a step (no recompute counted; ../shared/ROOFLINE.md's counting) per second against the
bf16 GEMM rate measured here first (torch.matmul, 8192^3). Prints a markdown table.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROWS = {
    "8b-b1": dict(model="llama-3.1-8b", method="lora", r=16, alpha=32, targets="all-linear", seq=2048, mb=1, ckpt="none"),
    "8b-b1-ckpt": dict(model="llama-3.1-8b", method="lora", r=16, alpha=32, targets="all-linear", seq=2048, mb=1, ckpt="full"),
    # transformers has no selective policy (its checkpointing recomputes whole layers): tune only,
    # against tune's own none and full rows.
    "8b-b1-selective": dict(model="llama-3.1-8b", method="lora", r=16, alpha=32, targets="all-linear", seq=2048, mb=1,
                            ckpt="selective", hf=False),
    "8b-b4": dict(model="llama-3.1-8b", method="lora", r=16, alpha=32, targets="all-linear", seq=2048, mb=4, ckpt="none"),
    "8b-b4-ckpt": dict(model="llama-3.1-8b", method="lora", r=16, alpha=32, targets="all-linear", seq=2048, mb=4, ckpt="full"),
    "7b-seeds": dict(model="llama-2-7b", method="lora", r=8, alpha=32, targets="q,k,v,o", seq=512, mb=3, ckpt="none"),
    "1b-full": dict(model="llama-3.2-1b", method="full", r=16, alpha=32, targets="all-linear", seq=2048, mb=4, ckpt="none"),
}
TRAIN_STEP = "build/cuda/train_step"
HF_TARGETS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "gate": "gate_proj", "up": "up_proj",
              "down": "down_proj"}


def model_flops_per_token(cfg, seq, method):
    """Forward FLOP per token (linears, lm_head, causal attention) and the step's FLOP per token."""
    C, I, L, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim") or C // H
    linear = L * (C * H * D + 2 * C * KV * D + H * D * C + 3 * C * I) + V * C
    attention = 2 * seq * H * D * L
    forward = 2 * linear + attention
    # LoRA: forward + dX backward through frozen linears; full: + dW. Attention backward ~2.5x forward.
    step = (2 if method == "lora" else 3) * 2 * linear + 3.5 * attention
    return forward, step


def hf_child(row, cfg, steps, warmup):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    conf = LlamaConfig(**cfg)
    conf._attn_implementation = "sdpa"
    full = row["method"] == "full"
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(conf, torch_dtype=torch.float32 if full else torch.bfloat16,
                                                 attn_implementation="sdpa")
    if row["ckpt"] == "full":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if not full:
        from peft import LoraConfig, get_peft_model
        targets = list(HF_TARGETS.values()) if row["targets"] == "all-linear" else \
            [HF_TARGETS[t] for t in row["targets"].split(",")]
        model = get_peft_model(model, LoraConfig(r=row["r"], lora_alpha=row["alpha"], lora_dropout=0.0,
                                                 target_modules=targets, task_type="CAUSAL_LM"))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0, fused=True)
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, cfg["vocab_size"], (row["mb"], row["seq"]), generator=g).cuda()
    torch.cuda.reset_peak_memory_stats()
    t0 = 0.0
    for s in range(warmup + steps):
        if s == warmup:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=full):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"tokens_per_s": row["mb"] * row["seq"] * steps / seconds, "loss": loss.item(),
            "allocated_bytes": torch.cuda.max_memory_allocated(), "reserved_bytes": torch.cuda.max_memory_reserved()}


def gemm_peak():
    import torch
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    n = 20
    for _ in range(n):
        a @ b
    torch.cuda.synchronize()
    return 2 * 8192 ** 3 * n / (time.perf_counter() - t0)


def run_tune(row, steps, warmup):
    cmd = [TRAIN_STEP, "--model", row["model"], "--method", row["method"], "--r", str(row["r"]), "--alpha",
           str(row["alpha"]), "--targets", row["targets"], "--seq", str(row["seq"]), "--micro-batch", str(row["mb"]),
           "--grad-ckpt", row["ckpt"], "--steps", str(steps), "--warmup", str(warmup)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        return {"error": (p.stderr or p.stdout).strip().splitlines()[-1:]}
    return json.loads(p.stdout)


def run_hf(name, steps, warmup):
    p = subprocess.run([sys.executable, __file__, "--hf-child", name, "--steps", str(steps), "--warmup", str(warmup)],
                       capture_output=True, text=True)
    if p.returncode:
        tail = (p.stderr or p.stdout).strip().splitlines()
        return {"error": "out of memory" if "OutOfMemoryError" in p.stderr else (tail[-1] if tail else "failed")}
    return json.loads(p.stdout.strip().splitlines()[-1])


def preset_config(model):
    return json.loads(subprocess.run([TRAIN_STEP, model, "--print-config"], capture_output=True, text=True,
                                     check=True).stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--json")
    ap.add_argument("--hf-child")
    ap.add_argument("--skip-hf", action="store_true")
    a = ap.parse_args()
    if a.hf_child:
        row = ROWS[a.hf_child]
        print(json.dumps(hf_child(row, preset_config(row["model"]), a.steps, a.warmup)))
        return
    import torch
    peak = gemm_peak()
    gpu = torch.cuda.get_device_name()
    print(f"GPU {gpu}; measured bf16 GEMM (torch.matmul 8192^3): {peak / 1e12:.0f} TFLOP/s")
    print("| row | tune tok/s | tune MFU | tune held / planned GiB | transformers+PEFT tok/s | MFU | allocated / "
          "reserved GiB | speed ratio | memory ratio (tune held / reserved) |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = []
    gib = 2 ** 30
    for name in a.rows.split(","):
        row = ROWS[name]
        _, step_flop = model_flops_per_token(preset_config(row["model"]), row["seq"], row["method"])
        t = run_tune(row, a.steps, a.warmup)
        h = {"error": "skipped"} if a.skip_hf or not row.get("hf", True) else run_hf(name, a.steps, a.warmup)
        results.append({"row": name, "settings": row, "tune": t, "hf": h, "gemm_peak": peak, "gpu": gpu})
        tcol = (f"{t['tokens_per_s']:,.0f} | {100 * t['tokens_per_s'] * step_flop / peak:.1f}% | "
                f"{t['held_peak_bytes'] / gib:.1f} / {t['planned_bytes'] / gib:.1f}") if "error" not in t else \
            f"{t['error']} | | "
        hcol = (f"{h['tokens_per_s']:,.0f} | {100 * h['tokens_per_s'] * step_flop / peak:.1f}% | "
                f"{h['allocated_bytes'] / gib:.1f} / {h['reserved_bytes'] / gib:.1f}") if "error" not in h else \
            f"{h['error']} | | "
        both = "error" not in t and "error" not in h
        ratio = f"{t['tokens_per_s'] / h['tokens_per_s']:.2f}x | {t['held_peak_bytes'] / h['reserved_bytes']:.2f}x" \
            if both else " | "
        print(f"| {name} | {tcol} | {hcol} | {ratio} |", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:False")
    main()
