"""GPU training throughput and memory of tune against transformers+PEFT, in one call, same GPU.

    python3 bench/gpu/bench_gpu_train.py [--steps N] [--warmup K] [--rows a,b] [--json OUT]

Needs build/cuda/train_step (`make cuda`) and python3 with torch, transformers and peft (the
lent GPU machine has them). For each row of ROWS, on random weights at the preset's real shapes
(the config.json is tune's preset, printed by train_step, so both stacks build the very same
model). The default --rows are issue 6's llama rows; issue 7's gpt-oss rows (oss20b-b1,
oss20b-b1-ckpt, oss20b-cookbook, oss120b-seeds, and tune-only rows with full checkpointing whose
layer inputs are in host memory: oss20b-b1-offload, oss120b-seeds-offload) run only when named.
  - tune: build/cuda/train_step, a child process: forward + backward + grad norm + clip 1.0 +
    AdamW per step, one sequence of --seq random tokens per micro-batch row; gpt-oss keeps its
    experts in MXFP4 (run_config_default's base dtype: train_step has no --base-dtype);
  - transformers+PEFT, a child process: AutoModelForCausalLM.from_config in bf16 on the GPU in
    training mode, sdpa attention (eager for gpt-oss, for its attention sinks: see hf_config; its
    experts dequantized bf16: no quantization_config), get_peft_model with the same LoRA
    (dropout 0; gpt-oss expert rows through target_parameters), torch.optim.AdamW(fused=True),
    clip_grad_norm_(1.0), the same tokens; full fine-tuning keeps fp32 weights under bf16
    autocast (what Trainer's bf16=True does). Gradient checkpointing: gradient_checkpointing_enable
    (use_reentrant=False).
A row with hf=False has no transformers child (the reason is beside it in ROWS); the rows'
notes are printed under the table.
tokens/s = tokens of the timed steps / their seconds (the device waited for before each clock
reading), after --warmup steps. Memory: tune's plan total and what its backend held at peak
(plan buffers + workspace); torch's max_memory_allocated and max_memory_reserved. MFU: model
FLOPs of a step (no recompute counted; ../shared/ROOFLINE.md's counting; for gpt-oss the active
parameters only, moe_flops_per_token) per second against the bf16 GEMM rate measured here first
(torch.matmul, 8192^3). Prints a markdown table, then the rows' notes.
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
    # Full checkpointing with the last layer kept out of it (--ckpt-keep 1): tune only (transformers has no such
    # policy), against Unsloth's checkpointed figures (ROOFLINE.md: 10,113 tok/s in 16.2 GiB).
    "8b-b1-ckpt-keep1": dict(model="llama-3.1-8b", method="lora", r=16, alpha=32, targets="all-linear", seq=2048,
                             mb=1, ckpt="full", ckpt_keep=1, hf=False),
    "8b-b4": dict(model="llama-3.1-8b", method="lora", r=16, alpha=32, targets="all-linear", seq=2048, mb=4, ckpt="none"),
    "8b-b4-ckpt": dict(model="llama-3.1-8b", method="lora", r=16, alpha=32, targets="all-linear", seq=2048, mb=4, ckpt="full"),
    "7b-seeds": dict(model="llama-2-7b", method="lora", r=8, alpha=32, targets="q,k,v,o", seq=512, mb=3, ckpt="none"),
    "1b-full": dict(model="llama-3.2-1b", method="full", r=16, alpha=32, targets="all-linear", seq=2048, mb=4, ckpt="none"),
}
DEFAULT_ROWS = ",".join(ROWS)
# Issue 7's gpt-oss rows: only when named in --rows. PEFT's all-linear on gpt-oss is q, k, v, o (router and experts
# are bare parameters, not nn.Linear), and so is tune's.
ROWS.update({
    "oss20b-b1": dict(model="gpt-oss-20b", method="lora", r=16, alpha=32, targets="q,k,v,o", seq=2048, mb=1,
                      ckpt="none"),
    "oss20b-b1-ckpt": dict(model="gpt-oss-20b", method="lora", r=16, alpha=32, targets="q,k,v,o", seq=2048, mb=1,
                           ckpt="full"),
    # The OpenAI cookbook's recipe (openai-cookbook articles/gpt-oss/fine-tune-transfomers.ipynb): r8 alpha16,
    # target_modules="all-linear" (q, k, v, o here) plus target_parameters on the experts' gate_up_proj and down_proj
    # of layers 7, 15 and 23 only; max_length 2048, per-device batch 4, grad-accum 4, gradient_checkpointing=True.
    # tune: --targets all-linear,experts --expert-layers 7,15,23.
    "oss20b-cookbook": dict(model="gpt-oss-20b", method="lora", r=8, alpha=16, targets="all-linear,experts",
                            expert_layers=(7, 15, 23), seq=2048, mb=4, ckpt="full",
                            note="the cookbook's grad-accum 4 is not run: train_step has no accumulation and both "
                                 "sides step the optimizer after each micro-batch of 4 x 2048 tokens; tokens/s is per "
                                 "micro-batch step, which accumulation does not change"),
    # gpt-oss-120b in bf16 is ~117e9 parameters x 2 bytes = ~234 GB: transformers' training path (experts dequantized
    # to bf16, as in the other gpt-oss rows) cannot hold it on one 80 GB GPU, so no transformers child is attempted:
    # tune only.
    "oss120b-seeds": dict(model="gpt-oss-120b", method="lora", r=8, alpha=32, targets="q,k,v,o", seq=512, mb=3,
                          ckpt="none", hf=False),
    # The same with full checkpointing, its layer inputs in host memory (--offload-checkpoints): the 65e9-byte goal.
    "oss120b-seeds-offload": dict(model="gpt-oss-120b", method="lora", r=8, alpha=32, targets="q,k,v,o", seq=512,
                                  mb=3, ckpt="full", offload=True, hf=False),
    "oss20b-b1-offload": dict(model="gpt-oss-20b", method="lora", r=16, alpha=32, targets="q,k,v,o", seq=2048, mb=1,
                              ckpt="full", offload=True, hf=False),
})
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
    return forward_and_step(linear, attention, method)


def moe_flops_per_token(cfg, seq, method):
    """model_flops_per_token for a mixture-of-experts config (one with num_local_experts: gpt-oss), on the ACTIVE
    parameters: per token and layer the attention projections (q, k, v, o), the router (hidden x experts) and only
    the num_experts_per_tok routed experts' gate_up (hidden x 2 * intermediate) and down (intermediate x hidden);
    plus the lm_head once. Causal attention counts the keys each query sees: seq / 2 on average for full_attention
    layers, only the window on sliding_attention layers (sliding_window, layer_types; alternating from sliding when
    the config has no layer_types). Not counted: the experts not routed to, biases, norms, softmax, the sinks, LoRA's
    own factors, and the masked-out scores that an eager implementation computes anyway."""
    C, I, L, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    E, K = cfg["num_local_experts"], cfg.get("num_experts_per_tok") or cfg["experts_per_token"]
    D = cfg.get("head_dim") or C // H
    W = cfg.get("sliding_window") or seq
    types = cfg.get("layer_types") or ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(L)]
    linear = L * (C * H * D + 2 * C * KV * D + H * D * C + C * E + K * (C * 2 * I + I * C)) + V * C
    # Mean keys per query: seq / 2 causal; with a window W < seq, (W^2 / 2 + (seq - W) * W) / seq.
    window_keys = seq / 2 if seq <= W else W - W * W / (2 * seq)
    keys = sum(window_keys if t == "sliding_attention" else seq / 2 for t in types)
    attention = 4 * H * D * keys  # QK^T and PV, 2 * D FLOPs each per key and head
    return forward_and_step(linear, attention, method)


def forward_and_step(linear, attention, method):
    """Forward FLOP per token and the step's, from the linears' multiply-adds and the attention's forward FLOP."""
    forward = 2 * linear + attention
    # LoRA: forward + dX backward through frozen linears; full: + dW. Attention backward ~2.5x forward.
    step = (2 if method == "lora" else 3) * 2 * linear + 3.5 * attention
    return forward, step


def hf_config(cfg):
    """The transformers config of tune's printed config.json and the attention implementation to run it with."""
    if "num_local_experts" in cfg:
        from transformers import GptOssConfig
        # No quantization_config: the experts are built dequantized in bf16 (what Mxfp4Config(dequantize=True)
        # gives when training from the hub's checkpoint), random here. use_cache off as in the cookbook's training.
        cfg = {k: v for k, v in cfg.items() if k != "quantization_config"}
        cfg["use_cache"] = False
        # eager: the transformers GptOss source read here (4.5x) has _supports_sdpa = False and passes its attention
        # sinks as s_aux, which only the eager (and kernel-hub flash) paths use; whether 5.17's sdpa honours sinks
        # could not be checked where this was written, so eager, as the cookbook trains it.
        return GptOssConfig(**cfg), "eager"
    from transformers import LlamaConfig
    return LlamaConfig(**cfg), "sdpa"


def hf_child(row, cfg, steps, warmup):
    import torch
    from transformers import AutoModelForCausalLM

    conf, attn = hf_config(cfg)
    conf._attn_implementation = attn
    full = row["method"] == "full"
    torch.manual_seed(0)
    # Built on the GPU in its final dtype: no host copy and no fp32 copy beside the bf16 one.
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(conf, torch_dtype=torch.float32 if full else torch.bfloat16,
                                                 attn_implementation=attn)
    # Training mode, as Trainer sets it: transformers checkpoints layers only in training mode, and GptOssExperts
    # takes its per-expert training path there (in eval mode it runs every expert on every token).
    model.train()
    if row["ckpt"] == "full":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if not full:
        from peft import LoraConfig, get_peft_model
        # tune's all-linear is PEFT's: every nn.Linear of the layers, q, k, v, o alone on gpt-oss; "experts" is
        # target_parameters below.
        linear = ["q_proj", "k_proj", "v_proj", "o_proj"] if "num_local_experts" in cfg else list(HF_TARGETS.values())
        targets = [m for t in row["targets"].split(",") if t != "experts"
                   for m in (linear if t == "all-linear" else [HF_TARGETS[t]])]
        # PEFT matches a target parameter by its full name or a suffix after a ".": "7.mlp.experts.down_proj" is
        # model.layers.7's and not model.layers.17's (the cookbook's spelling).
        experts = [f"{layer}.mlp.experts.{p}" for layer in row.get("expert_layers", ())
                   for p in ("gate_up_proj", "down_proj")]
        model = get_peft_model(model, LoraConfig(r=row["r"], lora_alpha=row["alpha"], lora_dropout=0.0,
                                                 target_modules=targets, target_parameters=experts or None,
                                                 task_type="CAUSAL_LM"))
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
    if row.get("offload"):
        cmd.append("--offload-checkpoints")
    if row.get("ckpt_keep"):
        cmd += ["--ckpt-keep", str(row["ckpt_keep"])]
    if row.get("expert_layers"):
        cmd += ["--expert-layers", ",".join(map(str, row["expert_layers"]))]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        tail = (p.stderr or p.stdout).strip().splitlines()
        return {"error": tail[-1] if tail else "failed"}
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
    ap.add_argument("--rows", default=DEFAULT_ROWS,
                    help=f"comma-separated rows (default %(default)s; all: {','.join(ROWS)})")
    ap.add_argument("--json")
    ap.add_argument("--hf-child")
    ap.add_argument("--skip-hf", action="store_true")
    a = ap.parse_args()
    unknown = [n for n in a.rows.split(",") if n not in ROWS]
    if unknown:
        ap.error(f"--rows: no row {', '.join(unknown)} (rows: {','.join(ROWS)})")
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
        cfg = preset_config(row["model"])
        flops = moe_flops_per_token if "num_local_experts" in cfg else model_flops_per_token
        _, step_flop = flops(cfg, row["seq"], row["method"])
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
    notes = [f"- {n}: {ROWS[n]['note']}" for n in a.rows.split(",") if "note" in ROWS[n]]
    if notes:
        print("\n" + "\n".join(notes))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:False")
    main()
