"""``own_gqa``: every fp32 ``com.microsoft.GroupQueryAttention`` with packed q/k/v becomes
``awq2trt::GroupQueryAttention`` (`awq2trt.ir.attention_op`), whose decode step our kernel library computes.

Only ``ort-kernels`` runs it, after ``fuse_gqa``.  The node keeps its inputs, outputs and attributes; the library
computes a decode step (one new token per row on the shared KV buffer) itself and hands prefill and every other
call to ONNX Runtime's kernel.  Why: ONNX Runtime's CPU kernel takes about twice our time per node and reads the
cache at about half the memory's speed; ours reads each key and value once per group of query heads
(plugins/onnxruntime/src/attention_op.h).  ``--disable-passes own_gqa`` keeps ONNX Runtime's op.
"""

from __future__ import annotations

from typing import Any

from awq2trt.ir import attention_op
from awq2trt.passes.manager import PassContext


def own_gqa(model: Any, context: PassContext) -> int:
    """Move each GroupQueryAttention node our library's op takes into our domain; returns how many."""
    return attention_op.take_over(model)
