"""AutoAWQ GEMM layout (also what the `exllama` and `ipex` versions store on disk).

* ``qweight`` int32 [K, ceil(N/8)]: packed along N; nibble i of word c holds output column 8c + AWQ_ORDER[i].
* ``qzeros``  int32 [K/G, ceil(N/8)]: same packing.
* ``scales``  fp16 (bf16 in some ipex checkpoints) [K/G, N].

AutoAWQ only ever writes N divisible by 8; the layout itself is self-describing (N comes from ``scales``), so
an odd N packs into a zero-padded last word and round-trips.
"""

from __future__ import annotations

import numpy as np

from awq2trt.checkpoint.formats._checks import expect_array, float_scales, groups_of
from awq2trt.quant_weight import QuantWeight, pack_nibbles, unpack_nibbles

# The interleave AutoAWQ's GEMM kernels want: nibble i <- column AWQ_ORDER[i] of each run of 8.
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
TENSOR_NAMES = ("qweight", "qzeros", "scales")


def decode_gemm(
    qweight: np.ndarray, qzeros: np.ndarray, scales: np.ndarray, *, group_size: int, name: str
) -> QuantWeight:
    expect_array(f"{name}.scales", scales, dtypes=(np.float16, np.float32))
    scales = float_scales(f"{name}.scales", scales)
    n = scales.shape[1]
    words = -(-n // 8)
    expect_array(f"{name}.qweight", qweight, dtypes=(np.int32,))
    k = qweight.shape[0]
    groups = groups_of(name, k, group_size)
    expect_array(f"{name}.scales", scales, dtypes=(np.float16, np.float32), shape=(groups, n))
    expect_array(f"{name}.qweight", qweight, dtypes=(np.int32,), shape=(k, words))
    expect_array(f"{name}.qzeros", qzeros, dtypes=(np.int32,), shape=(groups, words))
    codes = unpack_nibbles(qweight, n, AWQ_ORDER).T
    zeros = unpack_nibbles(qzeros, n, AWQ_ORDER).T
    return QuantWeight(
        np.ascontiguousarray(codes), np.ascontiguousarray(scales.T), np.ascontiguousarray(zeros), group_size
    ).validated(name)


def encode_gemm(qw: QuantWeight) -> dict[str, np.ndarray]:
    """Inverse of `decode_gemm`; scales keep their dtype so the round trip is exact (AutoAWQ stores fp16)."""
    return {
        "qweight": pack_nibbles(qw.qweight.T, AWQ_ORDER),
        "qzeros": pack_nibbles(qw.zeros.T, AWQ_ORDER),
        "scales": np.ascontiguousarray(qw.scales.T),
    }
