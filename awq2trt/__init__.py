"""awq2trt: compile AWQ int4 language models into ONNX, ONNX Runtime, TensorRT and Triton artifacts.

The top-level names are imported on first use, so that ``import awq2trt.runtime`` (what a served model
needs) does not drag in the compiler side (checkpoint formats, torch, transformers).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AwqConfig": "awq2trt.checkpoint.awq_config",
    "Awq2TrtError": "awq2trt.errors",
    "Checkpoint": "awq2trt.checkpoint.reader",
    "QuantWeight": "awq2trt.quant_weight",
    "open_checkpoint": "awq2trt.checkpoint.reader",
}

__all__ = ["Awq2TrtError", "AwqConfig", "Checkpoint", "QuantWeight", "__version__", "open_checkpoint"]

if TYPE_CHECKING:
    from awq2trt.checkpoint.awq_config import AwqConfig
    from awq2trt.checkpoint.reader import Checkpoint, open_checkpoint
    from awq2trt.errors import Awq2TrtError
    from awq2trt.quant_weight import QuantWeight


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'awq2trt' has no attribute {name!r}")
