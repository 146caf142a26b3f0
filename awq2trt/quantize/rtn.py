"""Round-to-nearest group-wise quantization: the one rounding rule of awq2trt, and int4 RTN built on it.

`round_to_nearest` is used by every quantizer here: the int4 RTN baseline (`rtn_quantize`), AWQ's fake
quantization in its searches (`awq2trt.quantize.awq.fake_quant`, on torch tensors, on the search's device)
and the ``--lm-head`` int8/int4 head (`awq2trt.targets.lm_head`, numpy).  It takes a numpy array or a torch
tensor and computes with that library; torch is imported only when given a tensor, so the graph targets
use this module without torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from awq2trt.errors import Awq2TrtError
from awq2trt.quant_weight import QuantWeight

# Floor of a group's range (max - min, or max|w| when symmetric) before it is divided into steps, so a
# constant group still stores a non-zero fp16 scale: 1e-5 / 255 rounds to fp16's smallest subnormal, while
# a floor of 1e-8 made the scale 0 in fp16 and its codes NaN.
MIN_SCALE = 1e-5


class _NumpyOps:
    @staticmethod
    def amax(x: Any) -> Any:
        return x.max(axis=-1, keepdims=True)

    @staticmethod
    def amin(x: Any) -> Any:
        return x.min(axis=-1, keepdims=True)

    @staticmethod
    def at_least(x: Any, floor: float) -> Any:
        return np.maximum(x, floor)

    @staticmethod
    def clip(x: Any, low: float, high: float) -> Any:
        return np.clip(x, low, high)

    @staticmethod
    def round(x: Any) -> Any:
        return np.round(x)

    @staticmethod
    def fp16_exact(x: Any) -> Any:
        return x.astype(np.float16).astype(np.float32)

    @staticmethod
    def full_like(x: Any, value: float) -> Any:
        return np.full_like(x, value)


class _TorchOps:
    @staticmethod
    def amax(x: Any) -> Any:
        return x.amax(dim=-1, keepdim=True)

    @staticmethod
    def amin(x: Any) -> Any:
        return x.amin(dim=-1, keepdim=True)

    @staticmethod
    def at_least(x: Any, floor: float) -> Any:
        return x.clamp(min=floor)

    @staticmethod
    def clip(x: Any, low: float, high: float) -> Any:
        return x.clamp(low, high)

    @staticmethod
    def round(x: Any) -> Any:
        return x.round()

    @staticmethod
    def fp16_exact(x: Any) -> Any:
        return x.half().float()

    @staticmethod
    def full_like(x: Any, value: float) -> Any:
        import torch

        return torch.full_like(x, value)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def round_to_nearest(groups: Any, *, bits: int = 4, zero_point: bool = True) -> tuple[Any, Any, Any]:
    """fp32 weight groups [..., G] (each last-axis row one group) -> (codes [..., G], scales, zeros [..., 1]).

    With zero points: scale = max(max - min, MIN_SCALE) / (2^bits - 1), z = clamp(-round(min / scale))
    (AutoAWQ's rule).  Symmetric: scale = max(max|w|, MIN_SCALE) / (2^(bits-1) - 1), z = 2^(bits-1).
    Scales are rounded to fp16 *before* the codes are chosen, so the codes are the nearest ones for the
    scale that is actually stored.  All three come back as fp32 arrays of *groups*' library.
    """
    ops = _TorchOps if _is_torch(groups) else _NumpyOps
    top = (1 << bits) - 1
    if zero_point:
        w_min = ops.amin(groups)
        scales = ops.fp16_exact(ops.at_least(ops.amax(groups) - w_min, MIN_SCALE) / top)
        zeros = ops.clip(-ops.round(w_min / scales), 0, top)
    else:
        middle = 1 << (bits - 1)
        scales = ops.fp16_exact(ops.at_least(ops.amax(abs(groups)), MIN_SCALE) / (middle - 1))
        zeros = ops.full_like(scales, middle)
    codes = ops.clip(ops.round(groups / scales) + zeros, 0, top)
    return codes, scales, zeros


def rtn_quantize(weight: Any, group_size: int, *, zero_point: bool = True, name: str = "weight") -> QuantWeight:
    """Quantize a dense [N, K] weight (numpy array or CPU torch tensor) to int4 per group of *group_size*
    input channels, with `round_to_nearest`."""
    if _is_torch(weight):
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
