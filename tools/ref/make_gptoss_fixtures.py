"""Golden fixtures for the gpt-oss engine, made by transformers' GptOss + PEFT.

    /work/venv-ref/bin/python tools/ref/make_gptoss_fixtures.py   (any venv with torch, transformers 5, peft >= 0.17)

Writes tests/fixtures/tiny-gptoss: a tiny random GptOss (alternating sliding
and full attention with sinks, yarn rope, 4 experts top-2 with the clamped
SwiGLU and biases, untied head), fp32, as config.json + model.safetensors, and
the goldens laid out as tools/ref/make_llama_fixtures.py lays out Llama's (see
tests/fixtures/tiny-gptoss/README.md for every tensor):
  - adapter/ + golden.safetensors: LoRA on q/k/v/o, the loss and every LoRA
    gradient on a batch of two sequences longer than the sliding window, the
    logits, three AdamW steps, two merged weights, and the gradient of every
    base parameter (full fine-tuning);
  - adapter_experts/ + golden_experts.safetensors: the same attention LoRA plus
    PEFT's `target_parameters` LoRA on the experts' gate_up_proj and down_proj;
  - adapter_router/ + golden_router.safetensors: LoRA on every target, the
    router's weight (`target_parameters`, "mlp.router.weight") included.
Each sequence goes through the model on its own: transformers' GptOss does
not isolate sequences packed in one row (its mask is built without the
position ids), so the golden is what a correctly packed engine must give.
The weights are drawn large enough that routing, the SwiGLU clamps and the
sinks all matter, which the script asserts, together with a margin on every
top-k choice so that an engine in another summation order routes the same."""
import math
import os

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, GptOssConfig, get_linear_schedule_with_warmup

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "tiny-gptoss")
VOCAB = 96
CONFIG = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=32, num_hidden_layers=2,
              layer_types=["sliding_attention", "full_attention"], num_attention_heads=4, num_key_value_heads=2,
              head_dim=16, num_local_experts=4, num_experts_per_tok=2, sliding_window=8,
              max_position_embeddings=128, rms_norm_eps=1e-5, swiglu_limit=7.0, attention_bias=True,
              tie_word_embeddings=False, router_aux_loss_coef=0.0, output_router_logits=False,
              # openai/gpt-oss-20b's rope, written the way transformers 5 keeps it
              rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0, "beta_fast": 32.0,
                               "beta_slow": 1.0, "truncate": False, "original_max_position_embeddings": 4096},
              attn_implementation="eager", experts_implementation="eager", dtype="float32")
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
EXPERTS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
ROUTER = "mlp.router.weight"  # transformers 5's router is no nn.Linear: PEFT wraps its weight
# std of each kind of weight (name suffix -> std); norms are drawn around 1
STD = {"embed_tokens.weight": 1.0, "lm_head.weight": 0.1, "self_attn.q_proj.weight": 0.15,
       "self_attn.k_proj.weight": 0.15, "self_attn.v_proj.weight": 0.15, "self_attn.o_proj.weight": 0.1,
       "_proj.bias": 0.1, "self_attn.sinks": 1.0, "router.weight": 0.3, "router.bias": 0.3,
       "experts.gate_up_proj": 0.5, "experts.gate_up_proj_bias": 0.5, "experts.down_proj": 0.05,
       "experts.down_proj_bias": 0.1}
MIN_TOPK_MARGIN = 1e-3  # every router's k-th logit beats the (k+1)-th by this much
# ... and by this much in the adapted models' first forward, which a bf16 engine is checked on: bf16
# rounding moves these logits by about 5e-3, and one token routed elsewhere moves the gradients by 10%
BF16_TOPK_MARGIN = 5e-2


class Probe:
    """Watches every router and SwiGLU of a model: the smallest top-k margin,
    the tokens each expert got, and how often each clamp bites."""

    def __init__(self, model):
        self.margin = float("inf")
        self.hits = {}
        self.clamped = {"gate > limit": 0, "up > limit": 0, "up < -limit": 0, "all": 0}
        for name, module in model.named_modules():
            if type(module).__name__ == "GptOssTopKRouter":
                module.register_forward_hook(self._router_hook(name))
            elif type(module).__name__ == "GptOssExperts":
                module._apply_gate = self._gate_wrapper(module._apply_gate, module.limit)

    def _router_hook(self, name):
        def hook(module, args, out):
            logits = out[0].detach()
            top = torch.topk(logits, module.top_k + 1, dim=-1).values
            self.margin = min(self.margin, float((top[:, -2] - top[:, -1]).min()))
            self.hits[name] = self.hits.get(name, 0) + torch.bincount(out[2].flatten(), minlength=module.num_experts)
        return hook

    def _gate_wrapper(self, apply_gate, limit):
        def wrapped(gate_up):
            gate, up = gate_up.detach()[..., ::2], gate_up.detach()[..., 1::2]
            self.clamped["gate > limit"] += int((gate > limit).sum())
            self.clamped["up > limit"] += int((up > limit).sum())
            self.clamped["up < -limit"] += int((up < -limit).sum())
            self.clamped["all"] += gate.numel()
            return apply_gate(gate_up)
        return wrapped

    def check(self, what):
        assert self.margin > MIN_TOPK_MARGIN, f"{what}: a top-k choice is within {self.margin:.2g} of a tie"
        for name, hits in self.hits.items():
            assert (hits > 0).all(), f"{what}: an expert of {name} got no token: {hits.tolist()}"
        for which, n in self.clamped.items():
            assert n > 0, f"{what}: the clamp {which} never bit"
        print(f"{what}: smallest top-k margin {self.margin:.2g}, tokens per expert",
              {k.split(".mlp")[0]: v.tolist() for k, v in self.hits.items()}, "clamped", self.clamped)


@torch.no_grad()
def smallest_margin(model, seqs):
    """The smallest gap between the k-th and (k+1)-th router logit of any token, any layer."""
    margins = []

    def hook(module, args, out):
        top = torch.topk(out[0], module.top_k + 1, dim=-1).values
        margins.append(float((top[:, -2] - top[:, -1]).min()))
    hooks = [m.register_forward_hook(hook) for m in model.modules() if type(m).__name__ == "GptOssTopKRouter"]
    for s in seqs:
        model(input_ids=s[None])
    for h in hooks:
        h.remove()
    return min(margins)


def init_weights(model):
    """Every parameter drawn from the generator's state: std by kind, norms around 1."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
                continue
            std = [s for suffix, s in STD.items() if name.endswith(suffix)]
            assert len(std) == 1, f"no single std for {name}"
            p.copy_(std[0] * torch.randn_like(p))


def make_batch():
    """Two sequences longer than the sliding window, packed end to end;
    labels[t] is the id expected after token t, -100 where none is."""
    seqs = [torch.randint(0, VOCAB, (12,)), torch.randint(0, VOCAB, (14,))]
    labels, starts = [], [0]
    for s in seqs:
        labels.append(torch.cat([s[1:], torch.tensor([-100])]))
        starts.append(starts[-1] + len(s))
    labels[0][:3] = -100  # a masked prompt
    labels = torch.cat(labels)
    count = int((labels != -100).sum())
    batch = {"input_ids": torch.cat(seqs).to(torch.int32), "labels": labels.to(torch.int32),
             "starts": torch.tensor(starts, dtype=torch.int32), "count": torch.tensor([count], dtype=torch.int32)}
    return seqs, labels, starts, count, batch


def batch_loss(model, seqs, labels, starts):
    """Summed cross entropy (in fp64) over both sequences, each run on its own."""
    total = torch.zeros((), dtype=torch.float64)
    for s, (a, b) in zip(seqs, zip(starts[:-1], starts[1:])):
        logits = model(input_ids=s[None]).logits[0]
        total = total + torch.nn.functional.cross_entropy(logits.double(), labels[a:b], ignore_index=-100,
                                                          reduction="sum")
    return total


@torch.no_grad()
def all_logits(model, seqs):
    """[T, V]: the logits at every position of both sequences, packed order."""
    return torch.cat([model(input_ids=s[None]).logits[0] for s in seqs]).contiguous()


def lora_name(name):
    return name.replace("base_model.model.", "")


def trainable(model):
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def adapter_golden(base, lora, dirname, seqs, labels, starts, count, steps):
    """The PEFT model of lora on base, saved to dirname with lora_B made
    non-zero; returns its loss sum, logits and LoRA gradients (and, if steps,
    three AdamW steps) as golden tensors."""
    model = get_peft_model(base, lora)
    for attempt in range(100):  # lora_B drawn again until no token is near a routing tie
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "lora_B" in pname:
                    p.copy_(0.1 * torch.randn_like(p))
        margin = smallest_margin(model, seqs)
        if margin > BF16_TOPK_MARGIN:
            break
    assert margin > BF16_TOPK_MARGIN, f"{dirname}: no lora_B draw keeps routing clear of ties"
    print(f"{dirname}: lora_B drawn {attempt + 1} times for a smallest top-k margin of {margin:.3g}")
    model.save_pretrained(os.path.join(OUT, dirname))
    probe = Probe(model)
    golden = {}
    model.eval()
    golden["logits"] = all_logits(model, seqs)
    golden["last_logits"] = golden["logits"][starts[1] - 1].clone()  # generation: next token after sequence 0
    model.train()
    total = batch_loss(model, seqs, labels, starts)
    (total / count).backward()
    golden["loss_sum"] = total.detach().reshape(1).float()
    for pname, p in trainable(model):
        golden[lora_name(pname) + ".grad"] = p.grad.detach().contiguous()
    if steps:  # as tune's trainer takes them: AdamW, linear schedule with one warmup step, clipping at 0.5
        model.zero_grad()
        params = [p for _, p in trainable(model)]
        opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01)
        sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=1, num_training_steps=4)
        losses, norms = [], []
        for _ in range(3):
            total = batch_loss(model, seqs, labels, starts)
            (total / count).backward()
            norms.append(float(torch.nn.utils.clip_grad_norm_(params, 0.5)))
            losses.append(float(total / count))
            opt.step()
            sched.step()
            opt.zero_grad()
        golden["steps.loss"] = torch.tensor(losses, dtype=torch.float64)
        golden["steps.grad_norm"] = torch.tensor(norms, dtype=torch.float64)
        for pname, p in trainable(model):
            golden["steps." + lora_name(pname)] = p.detach().contiguous().clone()
    probe.check(dirname)
    return golden


def reload(dirname=None):
    model = AutoModelForCausalLM.from_pretrained(OUT, dtype=torch.float32, attn_implementation="eager",
                                                 experts_implementation="eager")
    return PeftModel.from_pretrained(model, os.path.join(OUT, dirname)) if dirname else model


def verify(dirname, golden, seqs, labels, starts):
    """The saved model and adapter give the golden loss sum bit for bit."""
    model = reload(dirname)
    with torch.no_grad():
        loss = batch_loss(model, seqs, labels, starts).reshape(1).float()
    assert torch.equal(loss, golden["loss_sum"]), f"{dirname}: reloaded loss {loss} != {golden['loss_sum']}"


def merged(dirname, names):
    """Weights of PEFT's merge_and_unload() of the saved (untrained) adapter."""
    weights = reload(dirname).merge_and_unload().state_dict()
    return {"merged." + n: weights[n].detach().contiguous() for n in names}


def yarn(c):
    """inv_freq [D/2] and the factor cos and sin are multiplied by, as README.md states them."""
    rp, d = c.rope_parameters, c.head_dim
    pos_freqs = rp["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float64) / d)

    def correction_dim(rotations):
        return d * math.log(rp["original_max_position_embeddings"] / (rotations * 2 * math.pi)) / (
            2 * math.log(rp["rope_theta"]))
    low, high = max(correction_dim(rp["beta_fast"]), 0), min(correction_dim(rp["beta_slow"]), d - 1)
    ramp = ((torch.arange(d // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    inv_freq = ramp / (rp["factor"] * pos_freqs) + (1 - ramp) / pos_freqs
    return inv_freq, 0.1 * math.log(rp["factor"]) + 1


def reference_logits(c, w, ids):
    """[T, V]: gpt-oss written out from README.md's conventions alone, in fp64,
    on the saved weights w; checks that README against transformers."""
    w = {k: v.double() for k, v in w.items()}
    T, H, KV, D = len(ids), c.num_attention_heads, c.num_key_value_heads, c.head_dim
    inv_freq, mscale = yarn(c)
    angle = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq  # [T, D/2]
    cos, sin = angle.cos() * mscale, angle.sin() * mscale

    def rope(x):  # [T, heads, D], halves rotated (not interleaved pairs)
        x1, x2 = x[..., :D // 2], x[..., D // 2:]
        c_, s_ = cos[:, None], sin[:, None]
        return torch.cat([x1 * c_ - x2 * s_, x2 * c_ + x1 * s_], -1)

    def rmsnorm(x, g):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + c.rms_norm_eps) * g

    x = w["model.embed_tokens.weight"][ids]
    i, j = torch.arange(T)[:, None], torch.arange(T)[None]
    for l, kind in enumerate(c.layer_types):
        p = f"model.layers.{l}."
        h = rmsnorm(x, w[p + "input_layernorm.weight"])
        q, k, v = (h @ w[p + f"self_attn.{n}_proj.weight"].T + w[p + f"self_attn.{n}_proj.bias"] for n in "qkv")
        q, k, v = rope(q.view(T, H, D)), rope(k.view(T, KV, D)), v.view(T, KV, D)
        visible = (j <= i) & ((j > i - c.sliding_window) if kind == "sliding_attention" else True)
        out = torch.empty(T, H, D, dtype=torch.float64)
        for head in range(H):
            kv = head // (H // KV)
            s = (q[:, head] @ k[:, kv].T) / math.sqrt(D)
            s = torch.where(visible, s, -math.inf)
            sink = w[p + "self_attn.sinks"][head].expand(T, 1)
            prob = torch.softmax(torch.cat([s, sink], 1), 1)[:, :T]  # the sink takes mass, gives no value
            out[:, head] = prob @ v[:, kv]
        x = x + out.reshape(T, H * D) @ w[p + "self_attn.o_proj.weight"].T + w[p + "self_attn.o_proj.bias"]
        h = rmsnorm(x, w[p + "post_attention_layernorm.weight"])
        logits = h @ w[p + "mlp.router.weight"].T + w[p + "mlp.router.bias"]  # [T, E]
        top, experts = torch.topk(logits, c.num_experts_per_tok, -1)
        weight = torch.softmax(top, -1)  # over the k chosen logits only
        moe = torch.zeros_like(x)
        for t in range(T):
            for slot in range(c.num_experts_per_tok):
                e = int(experts[t, slot])
                gu = h[t] @ w[p + "mlp.experts.gate_up_proj"][e] + w[p + "mlp.experts.gate_up_proj_bias"][e]
                gate, up = gu[0::2].clamp(max=c.swiglu_limit), gu[1::2].clamp(-c.swiglu_limit, c.swiglu_limit)
                act = (up + 1) * gate * torch.sigmoid(getattr(c, "swiglu_alpha", 1.702) * gate)  # a constant before transformers 5.23
                moe[t] += weight[t, slot] * (act @ w[p + "mlp.experts.down_proj"][e] + w[p + "mlp.experts.down_proj_bias"][e])
        x = x + moe
    return rmsnorm(x, w["model.norm.weight"]) @ w["lm_head.weight"].T


def check_expert_merge(golden, name, prefix, scaling):
    """PEFT's merged expert weight is W[e] + scaling * A_e^T B_e^T with README.md's
    layout: A [E*r, in] expert-major rows, B [out, r*E] rank-major columns."""
    base = load_file(os.path.join(OUT, "model.safetensors"))[name]
    adapter = load_file(os.path.join(OUT, "adapter_experts", "adapter_model.safetensors"))
    A, B = adapter["base_model.model." + prefix + "A.weight"], adapter["base_model.model." + prefix + "B.weight"]
    E, n_in, n_out = base.shape
    A_e = A.view(E, -1, n_in)  # [E, r, in]: row e*r + j
    B_e = B.view(n_out, -1, E).permute(2, 0, 1)  # [E, out, r]: column j*E + e
    want = base + scaling * A_e.transpose(1, 2) @ B_e.transpose(1, 2)
    err = float((golden["merged." + name] - want).abs().max())
    assert err < 1e-6, f"{name}: PEFT's merge differs from README's layout by {err}"


def main():
    torch.set_num_threads(1)
    torch.manual_seed(20250805)
    config = GptOssConfig(**CONFIG)
    base = AutoModelForCausalLM.from_config(config).float()
    init_weights(base)
    os.makedirs(OUT, exist_ok=True)
    base.save_pretrained(OUT, safe_serialization=True)
    state = {k: v.clone() for k, v in base.state_dict().items()}
    seqs, labels, starts, count, batch = make_batch()

    # The base model alone: its loss, logits, router logits; sinks and packing checks.
    base.eval()
    probe = Probe(base)
    extra = {"base_logits": all_logits(base, seqs)}
    with torch.no_grad():
        extra["base_loss_sum"] = batch_loss(base, seqs, labels, starts).reshape(1).float()
        outs = [base(input_ids=s[None], output_router_logits=True, output_attentions=True) for s in seqs]
    probe.check("base")
    for layer in range(config.num_hidden_layers):
        extra[f"base_router_logits.layers.{layer}"] = torch.cat([o.router_logits[layer] for o in outs]).contiguous()
        sink = torch.cat([1 - o.attentions[layer][0].sum(-1).flatten() for o in outs])  # per head and query
        assert 0.05 < float(sink.mean()) < 0.95 and float(sink.max()) > 0.3, f"layer {layer}: sinks {sink.mean()}"
        print(f"layer {layer}: sink mass mean {sink.mean():.3f} max {sink.max():.3f}")
    weights = load_file(os.path.join(OUT, "model.safetensors"))
    ref = torch.cat([reference_logits(config, weights, s) for s in seqs])
    err = float((ref - extra["base_logits"].double()).abs().max())
    assert err < 1e-4, f"README's conventions give logits {err} away from transformers'"
    print(f"README's conventions, written out in fp64: max |logit diff| {err:.2g}")
    with torch.no_grad():  # what packing by position ids does in transformers' GptOss: the sequences see each other
        packed = base(input_ids=batch["input_ids"].long()[None],
                      position_ids=torch.cat([torch.arange(len(s)) for s in seqs])[None]).logits[0]
    print("packed in one row with restarting position ids, max |logit diff| vs separate:",
          float((packed - extra["base_logits"]).abs().max()))

    # Attention LoRA: the golden the Llama fixtures have, plus the full fine-tuning gradients.
    torch.manual_seed(1)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      target_modules=ATTENTION)
    golden = dict(batch, **extra, **adapter_golden(base, lora, "adapter", seqs, labels, starts, count, steps=True))
    golden.update(merged("adapter", ["model.layers.0.self_attn.q_proj.weight",
                                     "model.layers.1.self_attn.o_proj.weight"]))
    full = reload()
    full.train()
    (batch_loss(full, seqs, labels, starts) / count).backward()
    for pname, p in full.named_parameters():
        golden["full." + pname + ".grad"] = p.grad.detach().contiguous()
    save_file(golden, os.path.join(OUT, "golden.safetensors"))
    verify("adapter", golden, seqs, labels, starts)

    # Attention LoRA plus LoRA on the experts' stacked weights (PEFT target_parameters).
    torch.manual_seed(2)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      target_modules=ATTENTION, target_parameters=EXPERTS)
    fresh = AutoModelForCausalLM.from_config(config).float()
    fresh.load_state_dict(state)
    experts = dict(batch, **adapter_golden(fresh, lora, "adapter_experts", seqs, labels, starts, count,
                                           steps=False))
    experts.update(merged("adapter_experts", ["model.layers.1.mlp.experts.down_proj"]))
    check_expert_merge(experts, "model.layers.1.mlp.experts.down_proj", "model.layers.1.mlp.experts.lora_", 8 / 4)
    save_file(experts, os.path.join(OUT, "golden_experts.safetensors"))
    verify("adapter_experts", experts, seqs, labels, starts)

    # LoRA on every target: attention, the router's weight and the experts (PEFT target_parameters).
    torch.manual_seed(3)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      target_modules=ATTENTION, target_parameters=[ROUTER] + EXPERTS)
    fresh = AutoModelForCausalLM.from_config(config).float()
    fresh.load_state_dict(state)
    router = dict(batch, **adapter_golden(fresh, lora, "adapter_router", seqs, labels, starts, count, steps=False))
    router.update(merged("adapter_router", ["model.layers.0.mlp.router.weight"]))
    save_file(router, os.path.join(OUT, "golden_router.safetensors"))
    verify("adapter_router", router, seqs, labels, starts)

    for name, g in [("golden", golden), ("golden_experts", experts), ("golden_router", router)]:
        print(name, "loss", float(g["loss_sum"]) / count, "steps", g.get("steps.loss", torch.tensor([])).tolist())
    sizes = {os.path.relpath(os.path.join(r, f), OUT): os.path.getsize(os.path.join(r, f))
             for r, _, fs in os.walk(OUT) for f in fs}
    for f, n in sorted(sizes.items()):
        print(f"{n:8d} {f}")
    print(f"{sum(sizes.values()):8d} in all")
    assert sum(sizes.values()) < 1_200_000, "the fixture outgrew 1.2 MB"


if __name__ == "__main__":
    main()
