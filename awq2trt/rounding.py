"""The one round-to-nearest rule of awq2trt, on numpy arrays or torch tensors.

Every quantizer rounds with `round_to_nearest`: the int4 RTN baseline (`awq2trt.quantize.rtn`), AWQ's fake
quantization in its searches (`awq2trt.quantize.awq.fake_quant`, on torch tensors, on the search's device)
and the ``--lm-head`` int8/int4 head (`awq2trt.targets.lm_head`, numpy).  It computes with the library of
its input; torch is imported only when given a tensor, so graph targets use it without torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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


def is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def round_to_nearest(groups: Any, *, bits: int = 4, zero_point: bool = True) -> tuple[Any, Any, Any]:
    """fp32 weight groups [..., G] (each last-axis row one group) -> (codes [..., G], scales, zeros [..., 1]).

    With zero points: scale = max(max - min, MIN_SCALE) / (2^bits - 1), z = clamp(-round(min / scale))
    (AutoAWQ's rule).  Symmetric: scale = max(max|w|, MIN_SCALE) / (2^(bits-1) - 1), z = 2^(bits-1).
    Scales are rounded to fp16 *before* the codes are chosen, so the codes are the nearest ones for the
    scale that is actually stored.  All three come back as fp32 arrays of *groups*' library.
    """
    ops = _TorchOps if is_torch(groups) else _NumpyOps
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
