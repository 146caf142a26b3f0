"""Round-to-nearest group-wise int4 quantization of a dense weight, with the one rounding rule
(`awq2trt.rounding.round_to_nearest`, re-exported here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from awq2trt.errors import Awq2TrtError
from awq2trt.quant_weight import QuantWeight
from awq2trt.rounding import MIN_SCALE, is_torch, round_to_nearest

__all__ = ["MIN_SCALE", "round_to_nearest", "rtn_quantize"]


def rtn_quantize(weight: Any, group_size: int, *, zero_point: bool = True, name: str = "weight") -> QuantWeight:
    """Quantize a dense [N, K] weight (numpy array or CPU torch tensor) to int4 per group of *group_size*
    input channels, with `round_to_nearest`."""
    if is_torch(weight):
        weight = weight.detach().to("cpu").float().numpy()
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 2:
        raise Awq2TrtError(name, expected="a 2-D weight [out, in]", got=list(w.shape))
    n, k = w.shape
    if group_size <= 0 or k % group_size:
        raise Awq2TrtError(name, expected=f"a group size that divides in_features={k}", got=f"group_size={group_size}")
    if not np.isfinite(w).all():
        raise Awq2TrtError(name, expected="finite weights", got="NaN or inf")
    codes, scales, zeros = round_to_nearest(w.reshape(n, k // group_size, group_size), zero_point=zero_point)
    return QuantWeight(
        codes.reshape(n, k).astype(np.uint8),
        scales[..., 0].astype(np.float16),
        zeros[..., 0].astype(np.uint8),
        group_size,
    ).validated(name)
