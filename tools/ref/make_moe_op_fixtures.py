"""Makes tests/fixtures/ops/moe.safetensors: the mixture-of-experts ops of the
backend (moe_topk, the gated activation swiglu_oai, and a whole gpt-oss MoE
block) computed by PyTorch with transformers' own modules, which
tests/test_moe_ops.c compares against.

    /work/venv-ref/bin/python tools/ref/make_moe_op_fixtures.py
    (any venv with torch, transformers and safetensors will do)

As tools/ref/make_op_fixtures.py: inputs drawn in fp32 (what the C side
reads), references computed from them in fp64 by autograd, everything stored
as F32 or I32, seeded (a rerun gives an identical file). Sizes: T tokens,
E experts, k experts per token, C hidden, I intermediate.

  topk.*   logits [T,E], dweights [T,k] -> experts [T,k] (I32), weights [T,k]
           (GptOssTopKRouter's torch.topk + softmax over the k values), dlogits
  act.*    x [T,2I] (gate/up interleaved, |x| up to ~15, some exactly +-limit),
           dh [T,I] -> h [T,I], dx [T,2I] (GptOssExperts._apply_gate);
           alpha_limit [2] = (1.702, 7.0)
  block.*  x [T,C], router_w [E,C], router_b [E], gate_up [E,C,2I],
           gate_up_bias [E,2I], down [E,I,C], down_bias [E,C] (transformers'
           layouts: x @ W[e]), dy [T,C] -> logits, experts, weights, y [T,C],
           dweights [T,k] (gradient of the routing weights), dlogits [T,E],
           dx [T,C] (both paths: router and experts). Expert 2 gets no token
           (router bias -30), and some gate_up outputs pass the clamps.

Random cases are redrawn until no value sits within 1e-3 of a decision that
fp32 rounding could flip (a top-k boundary, a clamp limit), so the C side's
fp32 arithmetic takes the same branches as the fp64 reference.
"""
import os

import torch
from safetensors.torch import save_file
from transformers import GptOssConfig
from transformers.models.gpt_oss import modeling_gpt_oss

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "ops")
gen = torch.Generator().manual_seed(20250302)
T, E, K, C, I = 13, 4, 2, 24, 10
MARGIN = 1e-3
config = GptOssConfig(hidden_size=C, intermediate_size=I, num_local_experts=E, num_experts_per_tok=K,
                      experts_implementation="eager")
ALPHA, LIMIT = config.swiglu_alpha, config.swiglu_limit


def randn(*shape, std=1.0):
    return (torch.randn(*shape, generator=gen, dtype=torch.float32) * std).contiguous()


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def i32(t):
    return t.to(torch.int32).contiguous()


def topk_margin(logits):
    """Smallest gap between neighbours in each row's sorted logits up to slot k."""
    s = logits.sort(dim=-1, descending=True).values
    return (s[:, :K] - s[:, 1:K + 1]).min().item()


def clamp_margin(gate_up):
    return (gate_up.abs() - LIMIT).abs().min().item()


def make_topk():
    while True:
        logits = randn(T, E, std=2.0)
        if topk_margin(logits) > MARGIN:
            break
    dweights = randn(T, K)
    # the router's own forward from given logits: hidden size E, identity weight, zero bias
    router = modeling_gpt_oss.GptOssTopKRouter(GptOssConfig(hidden_size=E, num_local_experts=E,
                                                            num_experts_per_tok=K)).double()
    ld = logits.double().requires_grad_()
    with torch.no_grad():
        router.weight.copy_(torch.eye(E, dtype=torch.float64))
        router.bias.zero_()
    router_logits, weights, experts = router(ld)
    assert torch.equal(router_logits, ld)
    weights.backward(dweights.double())
    return {"topk.logits": logits, "topk.dweights": dweights, "topk.experts": i32(experts),
            "topk.weights": f32(weights), "topk.dlogits": f32(ld.grad)}


def make_act():
    while True:
        x = randn(T, 2 * I, std=5.0)
        if clamp_margin(x) > MARGIN:
            break
    # exactly at the limits, where torch.clamp's gradient is decided by its comparisons
    x[0, 0], x[1, 1], x[2, 3], x[3, 0] = LIMIT, LIMIT, -LIMIT, -LIMIT
    dh = randn(T, I)
    experts = modeling_gpt_oss.GptOssExperts(config)
    xd = x.double().requires_grad_()
    h = experts._apply_gate(xd)
    h.backward(dh.double())
    for name, part in (("gate", x[:, 0::2]), ("up", x[:, 1::2])):
        print(f"act: {name} above limit {(part > LIMIT).sum().item()}, below -limit {(part < -LIMIT).sum().item()}")
    return {"act.x": x, "act.dh": dh, "act.h": f32(h), "act.dx": f32(xd.grad),
            "act.alpha_limit": torch.tensor([ALPHA, LIMIT], dtype=torch.float32)}


def block_forward(params, x):
    """transformers' router and experts in fp64; returns the intermediates too."""
    router = modeling_gpt_oss.GptOssTopKRouter(config).double()
    experts = modeling_gpt_oss.GptOssExperts(config).double()
    with torch.no_grad():
        router.weight.copy_(params["router_w"])
        router.bias.copy_(params["router_b"])
        experts.gate_up_proj.copy_(params["gate_up"])
        experts.gate_up_proj_bias.copy_(params["gate_up_bias"])
        experts.down_proj.copy_(params["down"])
        experts.down_proj_bias.copy_(params["down_bias"])
    logits, weights, idx = router(x)
    logits.retain_grad()
    weights.retain_grad()
    y = experts(x, idx, weights)
    return logits, weights, idx, y


def make_block():
    while True:
        params = {"router_w": randn(E, C, std=0.5), "router_b": randn(E, std=0.5),
                  "gate_up": randn(E, C, 2 * I, std=0.8), "gate_up_bias": randn(E, 2 * I),
                  "down": randn(E, I, C, std=0.3), "down_bias": randn(E, C)}
        params["router_b"][2] = -30.0  # expert 2 is never chosen: an empty group
        x = randn(T, C)
        p64 = {n: v.double() for n, v in params.items()}
        logits = x.double() @ p64["router_w"].t() + p64["router_b"]
        idx = logits.topk(K, dim=-1).indices
        gate_up = torch.einsum("tc,tjcf->tjf", x.double(), p64["gate_up"][idx]) + p64["gate_up_bias"][idx]
        if topk_margin(logits) > MARGIN and clamp_margin(gate_up) > MARGIN:
            break
    gate, up = gate_up[..., 0::2], gate_up[..., 1::2]
    print(f"block: gate above limit {(gate > LIMIT).sum().item()}, up outside the limits "
          f"{(up.abs() > LIMIT).sum().item()} of {gate.numel()}")
    dy = randn(T, C)
    xd = x.double().requires_grad_()
    logits, weights, idx, y = block_forward(p64, xd)
    assert not (idx == 2).any()
    y.backward(dy.double())
    # an independent check of transformers' loop: the same block written with gathers
    h = modeling_gpt_oss.GptOssExperts(config)._apply_gate(gate_up)
    out = torch.einsum("tji,tjic->tjc", h, p64["down"][idx]) + p64["down_bias"][idx]
    ref = (out * weights[..., None]).sum(dim=1)
    assert torch.allclose(ref, y, rtol=1e-12, atol=1e-12)
    tensors = {f"block.{n}": v for n, v in params.items()}
    tensors.update({"block.x": x, "block.dy": dy, "block.logits": f32(logits), "block.experts": i32(idx),
                    "block.weights": f32(weights), "block.y": f32(y), "block.dweights": f32(weights.grad),
                    "block.dlogits": f32(logits.grad), "block.dx": f32(xd.grad)})
    return tensors


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_grad_enabled(True)
    tensors = {}
    for make in (make_topk, make_act, make_block):
        tensors.update(make())
    path = os.path.join(OUT, "moe.safetensors")
    save_file({n: v.contiguous() for n, v in tensors.items()}, path)
    print(f"wrote {path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
