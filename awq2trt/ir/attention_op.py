"""``awq2trt::GroupQueryAttention``: ONNX Runtime's ``com.microsoft.GroupQueryAttention`` under our domain.

The same inputs, outputs and attributes; ``libawq2trt_ort`` (plugins/onnxruntime, ``src/attention_op.h``)
computes its decode step (one new token per row, past and present one shared buffer) and hands every other call
to ONNX Runtime's own kernel.  Each node names an overload whose model-local function body is the
``com.microsoft`` node itself with the node's attributes, so the graph stays valid ONNX that stock ONNX Runtime
runs without our library, to the same numbers up to fp32 rounding.  One overload per distinct attribute set (a
model with sliding-window and full layers has two), numbered in graph order.
"""

from __future__ import annotations

from typing import Any

from awq2trt.ir.graph import MS_DOMAIN

DOMAIN = "awq2trt"
OP_TYPE = "GroupQueryAttention"
DOMAIN_VERSION = 1
FORMAL_INPUTS = (
    "query",
    "key",
    "value",
    "past_key",
    "past_value",
    "seqlens_k",
    "total_sequence_length",
    "cos_cache",
    "sin_cache",
    "position_ids",
)
FORMAL_OUTPUTS = ("output", "present_key", "present_value")
# The attributes our library reads and passes on to ONNX Runtime's kernel (attention_op.cc); a node with any
# other stays com.microsoft's.
ATTRIBUTES = (
    "num_heads",
    "kv_num_heads",
    "scale",
    "do_rotary",
    "rotary_interleaved",
    "local_window_size",
    "softcap",
    "smooth_softmax",
)
OVERLOAD_PREFIX = "attributes_"


def is_ort_attention(node: Any) -> bool:
    return node.op_type == OP_TYPE and node.domain == MS_DOMAIN


def is_own_attention(node: Any) -> bool:
    return node.op_type == OP_TYPE and node.domain == DOMAIN


def own_attention_nodes(graph: Any) -> list[Any]:
    return [node for node in graph if is_own_attention(node)]


def can_take_over(node: Any) -> bool:
    """Whether our library's decode kernel would take this com.microsoft node's steps: fp32, q, k and v packed in
    one input (the kernel's layout; separate ones would always be handed over), attributes and inputs it knows."""
    import onnx_ir as ir

    query = node.inputs[0] if node.inputs else None
    key = node.inputs[1] if len(node.inputs) > 1 else None
    return (
        is_ort_attention(node)
        and query is not None
        and key is None
        and query.dtype == ir.DataType.FLOAT
        and len(node.inputs) <= len(FORMAL_INPUTS)
        and len(node.outputs) == len(FORMAL_OUTPUTS)
        and set(node.attributes) <= set(ATTRIBUTES)
    )


def _attribute_key(node: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((name, attribute.value) for name, attribute in node.attributes.items()))


def take_over(model: Any) -> int:
    """Move every com.microsoft GroupQueryAttention node of the onnx_ir *model* that ``can_take_over`` into our
    domain, each naming the overload of its attribute set; returns how many moved.  ``attach_functions`` gives
    the overloads their bodies once the graph is final."""
    overloads: dict[tuple[tuple[str, Any], ...], str] = {}
    count = 0
    for node in model.graph:
        if not can_take_over(node):
            continue
        key = _attribute_key(node)
        node.domain = DOMAIN
        node.overload = overloads.setdefault(key, f"{OVERLOAD_PREFIX}{len(overloads)}")
        count += 1
    if count:
        model.opset_imports[DOMAIN] = DOMAIN_VERSION
    return count


def attach_functions(model: Any) -> int:
    """Give each overload the *model*'s nodes name its body (one com.microsoft node with those attributes);
    returns the node count.  Nodes of one overload must share their attributes: a body with other attributes
    would compute something else, so that is an error."""
    import onnx_ir as ir

    nodes = own_attention_nodes(model.graph)
    bodies: dict[str, Any] = {}
    for node in nodes:
        first = bodies.setdefault(node.overload, node)
        if _attribute_key(first) != _attribute_key(node):
            raise ValueError(
                f"GroupQueryAttention node {node.name!r}: overload {node.overload!r} is shared with {first.name!r},"
                " whose attributes differ"
            )
    for overload, node in sorted(bodies.items()):
        body = ir.Node(
            MS_DOMAIN,
            OP_TYPE,
            [ir.Value(name=name) for name in FORMAL_INPUTS],
            attributes=[attribute for attribute in node.attributes.values()],
            outputs=[ir.Value(name=name) for name in FORMAL_OUTPUTS],
        )
        graph = ir.Graph(body.inputs, body.outputs, nodes=[body], opset_imports={MS_DOMAIN: 1})
        function = ir.Function(DOMAIN, OP_TYPE, overload, graph=graph, attributes=[])
        function.doc_string = "Reference body of awq2trt::GroupQueryAttention: ONNX Runtime's own op."
        model.functions[function.identifier()] = function
    if nodes:
        model.opset_imports[DOMAIN] = DOMAIN_VERSION
        model.opset_imports.setdefault(MS_DOMAIN, 1)
    return len(nodes)
