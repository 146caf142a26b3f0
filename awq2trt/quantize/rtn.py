"""Round-to-nearest group-wise int4: the baseline every smarter method is measured against."""

from __future__ import annotations

import numpy as np
import torch

from awq2trt.errors import Awq2TrtError
from awq2trt.quant_weight import MAX_CODE, SYMMETRIC_ZERO, QuantWeight

MIN_SCALE = 1e-5


def rtn_quantize(
    weight: torch.Tensor | np.ndarray, group_size: int, *, zero_point: bool = True, name: str = "weight"
) -> QuantWeight:
    """Quantize a dense [N, K] weight per group of *group_size* input channels.

    With zero points: scale = (max - min) / 15, z = clamp(-round(min / scale), 0, 15) (AutoAWQ's rule).
    Symmetric: scale = max|w| / 7, z = 8.  Scales are rounded to fp16 *before* the codes are chosen, so the
    codes are the nearest ones for the scale that is actually stored.
    """
    w = torch.as_tensor(weight).detach().to(torch.float32)
    if w.ndim != 2:
        raise Awq2TrtError(name, expected="a 2-D weight [out, in]", got=list(w.shape))
    n, k = w.shape
    if group_size <= 0 or k % group_size:
        raise Awq2TrtError(name, expected=f"a group size that divides in_features={k}", got=f"group_size={group_size}")
    if not torch.isfinite(w).all():
        raise Awq2TrtError(name, expected="finite weights", got="NaN or inf")
    groups = w.reshape(n, k // group_size, group_size)
    if zero_point:
        w_max = groups.amax(dim=2)
        w_min = groups.amin(dim=2)
        scales = ((w_max - w_min).clamp(min=MIN_SCALE) / MAX_CODE).to(torch.float16).to(torch.float32)
        zeros = (-torch.round(w_min / scales)).clamp(0, MAX_CODE)
    else:
        scales = (
            (groups.abs().amax(dim=2).clamp(min=MIN_SCALE) / (SYMMETRIC_ZERO - 1)).to(torch.float16).to(torch.float32)
        )
        zeros = torch.full_like(scales, SYMMETRIC_ZERO)
    codes = (torch.round(groups / scales[..., None]) + zeros[..., None]).clamp(0, MAX_CODE)
    return QuantWeight(
        codes.reshape(n, k).to(torch.uint8).numpy(),
        scales.to(torch.float16).numpy(),
        zeros.to(torch.uint8).numpy(),
        group_size,
    ).validated(name)
