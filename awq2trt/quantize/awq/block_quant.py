"""AWQ on one decoder block: statistics, scale search and folding, clip search, int4, self-check.

The block's float output on held-back samples (never seen by the searches) is compared with two quantized
versions of the same block on the same inputs: plain RTN of the original weights, and the AWQ result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from awq2trt.errors import Awq2TrtError
from awq2trt.quant_weight import QuantWeight
from awq2trt.quantize.awq.blocks import check_finite, run_block
from awq2trt.quantize.awq.fake_quant import clipped_weight, fake_quantize_weight
from awq2trt.quantize.awq.mappings import ArchitectureMapping
from awq2trt.quantize.awq.search import (
    DEFAULT_CLIP_GRID,
    DEFAULT_SCALE_GRID,
    InputStats,
    ScaleChoice,
    StatsAccumulator,
    gram_loss,
    module_loss,
    search_clip,
    search_scale,
)
from awq2trt.quantize.rtn import rtn_quantize


@dataclass(frozen=True)
class AwqSettings:
    group_size: int
    zero_point: bool = True
    scale_grid: tuple[float, ...] = DEFAULT_SCALE_GRID
    scale_refine: bool = True
    clip_grid: tuple[float, ...] = DEFAULT_CLIP_GRID
    # Samples whose tokens drive losses through attention / the MLP (Gram losses use every token).
    search_samples: int = 8
    batch_size: int = 4
    clip: bool = True
    # Zero-point quantization: search each end of a group's range on its own after the joint shrink
    # (SmolLM2 g64: 24.59 perplexity against 24.63 with the joint shrink only, block errors 3 % lower).
    clip_sides: bool = True


@dataclass(frozen=True)
class BlockReport:
    block: str
    rtn_mse: float
    awq_mse: float
    alphas: dict[str, float | None] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.awq_mse / self.rtn_mse if self.rtn_mse > 0 else (1.0 if self.awq_mse == 0 else float("inf"))


@dataclass
class BlockResult:
    quantized: dict[str, QuantWeight]  # relative Linear name -> weight
    biases: dict[str, np.ndarray | None]
    dense: dict[str, np.ndarray]  # relative parameter name -> fp32 value (norms carry the folded scales)
    report: BlockReport
    next_calib: torch.Tensor
    next_holdout: torch.Tensor


@dataclass
class _Group:
    prev_name: str
    prev: nn.Module
    names: tuple[str, ...]
    linears: tuple[nn.Linear, ...]
    inspect: nn.Module | None
    captures: list[tuple[tuple, dict, torch.Tensor]] = field(default_factory=list)


def _module(block: nn.Module, name: str, where: str) -> nn.Module:
    try:
        return block.get_submodule(name)
    except AttributeError as exc:
        raise Awq2TrtError(
            where, expected=f"a module {name!r} in the block (check the AWQ mapping)", got="none"
        ) from exc


def resolve_groups(block: nn.Module, block_name: str, mapping: ArchitectureMapping) -> list[_Group]:
    """The mapping's groups that apply to this block (a Linear prev_op must produce the group's input)."""
    groups = []
    for spec in mapping.groups:
        where = f"{block_name}: AWQ mapping group {spec.prev_op} -> {', '.join(spec.linears)}"
        linears = tuple(_module(block, name, where) for name in spec.linears)
        if not all(isinstance(m, nn.Linear) for m in linears):
            raise Awq2TrtError(where, expected="Linear modules in linears", got=[type(m).__name__ for m in linears])
        widths = {m.in_features for m in linears}
        if len(widths) != 1:
            raise Awq2TrtError(where, expected="Linears reading the same input", got=f"in_features {sorted(widths)}")
        width = widths.pop()
        prev = _module(block, spec.prev_op, where)
        if isinstance(prev, nn.Linear):
            if prev.out_features != width:
                continue  # e.g. v_proj -> o_proj under grouped-query attention: no per-channel match
        else:
            weight = getattr(prev, "weight", None)
            if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != (width,):
                raise Awq2TrtError(
                    where,
                    expected=f"a prev_op with a weight of shape [{width}] to fold the scale into",
                    got=type(prev).__name__,
                )
        inspect = _module(block, spec.inspect, where) if spec.inspect else None
        groups.append(_Group(spec.prev_op, prev, spec.linears, linears, inspect))
    return groups


def _fold_scales(group: _Group, scales: torch.Tensor) -> None:
    """Multiply the Linears' input columns by s and divide the previous op's output by s: same float model."""
    for linear in group.linears:
        linear.weight.data = linear.weight.data * scales
    if isinstance(group.prev, nn.Linear):
        group.prev.weight.data = group.prev.weight.data / scales[:, None]
    else:
        group.prev.weight.data = group.prev.weight.data / scales
    bias = getattr(group.prev, "bias", None)
    if isinstance(bias, torch.Tensor):
        group.prev.bias.data = bias.data / scales


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).pow(2).mean())


class _Capture:
    """Forward hooks: input statistics for every Linear input, and the inspect modules' calls while *on*."""

    def __init__(self, groups: list[_Group], stats_for: dict[str, tuple[nn.Linear, StatsAccumulator]]) -> None:
        self.on = False
        self.handles = []
        for linear, accumulator in stats_for.values():
            self.handles.append(linear.register_forward_pre_hook(self._stats_hook(accumulator)))
        for group in groups:
            if group.inspect is not None:
                self.handles.append(group.inspect.register_forward_hook(self._call_hook(group), with_kwargs=True))

    @staticmethod
    def _stats_hook(accumulator: StatsAccumulator) -> Any:
        def hook(module: nn.Module, args: tuple) -> None:
            accumulator.add(args[0])

        return hook

    def _call_hook(self, group: _Group) -> Any:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if self.on:
                out = output[0] if isinstance(output, tuple) else output
                group.captures.append((args, kwargs, out.detach().float().clone()))

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _collect(
    block: nn.Module,
    groups: list[_Group],
    stats_for: dict[str, tuple[nn.Linear, StatsAccumulator]],
    calib: torch.Tensor,
    kwargs: dict[str, Any],
    settings: AwqSettings,
) -> torch.Tensor:
    """The float block over the calibration samples: input statistics, inspect-module calls, its output."""
    capture = _Capture(groups, stats_for)
    output = torch.empty_like(calib)
    step = settings.batch_size
    try:
        for start in range(0, calib.shape[0], step):
            capture.on = start < settings.search_samples
            run_block(block, calib[start : start + step], kwargs, step, out=output[start : start + step])
    finally:
        capture.remove()
    return output


def _search_and_fold_scales(
    groups: list[_Group], stats: dict[str, InputStats], quantized: set[str], settings: AwqSettings
) -> list[ScaleChoice]:
    """Search every group on the float weights, then fold all the scales (each fold is exact)."""
    g, zp = settings.group_size, settings.zero_point
    choices: list[ScaleChoice] = []
    for group in groups:
        flags = [name in quantized for name in group.names]
        weights = [m.weight.data.clone() for m in group.linears]
        key = group.names[0]
        if not any(flags):
            choices.append(ScaleChoice(torch.ones_like(stats[key].abs_mean), None, 0.0, 0.0))
            continue
        if group.inspect is None:
            loss = gram_loss(weights, stats[key].gram)
        else:
            loss = module_loss(group.inspect, group.linears, group.captures)
        choice = search_scale(
            weights,
            flags,
            stats[key].abs_mean,
            loss,
            group_size=g,
            zero_point=zp,
            grid=settings.scale_grid,
            refine=settings.scale_refine,
        )
        choices.append(choice)
        group.captures.clear()
    for group, choice in zip(groups, choices, strict=True):
        if choice.alpha is not None:
            _fold_scales(group, choice.scales)
            key = group.names[0]
            stats[key] = stats[key].scaled(choice.scales, g)
    return choices


def _clip_and_quantize(
    linear: nn.Linear, name: str, stats: InputStats, clip: bool, settings: AwqSettings
) -> QuantWeight:
    """Search the clip (unless *clip* is off for this Linear), quantize, and load the dequantized weight back."""
    g, zp = settings.group_size, settings.zero_point
    weight = linear.weight.data
    if clip and settings.clip:
        ratios = search_clip(
            weight, stats.group_gram, group_size=g, zero_point=zp, grid=settings.clip_grid, sides=settings.clip_sides
        )
        weight = clipped_weight(weight, g, ratios, zero_point=zp)
    qw = rtn_quantize(weight.cpu(), g, zero_point=zp, name=name)
    linear.weight.data = torch.from_numpy(qw.dequantize()).to(linear.weight.device)
    return qw


def quantize_block(
    block: nn.Module,
    block_name: str,
    calib: torch.Tensor,
    holdout: torch.Tensor,
    kwargs: dict[str, Any],
    mapping: ArchitectureMapping,
    settings: AwqSettings,
    quantize_names: Sequence[str],
    *,
    next_inputs: str = "float",
) -> BlockResult:
    """Quantize the Linears *quantize_names* (relative names) of a materialized fp32 *block*."""
    g, zp, step = settings.group_size, settings.zero_point, settings.batch_size
    linears = {n: m for n, m in block.named_modules() if isinstance(m, nn.Linear)}
    to_quantize = [n for n in linears if n in set(quantize_names)]
    groups = resolve_groups(block, block_name, mapping)

    # One statistics accumulator per distinct input: a group's Linears share theirs.
    owner: dict[str, str] = {}
    for group in groups:
        for name in group.names:
            owner.setdefault(name, group.names[0])
    for name in to_quantize:
        owner.setdefault(name, name)
    gram_owners = {grp.names[0] for grp in groups if grp.inspect is None}
    stats_for = {
        key: (
            linears[key],
            StatsAccumulator(linears[key].in_features, g, full_gram=key in gram_owners, device=calib.device),
        )
        for key in sorted(set(owner.values()))
    }

    with torch.no_grad():
        next_calib = _collect(block, groups, stats_for, calib, kwargs, settings)
        check_finite(next_calib, block_name, "its output on the calibration samples")
        stats = {key: accumulator.finish() for key, (_, accumulator) in stats_for.items()}
        float_holdout = run_block(block, holdout, kwargs, step)
        check_finite(float_holdout, block_name, "its output on the held-back samples")

        # The baseline: RTN of the original weights, on the same held-back inputs.
        original = {n: linears[n].weight.data for n in to_quantize}
        for name in to_quantize:
            linears[name].weight.data = fake_quantize_weight(original[name], g, zero_point=zp)
        rtn_mse = _mse(run_block(block, holdout, kwargs, step), float_holdout)
        for name in to_quantize:
            linears[name].weight.data = original[name]

        choices = _search_and_fold_scales(groups, stats, set(to_quantize), settings)
        quantized = {
            name: _clip_and_quantize(
                linears[name], f"{block_name}.{name}", stats[owner[name]], name not in mapping.skip_clip, settings
            )
            for name in to_quantize
        }

        awq_holdout = run_block(block, holdout, kwargs, step)
        awq_mse = _mse(awq_holdout, float_holdout)
        if next_inputs == "quantized":
            run_block(block, calib, kwargs, step, out=next_calib)
        next_holdout = awq_holdout if next_inputs == "quantized" else float_holdout

    dense = {
        n: p.detach().cpu().numpy().copy()
        for n, p in block.named_parameters()
        if n.removesuffix(".weight") not in quantized and n.removesuffix(".bias") not in quantized
    }
    biases = {
        n: (linears[n].bias.detach().cpu().numpy().copy() if linears[n].bias is not None else None) for n in quantized
    }
    alphas = {f"{grp.prev_name}->{','.join(grp.names)}": c.alpha for grp, c in zip(groups, choices, strict=True)}
    report = BlockReport(block_name, rtn_mse, awq_mse, alphas)
    return BlockResult(quantized, biases, dense, report, next_calib, next_holdout)
