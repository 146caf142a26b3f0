"""AutoAWQ GEMV layout (also llm-awq's layout before 2024-02).

* ``qweight`` int32 [N, K/8]: packed along K, nibble i of word c holds input column 8c + i.
* ``qzeros``  int32 [N, W]: zero codes packed the same way, W words per row.
* ``scales``  fp16 [N, 8 W].

W pads the group count per row for the GEMV kernels: W = ceil(ceil(groups / 8) / m) * m with m = 1 for
G >= 128, 2 for G = 64 and 4 for G = 32; the padded scale columns and zero nibbles are 0.
"""

from __future__ import annotations

import numpy as np

from awq2trt.checkpoint.formats._checks import expect_array, float_scales, groups_of
from awq2trt.errors import Awq2TrtError
from awq2trt.quant_weight import QuantWeight, pack_nibbles, unpack_nibbles


def padded_group_words(groups: int, group_size: int, *, where: str = "group_size") -> int:
    """Words per row that the GEMV layout reserves for *groups* zero codes (see module docstring)."""
    if group_size >= 128:
        multiple = 1
    elif group_size == 64:
        multiple = 2
    elif group_size == 32:
        multiple = 4
    else:
        raise Awq2TrtError(where, expected="group size 32, 64 or >= 128 (the GEMV padding rule)", got=group_size)
    words = -(-groups // 8)
    return -(-words // multiple) * multiple


def decode_gemv(
    qweight: np.ndarray, qzeros: np.ndarray, scales: np.ndarray, *, group_size: int, in_features: int, name: str
) -> QuantWeight:
    expect_array(f"{name}.qweight", qweight, dtypes=(np.int32,))
    n = qweight.shape[0]
    k = in_features
    groups = groups_of(name, k, group_size)
    words = padded_group_words(groups, group_size, where=name)
    expect_array(f"{name}.qweight", qweight, dtypes=(np.int32,), shape=(n, -(-k // 8)))
    expect_array(f"{name}.qzeros", qzeros, dtypes=(np.int32,), shape=(n, words))
    expect_array(f"{name}.scales", scales, dtypes=(np.float16, np.float32), shape=(n, 8 * words))
    scales = float_scales(f"{name}.scales", scales)
    return QuantWeight(
        unpack_nibbles(qweight, k),
        np.ascontiguousarray(scales[:, :groups]),
        unpack_nibbles(qzeros, groups),
        group_size,
    ).validated(name)


def encode_gemv(qw: QuantWeight) -> dict[str, np.ndarray]:
    n, groups = qw.scales.shape
    words = padded_group_words(groups, qw.group_size)
    scales = np.zeros((n, 8 * words), dtype=qw.scales.dtype)  # dtype kept: exact round trips
    scales[:, :groups] = qw.scales
    zeros = np.zeros((n, 8 * words), dtype=np.uint8)
    zeros[:, :groups] = qw.zeros
    return {"qweight": pack_nibbles(qw.qweight), "qzeros": pack_nibbles(zeros), "scales": scales}
