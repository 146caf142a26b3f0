"""The ``ir`` target: the portable graph, each ``awq2trt::Int4MatMul`` carrying its standard-op function body.

Stock ONNX Runtime (or any runtime that expands model-local functions) executes it as it is; it is the
numerical reference every other target is compared with.
"""

from __future__ import annotations

from typing import Any, ClassVar

from awq2trt.ir.int4_op import attach_functions
from awq2trt.targets.base import ExportOptions, Target


class IrTarget(Target):
    name = "ir"
    description = "portable ONNX: awq2trt::Int4MatMul nodes with function bodies (the reference graph)"
    passes: ClassVar[tuple[str, ...]] = ("fuse_qkv", "fuse_gate_up", "cleanup")

    def lower(self, model: Any, options: ExportOptions) -> int:
        return attach_functions(model)
