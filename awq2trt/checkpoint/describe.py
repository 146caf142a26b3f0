"""What `awq2trt inspect` reports about a checkpoint, as a plain dict (printed as a table or JSON)."""

from __future__ import annotations

import math
from typing import Any

from awq2trt.checkpoint.reader import Checkpoint


def describe_checkpoint(ckpt: Checkpoint) -> dict[str, Any]:
    config = ckpt.config
    architectures = config.get("architectures")
    architecture = architectures[0] if isinstance(architectures, list) and architectures else None
    group_sizes = sorted({layout.group_size for layout in ckpt.linears.values()})
    quantized_params = sum(layout.in_features * layout.out_features for layout in ckpt.linears.values())
    quantized_bytes = sum(ckpt.weights.nbytes(n) for n in ckpt.quantized_tensor_names())
    dense_names = ckpt.dense_tensor_names()
    dense_params = sum(math.prod(ckpt.weights.shape(n)) for n in dense_names)
    dense_bytes = sum(ckpt.weights.nbytes(n) for n in dense_names)
    return {
        "path": str(ckpt.folder),
        "format": ckpt.format,
        "format_title": ckpt.title,
        "model_type": ckpt.model_type or None,
        "architecture": architecture,
        "num_layers": config.get("num_hidden_layers"),
        "hidden_size": config.get("hidden_size"),
        "num_attention_heads": config.get("num_attention_heads"),
        "num_key_value_heads": config.get("num_key_value_heads"),
        "vocab_size": config.get("vocab_size"),
        "bits": 4 if ckpt.linears else None,
        "group_size": group_sizes[0] if len(group_sizes) == 1 else (group_sizes or None),
        "zero_point": ckpt.zero_point,
        "version": ckpt.awq_config.version if ckpt.awq_config else None,
        "backend": ckpt.awq_config.backend if ckpt.awq_config else None,
        "quantized_linears": len(ckpt.linears),
        "quantized_params": quantized_params,
        "quantized_bytes": quantized_bytes,
        "dense_params": dense_params,
        "dense_bytes": dense_bytes,
        "weight_files": [p.name for p in ckpt.weights.files],
    }
