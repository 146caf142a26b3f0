"""Write AutoAWQ GEMM checkpoints: what AutoAWQ-format loaders (transformers, vLLM, gptqmodel, ...) accept."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from awq2trt.atomic import atomic_output_dir
from awq2trt.checkpoint.awq_config import AwqConfig
from awq2trt.checkpoint.formats.awq_gemm import encode_gemm
from awq2trt.quant_weight import QuantWeight

# Files a loader needs beside the weights; copied from the source model when present.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
)


class ShardWriter:
    """Accumulates tensors and flushes a safetensors shard whenever *max_shard_bytes* is reached."""

    def __init__(self, folder: Path, max_shard_bytes: int | None) -> None:
        self.folder = folder
        self.max_shard_bytes = max_shard_bytes
        self.pending: dict[str, np.ndarray] = {}
        self.pending_bytes = 0
        self.shards: list[tuple[str, list[str]]] = []

    def add(self, name: str, array: np.ndarray) -> None:
        if self.max_shard_bytes and self.pending and self.pending_bytes + array.nbytes > self.max_shard_bytes:
            self.flush()
        self.pending[name] = np.ascontiguousarray(array)
        self.pending_bytes += array.nbytes

    def flush(self) -> None:
        from safetensors.numpy import save_file

        if not self.pending:
            return
        file_name = f"shard-{len(self.shards):05d}.safetensors"
        save_file(self.pending, str(self.folder / file_name), metadata={"format": "pt"})
        self.shards.append((file_name, list(self.pending)))
        self.pending, self.pending_bytes = {}, 0

    def finish(self) -> None:
        """Name shards the way transformers does, and write the index when there is more than one."""
        self.flush()
        total = len(self.shards)
        if total == 1:
            (self.folder / self.shards[0][0]).rename(self.folder / "model.safetensors")
            return
        weight_map: dict[str, str] = {}
        size = 0
        for i, (file_name, names) in enumerate(self.shards):
            final = f"model-{i + 1:05d}-of-{total:05d}.safetensors"
            (self.folder / file_name).rename(self.folder / final)
            weight_map.update(dict.fromkeys(names, final))
            size += (self.folder / final).stat().st_size
        index = {"metadata": {"total_size": size}, "weight_map": weight_map}
        (self.folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def quantized_model_config(source_config: dict[str, Any], dense_dtype: str) -> dict[str, Any]:
    """config.json of a checkpoint quantized from *source_config*: its own quantization_config (written by
    ``write_awq_gemm_checkpoint``) replaces any the source had, and the dense tensors' dtype is stated once."""
    config = {k: v for k, v in source_config.items() if k not in ("quantization_config", "torch_dtype", "dtype")}
    config["torch_dtype"] = "float16" if dense_dtype == "fp16" else "float32"
    return config


def write_awq_gemm_checkpoint(
    output: str | Path,
    *,
    config: dict[str, Any],
    awq_config: AwqConfig,
    quantized: Iterable[tuple[str, QuantWeight, np.ndarray | None]],
    dense: Iterable[tuple[str, np.ndarray]],
    copy_files_from: Path | None = None,
    max_shard_bytes: int | None = None,
    force: bool = False,
) -> Path:
    """Write a complete checkpoint folder atomically.

    *quantized* yields ``(module_name, weight, bias_or_None)``; *dense* yields ``(tensor_name, array)`` for every
    other tensor (embeddings, norms, the output head).  Both are consumed lazily, so a caller can stream one
    layer at a time; only the current shard is held in memory.
    """
    out = Path(output)
    with atomic_output_dir(out, force=force) as tmp:
        shards = ShardWriter(tmp, max_shard_bytes)
        for name, array in dense:
            shards.add(name, array)
        for module, qw, bias in quantized:
            for suffix, array in encode_gemm(qw).items():
                if suffix == "scales":
                    array = array.astype(np.float16)  # AutoAWQ loaders expect fp16 scales
                shards.add(f"{module}.{suffix}", array)
            if bias is not None:
                shards.add(f"{module}.bias", bias.astype(np.float16))
        shards.finish()
        full_config = dict(config)
        full_config["quantization_config"] = awq_config.to_dict()
        (tmp / "config.json").write_text(json.dumps(full_config, indent=2) + "\n")
        if copy_files_from is not None:
            for file_name in TOKENIZER_FILES:
                source = copy_files_from / file_name
                if source.is_file():
                    shutil.copyfile(source, tmp / file_name)
    return out
