"""The two AWQ searches: a per-input-channel scale per scaling group, then a per-group clipping ratio.

Losses that only involve Linears are computed from the input's second moment H = XᵀX / T instead of a
forward pass: for a weight error D the output error is ||X Dᵀ||² / T = sum((D H) ∘ D), exact over every
calibration token at a cost independent of the token count.  Losses through a nonlinear module (attention,
the gated MLP) run that module on the captured inputs with the fake-quantized weights swapped in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from awq2trt.quantize.awq.fake_quant import Clip, Ratio, clip_groups, fake_quantize, fake_quantize_weight

# A coarse grid α = 0, 0.1, ..., 0.9, then the two half-steps around its best point: AutoAWQ's 0.05 resolution
# where it matters for 13 loss evaluations instead of 20.  The identity scale is always a candidate too, so
# the search can never pick something worse than RTN on its own data.
DEFAULT_SCALE_GRID = tuple(i / 10 for i in range(10))
DEFAULT_SCALE_REFINE = True
# Shrink factors 1.0 down to 0.525 (finer than AutoAWQ's 0.05 steps: the Gram loss makes them cheap).
DEFAULT_CLIP_GRID = tuple(1 - i / 40 for i in range(20))

WeightLoss = Callable[[Sequence[torch.Tensor]], float]


@dataclass
class InputStats:
    """Statistics of one Linear input over the calibration tokens."""

    abs_mean: torch.Tensor  # [K] mean |x| per input channel
    gram: torch.Tensor | None  # [K, K] XᵀX / T, when a Gram loss needs it
    group_gram: torch.Tensor  # [K / G, G, G] the diagonal blocks of XᵀX / T (what the clip loss needs)

    def scaled(self, scales: torch.Tensor, group_size: int) -> InputStats:
        """Statistics of X / s (the input once the scale is folded into the op before it)."""
        inv = 1.0 / scales
        blocks = inv.reshape(-1, group_size)
        return InputStats(
            self.abs_mean * inv,
            None if self.gram is None else self.gram * inv[:, None] * inv[None, :],
            self.group_gram * blocks[:, :, None] * blocks[:, None, :],
        )


class StatsAccumulator:
    """Running sums for `InputStats`, fed chunk by chunk from a forward hook."""

    def __init__(self, k: int, group_size: int, *, full_gram: bool, device: torch.device) -> None:
        self.group_size = group_size
        self.tokens = 0
        self.abs_sum = torch.zeros(k, dtype=torch.float64, device=device)
        self.gram = torch.zeros(k, k, dtype=torch.float64, device=device) if full_gram else None
        self.group_gram = torch.zeros(k // group_size, group_size, group_size, dtype=torch.float64, device=device)

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        self.tokens += x.shape[0]
        self.abs_sum += x.abs().sum(0, dtype=torch.float64)
        if self.gram is not None:
            self.gram += (x.T @ x).double()
        else:
            blocks = x.reshape(x.shape[0], -1, self.group_size).transpose(0, 1)  # [K/G, T, G]
            self.group_gram += (blocks.transpose(1, 2) @ blocks).double()

    def finish(self) -> InputStats:
        t = max(self.tokens, 1)
        gram = None if self.gram is None else (self.gram / t).float()
        if gram is not None:
            g = self.group_size
            idx = torch.arange(gram.shape[0] // g, device=gram.device)
            group_gram = gram.reshape(-1, g, gram.shape[0] // g, g)[idx, :, idx, :]
        else:
            group_gram = (self.group_gram / t).float()
        return InputStats((self.abs_sum / t).float(), gram, group_gram)


def gram_loss(originals: Sequence[torch.Tensor], gram: torch.Tensor) -> WeightLoss:
    """Mean squared output error of the Linears, from the input's Gram matrix."""
    rows = sum(w.shape[0] for w in originals)

    def loss(candidates: Sequence[torch.Tensor]) -> float:
        total = 0.0
        for w, q in zip(originals, candidates, strict=True):
            d = q - w
            total += float(((d @ gram) * d).sum())
        return total / rows

    return loss


def module_loss(
    module: nn.Module,
    linears: Sequence[nn.Linear],
    batches: Sequence[tuple[tuple, dict, torch.Tensor]],
) -> WeightLoss:
    """Mean squared error of *module*'s output, replaying its captured calls with the candidate weights."""

    def loss(candidates: Sequence[torch.Tensor]) -> float:
        saved = [linear.weight.data for linear in linears]
        total, count = 0.0, 0
        try:
            for linear, weight in zip(linears, candidates, strict=True):
                linear.weight.data = weight
            with torch.no_grad():
                for args, kwargs, target in batches:
                    out = module(*args, **kwargs)
                    out = out[0] if isinstance(out, tuple) else out
                    total += float((out.float() - target).pow(2).sum())
                    count += target.numel()
        finally:
            for linear, weight in zip(linears, saved, strict=True):
                linear.weight.data = weight
        return total / max(count, 1)

    return loss


def weight_magnitude(weights: Sequence[torch.Tensor], group_size: int) -> torch.Tensor:
    """Mean over output rows of |w| relative to its quantization group's max, per input channel [K]."""
    w = torch.cat([x.float() for x in weights], dim=0)
    groups = w.abs().reshape(w.shape[0], -1, group_size)
    relative = groups / (groups.amax(dim=-1, keepdim=True) + 1e-6)
    return relative.reshape(w.shape).mean(0)


def candidate_scales(x_mean: torch.Tensor, w_mean: torch.Tensor, alpha: float) -> torch.Tensor:
    """s = x^α / w^(1-α), normalised so that sqrt(max · min) = 1 (only the shape of s matters to the search)."""
    s = (x_mean.clamp(min=1e-4).pow(alpha) / (w_mean.pow(1 - alpha) + 1e-4)).clamp(min=1e-4)
    return s / (s.max() * s.min()).sqrt()


@dataclass(frozen=True)
class ScaleChoice:
    scales: torch.Tensor  # [K], multiply the Linears' input columns, divide the previous op's output
    alpha: float | None  # None: the identity (plain RTN was best)
    loss: float
    identity_loss: float


def search_scale(
    weights: Sequence[torch.Tensor],
    quantized: Sequence[bool],
    x_mean: torch.Tensor,
    loss: WeightLoss,
    *,
    group_size: int,
    zero_point: bool,
    grid: Sequence[float] = DEFAULT_SCALE_GRID,
    refine: bool = DEFAULT_SCALE_REFINE,
) -> ScaleChoice:
    """The grid point (or the identity) whose fake-quantized, unscaled-back weights give the lowest *loss*.

    With *refine*, the midpoints between the best grid point and its neighbours are tried as well.
    """
    w_mean = weight_magnitude([w for w, q in zip(weights, quantized, strict=True) if q], group_size)

    def evaluate(s: torch.Tensor) -> float:
        candidates = [
            fake_quantize_weight(w * s, group_size, zero_point=zero_point) / s if q else w
            for w, q in zip(weights, quantized, strict=True)
        ]
        return loss(candidates)

    ones = torch.ones_like(x_mean)
    identity_loss = evaluate(ones)
    best = ScaleChoice(ones, None, identity_loss, identity_loss)

    def try_alpha(alpha: float) -> None:
        nonlocal best
        s = candidate_scales(x_mean, w_mean, alpha)
        value = evaluate(s)
        if value < best.loss:
            best = ScaleChoice(s, alpha, value, identity_loss)

    for alpha in grid:
        try_alpha(alpha)
    if refine and best.alpha is not None and len(grid) > 1:
        points = sorted(grid)
        step = (points[1] - points[0]) / 2
        for alpha in (best.alpha - step, best.alpha + step):
            if 0 <= alpha <= 1 and alpha not in points:
                try_alpha(alpha)
    return best


def search_clip(
    weight: torch.Tensor,
    group_gram: torch.Tensor,
    *,
    group_size: int,
    zero_point: bool,
    grid: Sequence[float] = DEFAULT_CLIP_GRID,
    sides: bool = True,
    rows_per_chunk: int = 1024,
) -> Clip:
    """Per (row, group) shrink ratios (low, high), each [N, K / G], minimizing that group's output error.

    The error of group g in row n is d H_g dᵀ, with d the fake-quantization error of its G weights and
    H_g the group's block of the input Gram matrix (cross-group terms are left out, as AWQ does).  Both ends
    shrink together over *grid* first; with *sides* (zero-point quantization only) each end is then searched
    on its own with the other held, since a group's extremes are rarely equally costly to keep.
    """
    n, k = weight.shape
    lows = torch.ones(n, k // group_size, device=weight.device)
    highs = torch.ones_like(lows)
    for start in range(0, n, rows_per_chunk):
        rows = slice(start, start + rows_per_chunk)
        groups = weight[rows].reshape(-1, k // group_size, group_size).float()
        low, high = lows[rows], highs[rows]

        def error(low_ratio: Ratio, high_ratio: Ratio, groups: torch.Tensor = groups) -> torch.Tensor:
            clipped = clip_groups(groups, low_ratio, high_ratio, zero_point=zero_point)
            d = fake_quantize(clipped, zero_point=zero_point) - groups
            return (torch.einsum("ngi,gij->ngj", d, group_gram) * d).sum(-1)

        best = torch.full(groups.shape[:2], float("inf"), device=weight.device)
        for ratio in grid:
            err = error(ratio, ratio)
            better = err < best
            best = torch.where(better, err, best)
            low[better] = ratio
            high[better] = ratio
        if sides and zero_point:
            for side in ("low", "high"):
                for ratio in grid:
                    err = error(ratio, high[..., None]) if side == "low" else error(low[..., None], ratio)
                    better = err < best
                    best = torch.where(better, err, best)
                    (low if side == "low" else high)[better] = ratio
    return lows, highs
