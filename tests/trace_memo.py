"""Trace each model structure once per test session: the test suite's export cache.

Tracing (torch.onnx.export on the ``meta`` device) is most of an export's time, and the tests export the same
few fixtures to every target and dtype.  What a trace produces depends only on the traced module's structure
(its class, config, parameter and buffer names, shapes and dtypes, the quantized layers' settings), the KV
layout and the dtype, never on weight values (everything is on ``meta``), so `memoized_trace` keys on exactly
those and hands every caller its own copy of the graph (the passes and lowerings edit it in place).

The copy goes through onnx_ir's serializer.  It drops initializers that hold no tensor, so each initializer gets
a placeholder external tensor for the trip; the export overwrites every initializer's value right after the
trace (`_fill_initializers`), so the placeholder is never read.  The copy also continues the original graph's
name counters (a private onnx_ir attribute), which name the nodes the passes add.  tests/test_trace_memo.py
checks that an export through the memo writes the same graph as one without it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

ENV_OFF = "AWQ2TRT_TEST_NO_TRACE_MEMO"  # set to 1 to trace every export afresh


def structure_key(model: Any, layout: Any, dtype: Any) -> str:
    """Everything a meta-device trace depends on, as one string."""
    config = model.config.to_json_string(use_diff=False) if hasattr(model, "config") else ""
    tensors = [
        (name, tuple(tensor.shape), str(tensor.dtype))
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers())
    ]
    # repr(model) names every module with its extra_repr: the quantized layers' group size, bias, zero point.
    return json.dumps([type(model).__qualname__, config, repr(model), tensors, repr(layout), str(dtype)])


def copy_traced(model: Any) -> Any:
    """An independent copy of a traced onnx_ir model (initializers keep names, shapes and dtypes, no data)."""
    import onnx_ir as ir

    initializers = list(model.graph.initializers.values())
    saved = [value.const_value for value in initializers]
    try:
        for value in initializers:
            value.const_value = ir.ExternalTensor(
                "never-read", offset=0, length=0, dtype=value.dtype, shape=value.shape, name=value.name,
                base_dir="/nonexistent",
            )  # fmt: skip
        copy = ir.serde.deserialize_model(ir.serde.serialize_model(model))
    finally:
        for value, const_value in zip(initializers, saved, strict=True):
            value.const_value = const_value
    # Nodes the passes add unnamed are named from the graph's counters: the copy continues the original's, so
    # its names (and the saved graph's bytes) are those of the fresh trace.
    original_names, copied_names = model.graph._name_authority, copy.graph._name_authority
    copied_names._value_counter = original_names._value_counter
    copied_names._node_counter = original_names._node_counter
    return copy


def memoized_trace(trace: Callable[[Any, Any, Any], Any]) -> Callable[[Any, Any, Any], Any]:
    """*trace* (awq2trt.frontend.export._trace) called once per structure; every call gets a fresh copy."""
    traced: dict[str, Any] = {}

    def wrapper(model: Any, layout: Any, dtype: Any) -> Any:
        key = structure_key(model, layout, dtype)
        if key not in traced:
            traced[key] = trace(model, layout, dtype)
        return copy_traced(traced[key])

    wrapper.traced = traced  # type: ignore[attr-defined]  # tests read how many structures were traced
    wrapper.__wrapped__ = trace  # type: ignore[attr-defined]
    return wrapper
