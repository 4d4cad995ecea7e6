"""Makes tests/fixtures/safetensors/: files written by Hugging Face's own
`safetensors` package, which tests/test_safetensors.c must read back exactly
(and, for the single file, rewrite byte for byte).

    python3 -m venv tools/ref/.venv
    tools/ref/.venv/bin/pip install safetensors==0.8.0 numpy
    tools/ref/.venv/bin/python tools/ref/make_safetensors_fixtures.py

Only numpy, no torch: safetensors.numpy.save_file writes the numpy dtypes; BF16
and FP8, which numpy lacks, go through safetensors.serialize_file (what
save_file calls) with the raw bytes of a uint16 / uint8 array. The data is
seeded, so a rerun gives identical files.

Outputs (a few KB):
  single.safetensors          every dtype tune reads, a scalar, an empty tensor
  sharded/                    two shards + model.safetensors.index.json as
                              transformers writes it, with a gpt-oss MXFP4
                              blocks/scales pair split across the shards
  expected.txt                one line per tensor and metadata entry:
                                tensor FILE NAME DTYPE [d0,d1,...] NBYTES FNV1A64
                                meta FILE KEY VALUE
"""
import json
import os

import numpy as np
import safetensors
from safetensors import TensorSpec
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "safetensors")
rng = np.random.default_rng(20240901)

# safetensors dtype name -> the name serialize_file takes
SPEC_NAME = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def raw(dtype, shape):
    """Random bytes for a dtype numpy lacks: (safetensors name, shape, carrier array)."""
    if dtype == "BF16":  # the top half of a normal fp32, so the values are finite
        a = (rng.standard_normal(shape).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    else:
        a = rng.integers(0, 255, size=shape, dtype=np.uint8)
    return (dtype, list(shape), np.ascontiguousarray(a))


def write(path, tensors, metadata):
    """tensors: name -> numpy array, or (dtype, shape, carrier) from raw()."""
    if all(isinstance(v, np.ndarray) for v in tensors.values()):
        save_file(tensors, path, metadata=metadata)
        return
    specs = {}
    for name, v in tensors.items():
        if isinstance(v, np.ndarray):
            specs[name] = TensorSpec(dtype=v.dtype.name, shape=list(v.shape),
                                     data_ptr=v.ctypes.data, data_len=v.nbytes)
        else:
            dtype, shape, a = v
            specs[name] = TensorSpec(dtype=SPEC_NAME[dtype], shape=shape,
                                     data_ptr=a.ctypes.data, data_len=a.nbytes)
    safetensors.serialize_file(specs, path, metadata=metadata)


def expected_lines(rel, path):
    """Reads the file back with the reference reader for expected.txt."""
    lines = []
    with safetensors.safe_open(path, framework="numpy") as f:
        for k, v in sorted((f.metadata() or {}).items()):
            lines.append(f"meta {rel} {k} {v}")
    with open(path, "rb") as fh:
        blob = fh.read()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    for name in sorted(k for k in header if k != "__metadata__"):
        e = header[name]
        b, end = e["data_offsets"]
        data = blob[8 + n + b:8 + n + end]
        shape = "[" + ",".join(str(d) for d in e["shape"]) + "]"
        lines.append(f"tensor {rel} {name} {e['dtype']} {shape} {len(data)} {fnv1a64(data):016x}")
    return lines


def main():
    os.makedirs(os.path.join(OUT, "sharded"), exist_ok=True)
    single = {
        "f64": rng.standard_normal((2, 3)),
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f16": rng.standard_normal(5).astype(np.float16),
        "bf16": raw("BF16", (2, 2, 2)),
        "f8_e4m3": raw("F8_E4M3", (7,)),
        "f8_e5m2": raw("F8_E5M2", (3, 3)),
        "i64": rng.integers(-2**62, 2**62, size=2, dtype=np.int64),
        "i32": rng.integers(-2**31, 2**31 - 1, size=(2, 3), dtype=np.int32),
        "i16": rng.integers(-2**15, 2**15 - 1, size=4, dtype=np.int16),
        "i8": rng.integers(-128, 127, size=9, dtype=np.int8),
        "u8": rng.integers(0, 255, size=(3, 5), dtype=np.uint8),
        "scalar": np.array(1.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        'odd.name/"q"\\b': np.arange(3, dtype=np.int32),  # escapes in the header
    }
    write(os.path.join(OUT, "single.safetensors"), single, {"format": "np"})

    base = "model.layers.0.mlp.experts.gate_up_proj"
    shard1 = {
        "model.embed_tokens.weight": raw("BF16", (8, 4)),
        base + "_blocks": rng.integers(0, 255, size=(2, 4, 2, 16), dtype=np.uint8),
        "model.layers.0.input_layernorm.weight": rng.standard_normal(4).astype(np.float32),
    }
    shard2 = {
        base + "_scales": rng.integers(118, 130, size=(2, 4, 2), dtype=np.uint8),
        base + "_bias": raw("BF16", (2, 8)),
        "lm_head.weight": raw("BF16", (8, 4)),
    }
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    weight_map, total = {}, 0
    for fname, tensors in zip(names, [shard1, shard2]):
        write(os.path.join(OUT, "sharded", fname), tensors, {"format": "pt"})
        for k, v in tensors.items():
            weight_map[k] = fname
            total += (v.nbytes if isinstance(v, np.ndarray) else v[2].nbytes)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(OUT, "sharded", "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")

    lines = expected_lines("single.safetensors", os.path.join(OUT, "single.safetensors"))
    for fname in names:
        lines += expected_lines("sharded/" + fname, os.path.join(OUT, "sharded", fname))
    with open(os.path.join(OUT, "expected.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
