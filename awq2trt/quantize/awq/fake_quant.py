"""Fake quantization in torch: the weight RTN would store, dequantized, computed batched for the searches.

It rounds with `awq2trt.quantize.rtn.round_to_nearest`, the rule `rtn_quantize` writes with (fp16-rounded
scales, integer zero points or symmetric), on the search's own device, so a search minimizes the error of the
weight that is actually written.  Clipping is a clamp before quantizing: RTN then takes its range from the
clamped group, exactly as the written weight will.
"""

from __future__ import annotations

import torch

from awq2trt.quantize.rtn import round_to_nearest


def fake_quantize(groups: torch.Tensor, *, zero_point: bool) -> torch.Tensor:
    """Dequantized RTN of fp32 weight groups [..., G] (each last-axis row is one quantization group)."""
    codes, scales, zeros = round_to_nearest(groups, zero_point=zero_point)
    return (codes - zeros) * scales


Ratio = torch.Tensor | float


def clip_groups(groups: torch.Tensor, low: Ratio, high: Ratio, *, zero_point: bool) -> torch.Tensor:
    """Shrink each group's range and clamp the weights into it (ratios broadcast over [..., 1]).

    With zero points the lower end shrinks by *low* and the upper end by *high*, both towards zero;
    symmetric quantization has one bound, *high* times max|w|.
    """
    if zero_point:
        lower = groups.amin(dim=-1, keepdim=True) * low
        upper = groups.amax(dim=-1, keepdim=True) * high
        return torch.minimum(torch.maximum(groups, lower), upper)
    bound = groups.abs().amax(dim=-1, keepdim=True) * high
    return torch.minimum(torch.maximum(groups, -bound), bound)


Clip = tuple[torch.Tensor, torch.Tensor]  # (low, high) shrink ratios, each [N, K / G]


def clipped_weight(weight: torch.Tensor, group_size: int, clip: Clip, *, zero_point: bool) -> torch.Tensor:
    """The [N, K] weight with each group clamped to its clipped range (what RTN then quantizes)."""
    n, k = weight.shape
    groups = weight.reshape(n, k // group_size, group_size)
    low, high = clip
    return clip_groups(groups, low[..., None], high[..., None], zero_point=zero_point).reshape(n, k)


def fake_quantize_weight(
    weight: torch.Tensor, group_size: int, *, zero_point: bool, clip: Clip | None = None
) -> torch.Tensor:
    """Dequantized RTN of a [N, K] weight, optionally clipped per group first."""
    n, k = weight.shape
    source = weight if clip is None else clipped_weight(weight, group_size, clip, zero_point=zero_point)
    return fake_quantize(source.reshape(n, k // group_size, group_size), zero_point=zero_point).reshape(n, k)
