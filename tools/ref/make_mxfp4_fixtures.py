"""Makes tests/fixtures/mxfp4/mxfp4.safetensors: MXFP4 blocks and scales in
gpt-oss's checkpoint layout and what transformers' own dequantization
(transformers.integrations.mxfp4.convert_moe_packed_tensors) makes of them,
which tests/test_mxfp4.c compares with src/model/mxfp4.c bit for bit.

    /work/venv-ref/bin/python tools/ref/make_mxfp4_fixtures.py

Tensors (E experts, R rows = output dim, G blocks per row, cols = 32 G):
  P = model.layers.0.mlp.experts.gate_up_proj, E 3, R 8, G 2 (cols 64):
  P_blocks    U8   [E, R, G, 16]  random bytes
  P_scales    U8   [E, R, G]      random in 110..135 (the range real checkpoints
                                  use) except four blocks set to 0, 1, 254, 255
  P.f32       F32  [E, R, cols]   dtype=float32 output transposed back to storage order
  P.param_f32 F32  [E, cols, R]   the function's output as returned: the layout of
                                  GptOssExperts.gate_up_proj
  P.bf16      BF16 [E, R, cols]   dtype=bfloat16 (the default) output, storage order
  A = all.proj, E 1, R 256, G 1: row s has scale s, and its 16 bytes hold every
  code once as a low nibble and once as a high nibble, so A.f32 / A.bf16
  [1, 256, 32] cover every (code, nibble position, scale) there is.
  bad.proj_blocks U8 [3, 8, 3, 16] with bad.proj_scales U8 [3, 8, 2]: a pair
  whose shapes disagree, for st_model_find_mxfp4.

Extreme scales: transformers applies torch.ldexp(value, scale - 127), which is
exact ldexp: scale 0 gives subnormals, 254/255 overflow to +-inf for large
values, zero stays zero (no NaN), 0.5 at scale 255 is 2^127. The script checks
that, and that the bf16 output equals the fp32 one. Seeded: a rerun gives
identical bytes.
"""
import math
import os
import struct

import torch
from safetensors.torch import save_file
from transformers.integrations.mxfp4 import FP4_VALUES, convert_moe_packed_tensors

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "mxfp4")
gen = torch.Generator().manual_seed(20250817)


def storage_order(param):
    """convert_moe_packed_tensors returns [E, cols, R]; storage order is [E, R, cols]."""
    return param.transpose(1, 2).contiguous()


def dequantize(blocks, scales):
    f32 = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)
    bf16 = convert_moe_packed_tensors(blocks, scales, dtype=torch.bfloat16)
    # bf16 has fp32's exponent range and the values <= 2 significant bits.
    assert torch.equal(bf16.float().view(torch.int32), f32.view(torch.int32))
    return f32, bf16


def check_exact(blocks, scales, values):
    """values [..., cols] storage order == math.ldexp, overflow to inf, signs kept."""
    b = blocks.reshape(-1, 16).tolist()
    s = scales.reshape(-1).tolist()
    v = values.reshape(-1, 32).tolist()
    for g in range(len(s)):
        for j in range(32):
            code = (b[g][j // 2] >> (4 * (j % 2))) & 15  # low nibble first
            x = FP4_VALUES[code]
            try:
                want = struct.unpack("<f", struct.pack("<f", math.ldexp(x, s[g] - 127)))[0]
            except OverflowError:
                want = math.copysign(math.inf, x)
            got = v[g][j]
            assert got == want and math.copysign(1, got) == math.copysign(1, want), (g, j, got, want)


def main():
    t = {}
    p = "model.layers.0.mlp.experts.gate_up_proj"
    E, R, G = 3, 8, 2
    blocks = torch.randint(0, 256, (E, R, G, 16), generator=gen, dtype=torch.uint8)
    scales = torch.randint(110, 136, (E, R, G), generator=gen, dtype=torch.uint8)
    scales[0, 1, 0], scales[1, 2, 1], scales[2, 3, 0], scales[2, 7, 1] = 0, 1, 254, 255
    f32, bf16 = dequantize(blocks, scales)
    assert f32.shape == (E, 32 * G, R)
    check_exact(blocks, scales, storage_order(f32))
    t[p + "_blocks"], t[p + "_scales"] = blocks, scales
    t[p + ".f32"] = storage_order(f32)
    t[p + ".param_f32"] = f32.contiguous()
    t[p + ".bf16"] = storage_order(bf16)

    a = "all.proj"
    rows = []
    for s in range(256):
        rows.append([(((j + s) & 15) << 4) | ((5 * j + 3 + s) & 15) for j in range(16)])
    blocks = torch.tensor(rows, dtype=torch.uint8).reshape(1, 256, 1, 16)
    scales = torch.arange(256, dtype=torch.uint8).reshape(1, 256, 1)
    f32, bf16 = dequantize(blocks, scales)
    check_exact(blocks, scales, storage_order(f32))
    t[a + "_blocks"], t[a + "_scales"] = blocks, scales
    t[a + ".f32"] = storage_order(f32)
    t[a + ".bf16"] = storage_order(bf16)

    t["bad.proj_blocks"] = torch.zeros(3, 8, 3, 16, dtype=torch.uint8)
    t["bad.proj_scales"] = torch.full((3, 8, 2), 127, dtype=torch.uint8)

    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "mxfp4.safetensors")
    save_file(t, path)
    print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
