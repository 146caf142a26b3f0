"""compressed-tensors ``pack-quantized`` layout (llm-compressor's W4A16 / W4A16_ASYM output).

* ``weight_packed``     int32 [N, ceil(K/8)]: signed int4 values stored +8, packed along K in plain order,
* ``weight_scale``      float [N, groups],
* ``weight_zero_point`` int32 [ceil(N/8), groups]: signed zero points +8, packed along N (dim 0);
  absent for symmetric schemes (zero point 0, i.e. unsigned code 8),
* ``weight_shape``      int64 [2] = (N, K).

Shifting a signed value by +8 turns it into exactly our unsigned code, so (q - z) is unchanged.
"""

from __future__ import annotations

import numpy as np

from awq2trt.checkpoint.formats._checks import expect_array, float_scales, groups_of
from awq2trt.errors import Awq2TrtError
from awq2trt.quant_weight import SYMMETRIC_ZERO, QuantWeight, pack_nibbles, unpack_nibbles

TENSOR_NAMES = ("weight_packed", "weight_scale", "weight_zero_point", "weight_shape")


def decode_compressed(
    weight_packed: np.ndarray,
    weight_scale: np.ndarray,
    weight_zero_point: np.ndarray | None,
    weight_shape: np.ndarray,
    *,
    group_size: int,
    name: str,
) -> QuantWeight:
    expect_array(f"{name}.weight_shape", weight_shape, dtypes=(np.int64, np.int32), shape=(2,), ndim=1)
    n, k = (int(v) for v in weight_shape)
    if n <= 0 or k <= 0:
        raise Awq2TrtError(f"{name}.weight_shape", expected="two positive sizes", got=[n, k])
    groups = groups_of(name, k, group_size)
    expect_array(f"{name}.weight_packed", weight_packed, dtypes=(np.int32,), shape=(n, -(-k // 8)))
    expect_array(f"{name}.weight_scale", weight_scale, dtypes=(np.float16, np.float32), shape=(n, groups))
    scales = float_scales(f"{name}.weight_scale", weight_scale)
    if weight_zero_point is None:
        zeros = np.full((n, groups), SYMMETRIC_ZERO, dtype=np.uint8)
    else:
        expect_array(f"{name}.weight_zero_point", weight_zero_point, dtypes=(np.int32,), shape=(-(-n // 8), groups))
        zeros = np.ascontiguousarray(unpack_nibbles(weight_zero_point.T, n).T)
    return QuantWeight(unpack_nibbles(weight_packed, k), np.ascontiguousarray(scales), zeros, group_size).validated(
        name
    )


def encode_compressed(qw: QuantWeight, *, symmetric: bool | None = None) -> dict[str, np.ndarray]:
    """Tensors for one Linear; the zero point is omitted for a symmetric weight (as the format does)."""
    symmetric = qw.is_symmetric if symmetric is None else symmetric
    out = {
        "weight_packed": pack_nibbles(qw.qweight),
        "weight_scale": qw.scales.copy(),
        "weight_shape": np.array([qw.out_features, qw.in_features], dtype=np.int64),
    }
    if not symmetric:
        out["weight_zero_point"] = np.ascontiguousarray(pack_nibbles(qw.zeros.T).T)
    return out
