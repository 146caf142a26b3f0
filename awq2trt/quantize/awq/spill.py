"""The spill between the search and the writer: one safetensors file per quantized block.

Holding every block's int4 weights until the self-check has passed would cost the whole model's memory;
each block's result goes to disk instead (codes packed two per byte, scales, zeros, biases and the block's
dense tensors with their folded scales), and the checkpoint is streamed from there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from awq2trt.architectures import Architecture, with_recorded_architecture
from awq2trt.checkpoint.awq_config import AwqConfig
from awq2trt.checkpoint.reader import Checkpoint
from awq2trt.checkpoint.writer import quantized_model_config, write_awq_gemm_checkpoint
from awq2trt.quant_weight import QuantWeight, pack_nibbles, unpack_nibbles
from awq2trt.quantize.awq.block_quant import BlockResult
from awq2trt.quantize.awq.blocks import BlockwiseModel

DENSE_DTYPES = {"fp16": np.float16, "fp32": np.float32}


def spill_block(folder: Path, index: int, result: BlockResult) -> Path:
    tensors: dict[str, np.ndarray] = {}
    for name, qw in result.quantized.items():
        tensors[f"q/{name}/codes"] = pack_nibbles(qw.qweight)
        tensors[f"q/{name}/scales"] = qw.scales
        tensors[f"q/{name}/zeros"] = qw.zeros
        if result.biases[name] is not None:
            tensors[f"b/{name}"] = result.biases[name]
    for name, array in result.dense.items():
        tensors[f"d/{name}"] = array
    path = folder / f"block-{index:05d}.safetensors"
    save_file(tensors, str(path))
    return path


def read_spill(
    path: Path, group_size: int
) -> tuple[dict[str, tuple[QuantWeight, np.ndarray | None]], dict[str, np.ndarray]]:
    quantized: dict[str, tuple[QuantWeight, np.ndarray | None]] = {}
    dense: dict[str, np.ndarray] = {}
    with safe_open(str(path), framework="numpy") as spill:
        keys = list(spill.keys())
        for key in keys:
            kind, _, rest = key.partition("/")
            if kind == "d":
                dense[rest] = spill.get_tensor(key)
            elif kind == "q" and rest.endswith("/codes"):
                name = rest.removesuffix("/codes")
                scales = spill.get_tensor(f"q/{name}/scales")
                codes = unpack_nibbles(spill.get_tensor(key), scales.shape[1] * group_size)
                bias = spill.get_tensor(f"b/{name}") if f"b/{name}" in keys else None
                quantized[name] = (QuantWeight(codes, scales, spill.get_tensor(f"q/{name}/zeros"), group_size), bias)
    return quantized, dense


def write_checkpoint(
    ckpt: Checkpoint,
    architecture: Architecture,
    out: Path,
    spills: Sequence[Path],
    model: BlockwiseModel,
    awq_config: AwqConfig,
    dense_dtype: str,
    max_shard_bytes: int | None,
    force: bool,
) -> None:
    dtype = DENSE_DTYPES[dense_dtype]
    group_size = awq_config.group_size
    quantized_modules: set[str] = set()
    block_dense: dict[str, Path] = {}
    for index, path in enumerate(spills):
        prefix = f"{model.block_name(index)}."
        with safe_open(str(path), framework="numpy") as spill:
            for key in spill.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                kind, _, rest = key.partition("/")
                if kind == "d":
                    block_dense[prefix + rest] = path
                elif kind == "q" and rest.endswith("/codes"):
                    quantized_modules.add(prefix + rest.removesuffix("/codes"))
    skip = {f"{m}.weight" for m in quantized_modules} | {f"{m}.bias" for m in quantized_modules}

    def dense() -> Iterator[tuple[str, np.ndarray]]:
        for name in ckpt.weights.names():
            if name in skip:
                continue
            if name in block_dense:
                with safe_open(str(block_dense[name]), framework="numpy") as spill:
                    array = spill.get_tensor("d/" + _relative(name, model))
            else:
                array = ckpt.tensor(name)
            yield name, array.astype(dtype) if np.issubdtype(array.dtype, np.floating) else array

    def quantized() -> Iterator[tuple[str, QuantWeight, np.ndarray | None]]:
        for index, path in enumerate(spills):
            weights, _ = read_spill(path, group_size)
            for name, (qw, bias) in weights.items():
                yield f"{model.block_name(index)}.{name}", qw, bias

    write_awq_gemm_checkpoint(
        out,
        config=with_recorded_architecture(quantized_model_config(ckpt.config, dense_dtype), architecture),
        awq_config=awq_config,
        quantized=quantized(),
        dense=dense(),
        copy_files_from=ckpt.folder,
        max_shard_bytes=max_shard_bytes,
        force=force,
    )


def _relative(name: str, model: BlockwiseModel) -> str:
    """``model.layers.3.input_layernorm.weight`` -> ``input_layernorm.weight``."""
    rest = name.removeprefix(model.blocks_name + ".")
    return rest.split(".", 1)[1]
