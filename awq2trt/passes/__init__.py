"""Graph passes over the traced ONNX graph, run after cleanup and before a target's lowering.

Entry point: ``run_passes(model, target, enabled=None, disabled=(), config=..., mapping_file=...)``; the list
and order of passes is ``DEFAULT_PASSES`` (``DEFAULT_PASSES.describe()`` prints it).  Where each fusion comes
from: the Int4MatMul fusions and the rotary cos/sin caches are awq2trt's own; the norm fusions and the rotary
pattern match are onnxscript's ``rewriter.ort_fusions`` (pinned in constraints.txt).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from awq2trt.ir.ort_schemas import register_ort_schemas
from awq2trt.passes.fuse_int4 import linears_computed
from awq2trt.passes.manager import Pass, PassContext, PassManager, counts_line, parse_pass_list
from awq2trt.passes.mappings import BUILTIN, FusionMapping, resolve_mapping
from awq2trt.passes.registry import DEFAULT_PASSES

__all__ = [
    "BUILTIN",
    "DEFAULT_PASSES",
    "FusionMapping",
    "Pass",
    "PassContext",
    "PassManager",
    "counts_line",
    "linears_computed",
    "parse_pass_list",
    "register_ort_schemas",
    "resolve_mapping",
    "run_passes",
]


INT4_FUSIONS = frozenset({"fuse_qkv", "fuse_gate_up"})  # the passes that need a fusion mapping


def run_passes(
    model: Any,
    target: str,
    enabled: Sequence[str] | None = None,
    disabled: Sequence[str] = (),
    *,
    config: Mapping[str, Any] | None = None,
    mapping_file: str | Path | None = None,
    mapping: FusionMapping | None = None,
    manager: PassManager | None = None,
    node_counts: dict[str, int] | None = None,
) -> dict[str, int]:
    """Run the passes for *target* on the onnx_ir *model* in place; returns rewrites per pass, in order.

    *config* is the checkpoint's config.json: it picks the fusion mapping (see ``mappings``) unless
    *mapping* is given, and bounds the rotary caches (``max_position_embeddings``).  *node_counts*, if given,
    receives the graph's node count before the passes (``"input"``) and after each pass.
    """
    manager = manager or DEFAULT_PASSES
    config = config or {}
    selected = {p.name for p in manager.select(target, enabled, disabled)}
    if mapping is None and selected & INT4_FUSIONS:
        mapping = resolve_mapping(config, mapping_file)
    context = PassContext(
        target=target, mapping=mapping, max_positions=config.get("max_position_embeddings"), config=config
    )
    counts = manager.run(model, context, enabled, disabled)
    if node_counts is not None:
        node_counts.update(context.nodes)
    return counts
