"""Makes tests/fixtures/ops/: inputs, outputs and gradients of every CPU backend
op, computed by PyTorch, which tests/test_cpu_ops.c compares against.

    /work/venv-ref/bin/python tools/ref/make_op_fixtures.py
    (any venv with torch, transformers and safetensors will do)

Inputs are drawn in fp32 (what the C side reads); references are computed from
them in fp64 on the CPU, so the expected values carry no fp32 rounding of
their own. Where transformers has the function the models run (RMSNorm,
apply_rotary_pos_emb, the llama3 inverse frequencies, the eager attention of
llama and gpt-oss), the script uses it or checks its own fp64 version against
it. Packed rows: T tokens holding 2-3 sequences, described by `starts` [S+1]
and `positions` [T] (I32) as struct seq_layout does. Seeded: a rerun gives
identical files. Everything is stored as F32 or I32.

Outputs (about 0.5 MB in all), one file per op:
  matmul.safetensors        a [M,K], at = a^T, b [K,N], bt = b^T, c0 [M,N], and
                            expected = alpha * a @ b + beta * c0 (alpha 1.5,
                            beta 0.5): the same answer for all 4 transposes
  rmsnorm.safetensors       x [T,C], w [C], dout -> out, rstd [T], dx, dw (eps 1e-5)
  rope.safetensors          per variant (plain: theta 1e4; llama3: theta 5e5,
                            factor 8, low 1, high 4, original 8192): inv_freq,
                            cos_sin [P, D/2, 2], x [T,H,D] -> out
  attention.safetensors     per case (causal, window3, sinks, sinks_window4):
                            q [T,H,D], k, v [T,KV,D], sinks [H], dout -> out,
                            lse [H,T], dq, dk, dv, dsinks; scale D^-0.5
  swiglu.safetensors        gate, up, dh [T,I] -> h, dgate, dup
  cross_entropy.safetensors logits [T,V], labels [T] (some -100) -> loss (mean
                            over counted tokens), lse [T], dlogits of the mean
  embedding.safetensors     table [V,C], ids [T] (repeated), dout -> out, dtable
  adamw.safetensors         p0, grads g1..g3 [N] -> p, m, v after 3 steps of
                            torch.optim.AdamW(lr 1e-3, wd 0.01)
"""
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.gpt_oss import modeling_gpt_oss
from transformers.models.llama import modeling_llama

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "ops")
gen = torch.Generator().manual_seed(20250301)


def randn(*shape, std=1.0):
    return (torch.randn(*shape, generator=gen, dtype=torch.float32) * std).contiguous()


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def i32(t):
    return t.to(torch.int32).contiguous()


def layout(lengths):
    starts = [0]
    for n in lengths:
        starts.append(starts[-1] + n)
    positions = [p for n in lengths for p in range(n)]
    return torch.tensor(starts), torch.tensor(positions)


def save(name, tensors):
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, name))


def make_matmul():
    M, K, N = 7, 13, 5
    a, b, c0 = randn(M, K), randn(K, N), randn(M, N)
    expected = 1.5 * a.double() @ b.double() + 0.5 * c0.double()
    save("matmul.safetensors", {"a": a, "at": a.t(), "b": b, "bt": b.t(), "c0": c0,
                                "expected": f32(expected)})


def make_rmsnorm():
    T, C, eps = 12, 320, 1e-5  # C spans two of the CPU backend's 256-column tasks
    x, w, dout = randn(T, C, std=2.0), 1.0 + randn(C, std=0.1), randn(T, C)
    xd, wd = x.double().requires_grad_(), w.double().requires_grad_()
    rstd = torch.rsqrt(xd.pow(2).mean(-1) + eps)
    out = wd * (xd * rstd[:, None])
    # transformers' module, run in fp32, must agree with the fp64 formula
    norm = modeling_llama.LlamaRMSNorm(C, eps=eps)
    norm.weight.data.copy_(w)
    assert torch.allclose(norm(x).double(), out, rtol=1e-5, atol=1e-5)
    out.backward(dout.double())
    save("rmsnorm.safetensors", {"x": x, "w": w, "dout": dout, "out": f32(out), "rstd": f32(rstd),
                                 "dx": f32(xd.grad), "dw": f32(wd.grad)})


def make_rope():
    H, D = 4, 16
    lengths = [12, 20, 8]
    starts, positions = layout(lengths)
    T, P = sum(lengths), max(lengths)
    tensors = {"starts": i32(starts), "positions": i32(positions)}
    variants = {
        "plain": {"rope_type": "default", "rope_theta": 10000.0},
        "llama3": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    }
    for name, params in variants.items():
        config = LlamaConfig(hidden_size=H * D, num_attention_heads=H, head_dim=D, rope_parameters=params,
                             max_position_embeddings=131072)
        rotary = modeling_llama.LlamaRotaryEmbedding(config)
        inv_freq = rotary.inv_freq
        if name == "llama3":  # the script's reading of _compute_llama3_parameters
            base = 1.0 / (params["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
            low_wl = params["original_max_position_embeddings"] / params["low_freq_factor"]
            high_wl = params["original_max_position_embeddings"] / params["high_freq_factor"]
            mine = []
            for f in base.tolist():
                wl = 2 * math.pi / f
                if wl < high_wl:
                    mine.append(f)
                elif wl > low_wl:
                    mine.append(f / params["factor"])
                else:
                    s = (params["original_max_position_embeddings"] / wl - params["low_freq_factor"]) / (
                        params["high_freq_factor"] - params["low_freq_factor"])
                    mine.append((1 - s) * f / params["factor"] + s * f)
            assert torch.allclose(torch.tensor(mine), inv_freq, rtol=1e-6), (mine, inv_freq)
            assert ROPE_INIT_FUNCTIONS["llama3"](config)[0].equal(inv_freq)
        x = randn(T, H, D)
        cos, sin = rotary(x, torch.arange(P)[None])  # [1, P, D] fp32, as the model would tabulate
        cos_sin = torch.stack([cos[0, :, : D // 2], sin[0, :, : D // 2]], dim=-1)  # [P, D/2, 2]
        c = cos[0, positions].double()[None]  # [1, T, D]
        s = sin[0, positions].double()[None]
        q = x.double().transpose(0, 1)[None]  # [1, H, T, D]
        out, _ = modeling_llama.apply_rotary_pos_emb(q, q, c, s)
        tensors.update({f"{name}.inv_freq": f32(inv_freq), f"{name}.cos_sin": f32(cos_sin),
                        f"{name}.x": x, f"{name}.out": f32(out[0].transpose(0, 1))})
    save("rope.safetensors", tensors)


def attention_fp64(q, k, v, sinks, starts, window, scale):
    """q [T,H,D], k/v [T,KV,D] fp64 -> out [T,H,D], lse [H,T]; block-diagonal causal mask."""
    T, H, _ = q.shape
    rep = H // k.shape[1]
    kk, vv = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    scores = torch.einsum("thd,shd->hts", q, kk) * scale  # [H, T, T]
    seq = torch.bucketize(torch.arange(T), starts[1:], right=True)
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    visible = (seq[:, None] == seq[None, :]) & (j <= i)
    if window > 0:
        visible &= j > i - window
    scores = scores.masked_fill(~visible, float("-inf"))
    if sinks is not None:
        scores = torch.cat([scores, sinks[:, None, None].expand(H, T, 1)], dim=-1)
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - lse[..., None])[..., :T]
    return torch.einsum("hts,shd->thd", probs, vv), lse, visible


def check_against_transformers(q, k, v, sinks, visible, scale, out):
    """The same case through transformers' eager attention (one batch row, additive mask)."""
    H, KV = q.shape[1], k.shape[1]
    module = torch.nn.Module()
    module.num_key_value_groups, module.training = H // KV, False
    mask = torch.zeros(visible.shape, dtype=torch.float64).masked_fill(~visible, torch.finfo(torch.float64).min)
    args = (q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], mask[None, None])
    if sinks is None:
        ref, _ = modeling_llama.eager_attention_forward(module, *args, scaling=scale)
        tol = 1e-6  # llama's eager softmax runs in fp32
    else:
        module.sinks = sinks
        ref, _ = modeling_gpt_oss.eager_attention_forward(module, *args, scaling=scale)
        tol = 1e-12
    assert torch.allclose(ref[0], out, rtol=tol, atol=tol)


def make_attention():
    H, KV, D = 4, 2, 16
    lengths = [12, 11, 7]
    starts, positions = layout(lengths)
    T, scale = sum(lengths), 1.0 / math.sqrt(D)
    tensors = {"starts": i32(starts), "positions": i32(positions)}
    cases = {"causal": (0, False), "window3": (3, False), "sinks": (0, True), "sinks_window4": (4, True)}
    for name, (window, with_sinks) in cases.items():
        q, k, v, dout = randn(T, H, D, std=1.5), randn(T, KV, D, std=1.5), randn(T, KV, D), randn(T, H, D)
        sinks = randn(H) if with_sinks else None
        leaves = [t.double().requires_grad_() for t in (q, k, v)]
        sd = sinks.double().requires_grad_() if with_sinks else None
        out, lse, visible = attention_fp64(*leaves, sd, starts, window, scale)
        check_against_transformers(*[t.detach() for t in leaves], sd.detach() if with_sinks else None,
                                   visible, scale, out.detach())
        out.backward(dout.double())
        p = f"{name}."
        tensors.update({p + "q": q, p + "k": k, p + "v": v, p + "dout": dout, p + "out": f32(out),
                        p + "lse": f32(lse), p + "dq": f32(leaves[0].grad), p + "dk": f32(leaves[1].grad),
                        p + "dv": f32(leaves[2].grad), p + "window": torch.tensor([window], dtype=torch.int32)})
        if with_sinks:
            tensors.update({p + "sinks": sinks, p + "dsinks": f32(sd.grad)})
    save("attention.safetensors", tensors)


def make_swiglu():
    T, I = 16, 48
    gate, up, dh = randn(T, I, std=3.0), randn(T, I), randn(T, I)
    g, u = gate.double().requires_grad_(), up.double().requires_grad_()
    h = F.silu(g) * u
    h.backward(dh.double())
    save("swiglu.safetensors", {"gate": gate, "up": up, "dh": dh, "h": f32(h), "dgate": f32(g.grad),
                                "dup": f32(u.grad)})


def make_cross_entropy():
    T, V = 30, 100
    logits = randn(T, V, std=4.0)
    labels = torch.randint(0, V, (T,), generator=gen)
    labels[[0, 7, 8, 21]] = -100
    ld = logits.double().requires_grad_()
    loss = F.cross_entropy(ld, labels, ignore_index=-100, reduction="mean")
    loss.backward()
    save("cross_entropy.safetensors", {"logits": logits, "labels": i32(labels), "loss": f32(loss.reshape(1)),
                                       "lse": f32(torch.logsumexp(ld, dim=-1)), "dlogits": f32(ld.grad)})


def make_embedding():
    V, C, T = 40, 272, 24  # C spans two 256-column tasks
    table, dout = randn(V, C), randn(T, C)
    ids = torch.randint(0, V, (T,), generator=gen)
    ids[[3, 9, 17]] = int(ids[1])  # repeated ids must accumulate
    ids[20] = V - 1
    td = table.double().requires_grad_()
    out = F.embedding(ids, td)
    out.backward(dout.double())
    save("embedding.safetensors", {"table": table, "ids": i32(ids), "dout": dout, "out": f32(out),
                                   "dtable": f32(td.grad)})


def make_adamw():
    N = 200
    p0 = randn(N, std=0.02)  # the scale of LoRA weights, so the update is visible in fp32
    grads = [randn(N, std=s) for s in (1.0, 0.01, 3.0)]
    param = torch.nn.Parameter(p0.clone())
    opt = torch.optim.AdamW([param], lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    for g in grads:
        param.grad = g.clone()
        opt.step()
    state = opt.state[param]
    save("adamw.safetensors", {"p0": p0, "g1": grads[0], "g2": grads[1], "g3": grads[2], "p": f32(param),
                               "m": f32(state["exp_avg"]), "v": f32(state["exp_avg_sq"])})


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_grad_enabled(True)
    for make in (make_matmul, make_rmsnorm, make_rope, make_attention, make_swiglu, make_cross_entropy,
                 make_embedding, make_adamw):
        make()
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {OUT}: {total} bytes")


if __name__ == "__main__":
    main()
