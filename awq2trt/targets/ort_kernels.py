"""The ``ort-kernels`` target: the ``ort`` graph, but every int4 matmul runs in our own kernel library.

Everything but the int4 lowering is the ``ort`` target's (same passes: fused norms, rotary,
GroupQueryAttention; the same ``--lm-head`` choices, whose quantized head stays a MatMulNBits).  Each
``awq2trt::Int4MatMul`` node stays as it is, with its function body attached so the graph is still valid ONNX
that stock ONNX Runtime could run, and gains an ``accuracy_level`` attribute that the library's kernel reads.
ONNX Runtime prefers a registered kernel to a node's model-local function body, so a session that registered
``libawq2trt_ort`` (plugins/onnxruntime) runs our kernel for every node; the sidecar's ``kernels`` field tells
runtimes to register it (``awq2trt.runtime.kernels``).

No ``genai_config.json``: ONNX Runtime GenAI would not load our library, and it would silently run the slow
function bodies instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from awq2trt.errors import Awq2TrtError
from awq2trt.ir import int4_op
from awq2trt.sidecar import ORT_KERNELS, KernelsSpec, Sidecar
from awq2trt.targets.base import ExportOptions
from awq2trt.targets.lm_head import quantize_lm_head
from awq2trt.targets.ort import OrtTarget

# The levels the library's kernel implements (it refuses any other): 0 = fp32 activations, exact;
# 4 = int8 activations per block, as MatMulNBits' level 4.
KERNEL_ACCURACY_LEVELS = (0, 4)


def mark_accuracy_level(model: Any, accuracy_level: int) -> int:
    """Set ``accuracy_level`` on every Int4MatMul of the onnx_ir *model*; returns how many nodes there are."""
    import onnx_ir as ir

    nodes = int4_op.int4_nodes(model.graph)
    for node in nodes:
        node.attributes[int4_op.ACCURACY_LEVEL] = ir.AttrInt64(int4_op.ACCURACY_LEVEL, accuracy_level)
    return len(nodes)


class OrtKernelsTarget(OrtTarget):
    """ONNX Runtime with awq2trt's own int4 kernels (libawq2trt_ort) and ORT's contrib LLM ops."""

    name = "ort-kernels"
    description = (
        "ONNX Runtime with awq2trt's int4 kernels (libawq2trt_ort custom ops) and ORT's contrib LLM ops;"
        " needs the library at run time"
    )

    def check_options(self, options: ExportOptions) -> None:
        super().check_options(options)  # the ort target's checks (--lm-head choices, levels 0..4), then ours
        if options.accuracy_level not in KERNEL_ACCURACY_LEVELS:
            raise Awq2TrtError(
                "--accuracy-level",
                expected="0 (exact) or 4 (int8 activations) with --target ort-kernels",
                got=options.accuracy_level,
            )

    def lower(self, model: Any, options: ExportOptions) -> int:
        count = mark_accuracy_level(model, options.accuracy_level)
        int4_op.attach_functions(model)  # the bodies keep the graph valid ONNX (and a reference)
        quantize_lm_head(model, options.lm_head, accuracy_level=options.accuracy_level)
        return count

    def kernels(self) -> KernelsSpec:
        return ORT_KERNELS

    def write_extra_files(self, folder: Path, sidecar: Sidecar) -> list[str]:
        return []
