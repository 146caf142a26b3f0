"""``cleanup``: drop nodes and initializers the fusions left dead, and keep the nodes topologically sorted.

Constant folding and common-subexpression elimination already ran before the passes (``export._clean_up``);
initializer deduplication is left out on purpose: it hashes every weight, which would read them all.
"""

from __future__ import annotations

from typing import Any

from awq2trt.passes.manager import PassContext


def cleanup(model: Any, context: PassContext) -> int:
    import onnx_ir.passes.common as common

    before = sum(1 for _ in model.graph)
    common.RemoveUnusedNodesPass()(model)
    common.TopologicalSortPass()(model)
    return before - sum(1 for _ in model.graph)
