"""tests/fixtures/tiny-gptoss-mxfp4: tests/fixtures/tiny-gptoss with its experts
stored as the released gpt-oss checkpoints store them, MXFP4.

    python3 tools/ref/make_tiny_gptoss_mxfp4.py      (the standard library only)

The fixture checks that an engine keeping the experts quantized computes what
one dequantizing them at load computes (the dequantization itself is checked
against transformers' by tests/fixtures/mxfp4). Each expert weight of
tiny-gptoss (transformers' parameter layout [E, in, out]) is turned to the
checkpoint's [E, out, in] and quantized per 32 consecutive inputs: the
block's E8M0 scale is the smallest power of two 2^s with max |v| / 2^s <= 6,
each value the nearest FP4 (E2M1) of v / 2^s, ties to the even code. Written
as `<name>_blocks` U8 [E, out, in / 32, 16] (value 2j in byte j's low nibble,
2j + 1 in its high one) and `<name>_scales` U8 [E, out, in / 32]; the biases
and every other tensor are copied as they are, and config.json gains
quantization_config {"quant_method": "mxfp4"} as the released configs have it.
Deterministic: the same bytes on each run."""
import json
import math
import os
import shutil
import struct
from array import array

HERE = os.path.dirname(__file__)
SRC = os.path.join(HERE, "..", "..", "tests", "fixtures", "tiny-gptoss")
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "tiny-gptoss-mxfp4")
FP4 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
EXPERTS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")


def read_safetensors(path):
    """{name: (dtype, shape, raw bytes)} in file order."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])}


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for _, _, raw in tensors.values():
            f.write(raw)


def fp4_code(x):
    """The E2M1 code nearest x (already scaled), ties to the even code."""
    mag = abs(x)
    best = min(range(8), key=lambda c: (abs(FP4[c] - mag), c % 2))
    return best | (8 if x < 0 and best else 0)


def quantize_block(values):
    """32 floats -> (16 code bytes, E8M0 scale byte)."""
    amax = max(abs(v) for v in values)
    s = math.ceil(math.log2(amax / 6)) if amax > 0 else -127
    s = max(-127, min(127, s))
    while amax / 2.0 ** s > 6:
        s += 1
    codes = [fp4_code(v / 2.0 ** s) for v in values]
    return bytes(codes[2 * j] | codes[2 * j + 1] << 4 for j in range(16)), s + 127


def quantize(shape, raw):
    """transformers' [E, in, out] fp32 -> blocks [E, out, in/32, 16], scales [E, out, in/32]."""
    E, n_in, n_out = shape
    w = array("f")
    w.frombytes(raw)
    blocks, scales = bytearray(), bytearray()
    for e in range(E):
        for o in range(n_out):
            row = [w[(e * n_in + i) * n_out + o] for i in range(n_in)]
            for g in range(n_in // 32):
                codes, scale = quantize_block(row[32 * g:32 * g + 32])
                blocks += codes
                scales.append(scale)
    G = n_in // 32
    return ("U8", [E, n_out, G, 16], bytes(blocks)), ("U8", [E, n_out, G], bytes(scales))


def main():
    os.makedirs(OUT, exist_ok=True)
    tensors = {}
    for name, (dtype, shape, raw) in read_safetensors(os.path.join(SRC, "model.safetensors")).items():
        if name.endswith(EXPERTS):
            assert dtype == "F32" and len(shape) == 3 and shape[1] % 32 == 0, name
            tensors[name + "_blocks"], tensors[name + "_scales"] = quantize(shape, raw)
        else:
            tensors[name] = (dtype, shape, raw)
    write_safetensors(os.path.join(OUT, "model.safetensors"), tensors)
    config = json.load(open(os.path.join(SRC, "config.json")))
    config["quantization_config"] = {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                                "model.embed_tokens", "lm_head"],
                                     "quant_method": "mxfp4"}
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    shutil.copy(os.path.join(SRC, "generation_config.json"), OUT)
    print({k: v[1] for k, v in tensors.items() if "experts" in k and "layers.0" in k})


if __name__ == "__main__":
    main()
