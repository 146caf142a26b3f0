"""`quantize_checkpoint`: dense Hugging Face model folder -> AutoAWQ GEMM checkpoint, streamed per tensor.

``method="awq"`` (the default) runs the AWQ search on calibration text first (`awq2trt.quantize.awq`);
``method="rtn"`` rounds every weight group to nearest.  Both write the same checkpoint format.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from awq2trt.architectures import ArchitectureMapping, resolve_architecture, with_recorded_architecture
from awq2trt.checkpoint.awq_config import AwqConfig
from awq2trt.checkpoint.reader import CONFIG_NAME, open_checkpoint
from awq2trt.checkpoint.writer import quantized_model_config, write_awq_gemm_checkpoint
from awq2trt.errors import Awq2TrtError
from awq2trt.quant_weight import QuantWeight
from awq2trt.quantize.rtn import rtn_quantize

if TYPE_CHECKING:
    from awq2trt.quantize.awq import AwqSettings

METHODS = ("rtn", "awq")
DENSE_DTYPES = {"fp16": np.float16, "fp32": np.float32}


def quantize_checkpoint(
    source: str | Path,
    output: str | Path,
    *,
    method: str = "awq",
    group_size: int = 128,
    zero_point: bool = True,
    modules_to_not_convert: list[str] | None = None,
    dense_dtype: str = "fp16",
    max_shard_bytes: int | None = None,
    force: bool = False,
    allow_pickle: bool = False,
    progress: bool = True,
    calib: str | Path | None = None,
    calib_samples: int | None = None,
    calib_seqlen: int | None = None,
    mapping_files: Sequence[str | Path] = (),
    mappings: Mapping[str, ArchitectureMapping] | None = None,
    device: str | None = None,
    threads: int | None = None,
    allow_worse: bool = False,
    report: bool = False,
    settings: AwqSettings | None = None,
) -> Path:
    """Quantize every decoder Linear of the dense model at *source*; write an AutoAWQ GEMM checkpoint.

    The AWQ options (calibration text and size, mappings for new model types, device, threads, the
    self-check override, *report* to print the per-block self-check table) mirror ``awq2trt quantize``.
    """
    if method not in METHODS:
        raise Awq2TrtError("--method", expected=" or ".join(METHODS), got=method)
    if method == "awq":
        from awq2trt.quantize.awq import awq_quantize_checkpoint, format_report
        from awq2trt.quantize.awq.calibration import DEFAULT_SAMPLES, DEFAULT_SEQLEN

        result = awq_quantize_checkpoint(
            source,
            output,
            group_size=group_size,
            zero_point=zero_point,
            calib=calib,
            calib_samples=DEFAULT_SAMPLES if calib_samples is None else calib_samples,
            calib_seqlen=DEFAULT_SEQLEN if calib_seqlen is None else calib_seqlen,
            mappings=mappings,
            mapping_files=mapping_files,
            modules_to_not_convert=modules_to_not_convert,
            dense_dtype=dense_dtype,
            max_shard_bytes=max_shard_bytes,
            force=force,
            allow_pickle=allow_pickle,
            progress=progress,
            device=device or "cpu",
            threads=threads,
            allow_worse=allow_worse,
            settings=settings,
            on_report=(lambda reports: print(format_report(reports), flush=True)) if report else None,
        )
        return result.output
    given = {
        "--calib": calib,
        "--calib-samples": calib_samples,
        "--calib-seqlen": calib_seqlen,
        "--device": device,
        "--threads": threads,
        "--allow-worse": allow_worse or None,
        "--report": report or None,
        "settings": settings,
    }
    unused = [option for option, value in given.items() if value is not None]
    if unused:
        raise Awq2TrtError(unused[0], expected="an option of --method awq", got=f"--method {method}")
    if dense_dtype not in DENSE_DTYPES:
        raise Awq2TrtError("--dense-dtype", expected="fp16 or fp32", got=dense_dtype)
    awq_config = AwqConfig(group_size=group_size, zero_point=zero_point, modules_to_not_convert=modules_to_not_convert)
    ckpt = open_checkpoint(source, allow_pickle=allow_pickle)
    if ckpt.format != "dense":
        raise Awq2TrtError(source, expected="a dense (unquantized) model to quantize", got=f"a {ckpt.title} checkpoint")
    architecture = resolve_architecture(ckpt.config, ckpt.folder / CONFIG_NAME, mapping_files, mappings)
    # The decoder blocks' attention and MLP Linears become int4; everything else stays dense.
    linear_suffixes = tuple(f".{linear}.weight" for linear in architecture.linears)
    names = ckpt.weights.names()
    to_quantize = [
        n
        for n in names
        if n.startswith(architecture.blocks + ".")
        and n.endswith(linear_suffixes)
        and not awq_config.keeps_dense(n.removesuffix(".weight"))
    ]
    # Validate every shape up front so a bad group size fails before anything is written.
    for name in to_quantize:
        k = ckpt.weights.shape(name)[1]
        if k % group_size:
            raise Awq2TrtError(
                name.removesuffix(".weight"),
                expected=f"in_features={k} divisible by the group size",
                got=f"group_size={group_size} (try 32 or 64)",
            )
    skip = set(to_quantize) | {n.removesuffix(".weight") + ".bias" for n in to_quantize}
    dtype = DENSE_DTYPES[dense_dtype]

    def dense() -> Iterator[tuple[str, np.ndarray]]:
        for name in names:
            if name in skip:
                continue
            array = ckpt.tensor(name)
            yield name, array.astype(dtype) if np.issubdtype(array.dtype, np.floating) else array

    def quantized() -> Iterator[tuple[str, QuantWeight, np.ndarray | None]]:
        for name in tqdm(to_quantize, desc=f"{method} int4 g{group_size}", disable=not progress):
            module = name.removesuffix(".weight")
            bias_name = module + ".bias"
            bias = ckpt.tensor(bias_name) if bias_name in ckpt.weights else None
            yield module, rtn_quantize(ckpt.tensor(name), group_size, zero_point=zero_point, name=module), bias

    return write_awq_gemm_checkpoint(
        output,
        config=with_recorded_architecture(quantized_model_config(ckpt.config, dense_dtype), architecture),
        awq_config=awq_config,
        quantized=quantized(),
        dense=dense(),
        copy_files_from=ckpt.folder,
        max_shard_bytes=max_shard_bytes,
        force=force,
    )
