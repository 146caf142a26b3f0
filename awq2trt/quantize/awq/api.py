"""`awq_quantize_checkpoint`: dense model folder -> AutoAWQ GEMM checkpoint with AWQ's scales and clipping.

Blocks are processed in order; each block's result (int4 weights and its norms with the folded scales) is
spilled to a temporary folder beside the output, so memory holds one block and the activations.  Only when
every block has passed the self-check is the checkpoint written, streaming from the spill.

Each block's searches see the *float* model's activations (``next_inputs="float"``, AutoAWQ's choice): a block
is fitted to reproduce its float self on the inputs it was trained for.  ``"quantized"`` feeds each block the
output of the blocks before it already quantized (GPTQ's and llm-compressor's order); on SmolLM2 (g64, the
default calibration) it measured worse, 24.91 against 24.63 perplexity, so it is kept only as an option.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from awq2trt.architectures import resolve_architecture
from awq2trt.atomic import check_output_dir, remove_stale_partials
from awq2trt.checkpoint.awq_config import AwqConfig
from awq2trt.checkpoint.reader import CONFIG_NAME, open_checkpoint
from awq2trt.errors import Awq2TrtError
from awq2trt.evaluate.reference import load_tokenizer
from awq2trt.quantize.awq.block_quant import AwqSettings, BlockReport, quantize_block
from awq2trt.quantize.awq.blocks import BlockwiseModel
from awq2trt.quantize.awq.calibration import DEFAULT_SAMPLES, DEFAULT_SEQLEN, calibration_samples
from awq2trt.quantize.awq.mappings import ArchitectureMapping
from awq2trt.quantize.awq.spill import DENSE_DTYPES, spill_block, write_checkpoint

DEFAULT_WORSE_MARGIN = 0.05
NEXT_INPUTS = ("float", "quantized")


@dataclass(frozen=True)
class AwqResult:
    output: Path
    reports: list[BlockReport]


def format_report(reports: Sequence[BlockReport]) -> str:
    """The per-block self-check table: output MSE on held-back calibration tokens, RTN vs AWQ."""
    width = max([len("block"), *(len(r.block) for r in reports)])
    lines = [f"{'block':<{width}}  {'rtn mse':>11}  {'awq mse':>11}  {'awq/rtn':>7}"]
    for r in reports:
        lines.append(f"{r.block:<{width}}  {r.rtn_mse:11.4e}  {r.awq_mse:11.4e}  {r.ratio:7.3f}")
    if reports:
        mean = sum(r.ratio for r in reports) / len(reports)
        lines.append(f"{'mean':<{width}}  {'':>11}  {'':>11}  {mean:7.3f}")
    return "\n".join(lines)


def _device(device: str) -> torch.device:
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise Awq2TrtError("--device", expected="cpu or cuda", got=repr(device)) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise Awq2TrtError(
            "--device", expected="a CUDA GPU visible to torch", got="none (torch.cuda.is_available() is False)"
        )
    if resolved.type not in ("cpu", "cuda"):
        raise Awq2TrtError("--device", expected="cpu or cuda", got=repr(device))
    return resolved


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    if count is None:
        yield
        return
    if count < 1:
        raise Awq2TrtError("--threads", expected="a positive number of threads", got=count)
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def awq_quantize_checkpoint(
    source: str | Path,
    output: str | Path,
    *,
    group_size: int = 128,
    zero_point: bool = True,
    calib: str | Path | None = None,
    calib_samples: int = DEFAULT_SAMPLES,
    calib_seqlen: int = DEFAULT_SEQLEN,
    holdout_fraction: float = 0.1,
    mappings: Mapping[str, ArchitectureMapping] | None = None,
    mapping_files: Sequence[str | Path] = (),
    modules_to_not_convert: list[str] | None = None,
    dense_dtype: str = "fp16",
    max_shard_bytes: int | None = None,
    force: bool = False,
    allow_pickle: bool = False,
    progress: bool = True,
    device: str = "cpu",
    threads: int | None = None,
    allow_worse: bool = False,
    worse_margin: float = DEFAULT_WORSE_MARGIN,
    settings: AwqSettings | None = None,
    next_inputs: str = "float",
    on_report: Callable[[list[BlockReport]], None] | None = None,
) -> AwqResult:
    """AWQ-quantize every Linear of the decoder blocks of the dense model at *source* (see the module doc).

    *on_report* receives the per-block self-check before the checkpoint is written or refused.
    """
    if dense_dtype not in DENSE_DTYPES:
        raise Awq2TrtError("--dense-dtype", expected="fp16 or fp32", got=dense_dtype)
    if next_inputs not in NEXT_INPUTS:
        raise Awq2TrtError("next_inputs", expected=" or ".join(NEXT_INPUTS), got=next_inputs)
    if calib_samples < 2:
        raise Awq2TrtError(
            "--calib-samples", expected="at least 2 (some are held back for the self-check)", got=calib_samples
        )
    if not 0 < holdout_fraction < 1:
        raise Awq2TrtError("holdout_fraction", expected="a fraction between 0 and 1", got=holdout_fraction)
    settings = settings or AwqSettings(group_size=group_size, zero_point=zero_point)
    if (settings.group_size, settings.zero_point) != (group_size, zero_point):
        raise Awq2TrtError("settings", expected=f"group_size={group_size}, zero_point={zero_point}", got=settings)
    torch_device = _device(device)
    awq_config = AwqConfig(group_size=group_size, zero_point=zero_point, modules_to_not_convert=modules_to_not_convert)
    ckpt = open_checkpoint(source, allow_pickle=allow_pickle)
    if ckpt.format != "dense":
        raise Awq2TrtError(source, expected="a dense (unquantized) model to quantize", got=f"a {ckpt.title} checkpoint")
    architecture = resolve_architecture(ckpt.config, ckpt.folder / CONFIG_NAME, mapping_files, mappings)
    mapping = architecture.awq
    out = Path(output)
    check_output_dir(out, force=force)  # before minutes of work, not after

    with _threads(threads):
        model = BlockwiseModel(ckpt, mapping.blocks, torch_device, architecture)
        block_linears = [_linears_to_quantize(model, index, awq_config) for index in range(len(model.blocks))]

        ids = torch.from_numpy(
            calibration_samples(load_tokenizer(ckpt.folder), calib, samples=calib_samples, seqlen=calib_seqlen)
        )
        held = max(1, round(holdout_fraction * calib_samples))
        hidden, kwargs = model.block_inputs(ids)
        calib_states, holdout_states = hidden[:-held].clone(), hidden[-held:].clone()
        del hidden

        # Named like atomic_output_dir's partials (owner pid first), so a SIGKILLed run's spill is found and
        # removed by the next run for the same output, as its partial checkpoint would be.
        parent = out.resolve().parent
        remove_stale_partials(parent, out.name)
        spill_dir = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-awq-spill-", dir=parent))
        try:
            spills, reports = [], []
            bar = tqdm(range(len(model.blocks)), desc=f"awq int4 g{group_size}", unit="block", disable=not progress)
            for index in bar:
                block = model.load_block(index)
                result = quantize_block(
                    block,
                    model.block_name(index),
                    calib_states,
                    holdout_states,
                    kwargs,
                    mapping,
                    settings,
                    block_linears[index],
                    next_inputs=next_inputs,
                )
                model.release_block(index)
                spills.append(spill_block(spill_dir, index, result))
                reports.append(result.report)
                calib_states, holdout_states = result.next_calib, result.next_holdout
                bar.set_postfix(awq_over_rtn=f"{result.report.ratio:.3f}")
            del calib_states, holdout_states
            if on_report is not None:
                on_report(reports)
            _refuse_worse(reports, worse_margin, allow_worse)
            write_checkpoint(ckpt, architecture, out, spills, model, awq_config, dense_dtype, max_shard_bytes, force)
        finally:
            shutil.rmtree(spill_dir, ignore_errors=True)
    return AwqResult(out, reports)


def _linears_to_quantize(model: BlockwiseModel, index: int, awq_config: AwqConfig) -> list[str]:
    """A block's Linears (relative names) that become int4, each checked against the group size up front."""
    names = []
    for name, module in model.blocks[index].named_modules():
        full = f"{model.block_name(index)}.{name}"
        if not isinstance(module, torch.nn.Linear) or awq_config.keeps_dense(full):
            continue
        if module.in_features % awq_config.group_size:
            raise Awq2TrtError(
                full,
                expected=f"in_features={module.in_features} divisible by the group size",
                got=f"group_size={awq_config.group_size} (try 32 or 64)",
            )
        names.append(name)
    return names


def _refuse_worse(reports: Sequence[BlockReport], margin: float, allow_worse: bool) -> None:
    worst = max(reports, key=lambda r: r.ratio)
    if worst.ratio > 1 + margin and not allow_worse:
        raise Awq2TrtError(
            worst.block,
            expected=f"an AWQ output error at most {100 * margin:.0f} % above plain RTN's on held-back tokens",
            got=f"{worst.ratio:.3f}x RTN's (AWQ mse {worst.awq_mse:.3e}, RTN mse {worst.rtn_mse:.3e})",
            detail="no checkpoint written; --report prints every block, --allow-worse writes it anyway",
        )
