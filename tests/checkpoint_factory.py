"""Write small checkpoints in any supported format, single-file or sharded, for reader tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from awq2trt.checkpoint.formats.awq_gemm import encode_gemm
from awq2trt.checkpoint.formats.awq_gemv import encode_gemv
from awq2trt.checkpoint.formats.compressed_tensors import encode_compressed
from awq2trt.checkpoint.formats.llm_awq import encode_llm_awq_v0, encode_llm_awq_v1, encode_llm_awq_v2
from awq2trt.quant_weight import QuantWeight

ENCODERS = {
    "awq-gemm": encode_gemm,
    "awq-gemv": encode_gemv,
    "compressed-tensors": encode_compressed,
    "llm-awq-v0": encode_llm_awq_v0,
    "llm-awq-v1": encode_llm_awq_v1,
    "llm-awq-v2": encode_llm_awq_v2,
}


def quantization_config(fmt: str, group_size: int, zero_point: bool) -> dict:
    if fmt == "compressed-tensors":
        weights = {"num_bits": 4, "type": "int", "strategy": "group", "group_size": group_size}
        weights |= {"symmetric": not zero_point, "actorder": None, "dynamic": False}
        return {
            "quant_method": "compressed-tensors",
            "format": "pack-quantized",
            "quantization_status": "compressed",
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights, "format": "pack-quantized"}},
            "ignore": ["lm_head"],
        }
    version = "gemv" if fmt == "awq-gemv" else "gemm"
    config = {"quant_method": "awq", "bits": 4, "group_size": group_size, "zero_point": zero_point, "version": version}
    if fmt.startswith("llm-awq"):
        config["backend"] = "llm-awq"
    return config


def write_checkpoint(
    folder: Path,
    fmt: str,
    layers: dict[str, QuantWeight],
    *,
    group_size: int,
    zero_point: bool,
    shards: int = 1,
    extra: dict[str, np.ndarray] | None = None,
) -> Path:
    """Encode *layers* in *fmt* and save them over *shards* files (with an index when more than one)."""
    tensors: dict[str, np.ndarray] = dict(extra or {})
    for name, qw in layers.items():
        # compressed-tensors omits the zero points of a symmetric weight; the checkpoint's scheme decides, not
        # the values: a small asymmetric weight can draw zero points that are all 8.
        encoded = encode_compressed(qw, symmetric=not zero_point) if fmt == "compressed-tensors" else ENCODERS[fmt](qw)
        for suffix, array in encoded.items():
            tensors[f"{name}.{suffix}"] = array
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    if shards == 1:
        save_file(tensors, str(folder / "model.safetensors"))
    else:
        weight_map = {}
        for i in range(shards):
            part = names[i::shards]
            file_name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            save_file({n: tensors[n] for n in part}, str(folder / file_name))
            weight_map.update(dict.fromkeys(part, file_name))
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config = {"model_type": "llama", "quantization_config": quantization_config(fmt, group_size, zero_point)}
    (folder / "config.json").write_text(json.dumps(config))
    return folder
