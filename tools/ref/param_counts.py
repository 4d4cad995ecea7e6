"""Reference parameter counts from transformers, for tests/fixtures/param_counts.json.

Two steps, because transformers lives on the GPU machine and tune here:
  here:   python3 tools/ref/param_counts.py dump build/tune > build/ref/presets.json
  device: python3 tools/ref/param_counts.py count build/ref/presets.json > tests/fixtures/param_counts.json
`count` builds each preset's model from its config.json on the meta device (no
memory, no weights) and counts every parameter by component, as
model.num_parameters() does (tied weights once)."""
import json
import subprocess
import sys


def dump(tune):
    listing = subprocess.run([tune, "inspect", "--help"], capture_output=True, text=True, check=True).stdout
    names = listing.split("presets:")[1].split()
    out = {}
    for name in names:
        config = subprocess.run([tune, "inspect", name, "--config"], capture_output=True, text=True, check=True)
        out[name] = json.loads(config.stdout)
    json.dump(out, sys.stdout, indent=1)


def component(name):
    if "embed_tokens" in name:
        return "embeddings"
    if name.startswith("lm_head"):
        return "head"
    if "norm" in name:
        return "norms"
    if ".self_attn." in name:
        return "attention"
    if ".mlp.router" in name:
        return "router"
    if ".mlp.experts" in name:
        return "experts"
    if ".mlp." in name:
        return "mlp"
    raise ValueError(name)


def count(path):
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    presets = json.load(open(path))
    out = {"_made_by": f"transformers {transformers.__version__}, torch {torch.__version__}"}
    for name, cfg in presets.items():
        cfg = dict(cfg)
        cfg.pop("quantization_config", None)  # count the parameters, not the MXFP4 storage
        config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        comps = {}
        seen = set()
        for pname, p in model.named_parameters():  # shared tensors appear once
            if id(p) in seen:
                continue
            seen.add(id(p))
            c = component(pname)
            comps[c] = comps.get(c, 0) + p.numel()
        out[name] = {"total": model.num_parameters(), "components": comps}
        print(name, out[name]["total"], file=sys.stderr)
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    {"dump": dump, "count": count}[sys.argv[1]](sys.argv[2])
