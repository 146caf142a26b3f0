"""Fuzz each weight format's decoder: *data* is one byte choosing a format, then ``model.safetensors``.

The byte picks the quantization_config written beside the weights (AutoAWQ GEMM, GEMV, compressed-tensors,
llm-awq); the harness opens the checkpoint and decodes every quantized Linear and dense tensor, so the
format detection, the layouts and the decoders all see the fuzzed tensors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz._harness import fresh_folder, fuzz, instrumented, our_error_only

with instrumented(__name__):
    from awq2trt.checkpoint import open_checkpoint

NAME = "weights"
GROUP = 32
_CT_WEIGHTS = {"num_bits": 4, "type": "int", "strategy": "group", "group_size": GROUP, "symmetric": False}
QUANT_CONFIGS: tuple[dict, ...] = (
    {"quant_method": "awq", "bits": 4, "group_size": GROUP, "zero_point": True, "version": "gemm"},
    {"quant_method": "awq", "bits": 4, "group_size": GROUP, "zero_point": True, "version": "gemv"},
    {
        "quant_method": "compressed-tensors",
        "format": "pack-quantized",
        "quantization_status": "compressed",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": _CT_WEIGHTS, "format": "pack-quantized"}},
        "ignore": ["lm_head"],
    },
    {"quant_method": "awq", "backend": "llm-awq", "bits": 4, "group_size": GROUP, "zero_point": True},
)
CONFIGS = tuple(json.dumps({"model_type": "llama", "quantization_config": qc}) for qc in QUANT_CONFIGS)


def one_input(data: bytes) -> None:
    if not data:
        return
    folder = fresh_folder(NAME)
    (folder / "config.json").write_text(CONFIGS[data[0] % len(CONFIGS)])
    (folder / "model.safetensors").write_bytes(data[1:])
    with our_error_only():
        ckpt = open_checkpoint(folder)
        for name in ckpt.linears:
            qw = ckpt.quant_weight(name)
            layout = ckpt.linears[name]
            assert qw.qweight.shape == (layout.out_features, layout.in_features), name
        for name in ckpt.dense_tensor_names():
            ckpt.tensor(name)


if __name__ == "__main__":
    fuzz(one_input, NAME)
