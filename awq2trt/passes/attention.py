"""``fuse_gqa``: each layer's attention with its KV cache -> one ``com.microsoft.GroupQueryAttention`` (ort).

ONNX Runtime GenAI's builder emits this op; onnxscript's ``fuse_gqa`` expects transformers' additive causal
mask and does not fire on our trace (a boolean mask applied by Where), so the pass is ours.  It anchors on
what the exporter always produces for a cached attention layer, whatever transformers version traced it:

- ``present.{i}.key = Concat(past_key_values.{i}.key, k_rope, axis=2)`` and the same for value, where
  ``k_rope = RotaryEmbedding(Transpose(Reshape(k)))`` and ``v_new = Transpose(Reshape(v))`` (``k``, ``v``
  the [batch, seq, kv_heads * head_dim] projections);
- ``MatMul(q_rope * a, repeat_kv(present_key)^T * b)`` (+ mask) -> Softmax (NaN rows zeroed) ->
  ``MatMul(·, repeat_kv(present_value))`` -> Transpose/Reshape to [batch, seq, heads * head_dim].

and rewrites it as ``GroupQueryAttention(RotaryEmbedding(q), RotaryEmbedding(k), v, past_key, past_value,
seqlens_k, total_sequence_length)`` on the 3-D projections, ``scale = a * b``, with the rotary nodes
re-emitted on [batch, seq, hidden] (``num_heads``) so no Transpose is left around attention.

What the op takes on trust, and the runtime guarantees: the mask is causal plus padding, and padding is on
the right.  ``seqlens_k`` (= valid tokens - 1 per row) and ``total_sequence_length`` (the mask's width) are
computed once from ``attention_mask``.  Sliding-window layers (config ``sliding_window``/``layer_types``) get
``local_window_size = sliding_window``, checked against transformers' masks at every position of a prompt
longer than the window (tests/test_export.py).  The past/present pair may then share one buffer of the full
context length (``past_present_share_buffer``), which is what makes the cache free of copies.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from awq2trt.ir import io_names
from awq2trt.ir.graph import MS_DOMAIN, STANDARD_DOMAINS, constant, only_consumer, producer, scalar
from awq2trt.passes.manager import PassContext

PAST = io_names.PAST_TEMPLATE
PRESENT = io_names.PRESENT_TEMPLATE
MASK_INPUT = io_names.ATTENTION_MASK
_SHAPE_OPS = frozenset({"Reshape", "Transpose", "Expand", "Slice", "Unsqueeze", "Squeeze", "Identity"})
_PERM_BNSH = [0, 2, 1, 3]


@dataclass(frozen=True)
class AttentionShape:
    num_heads: int
    kv_heads: int
    head_dim: int
    windows: tuple[int | None, ...]  # per layer: the sliding window (keys a query sees), None = full

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> AttentionShape | None:
        try:
            heads, layers = int(config["num_attention_heads"]), int(config["num_hidden_layers"])
            head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
        except (KeyError, TypeError, ValueError):
            return None
        kv_heads = int(config.get("num_key_value_heads") or heads)
        return cls(heads, kv_heads, head_dim, attention_windows(config, layers))


def attention_windows(config: Mapping[str, Any], layers: int) -> tuple[int | None, ...]:
    """Per layer, the sliding window transformers' mask applies (None: full causal), as its masks decide it."""
    window = config.get("sliding_window")
    types = config.get("layer_types")
    if isinstance(types, list) and len(types) == layers:
        return tuple(window if t == "sliding_attention" and window else None for t in types)
    if window and config.get("use_sliding_window", True):
        return (int(window),) * layers
    return (None,) * layers


@dataclass
class _Match:
    layer: int
    query: Any  # [batch, seq, heads * head_dim], before rotary
    key: Any  # [batch, seq, kv_heads * head_dim], before rotary
    value: Any
    rotary_q: Any  # the RotaryEmbedding nodes on the 4-D q and k
    rotary_k: Any
    scale: float
    output: Any  # [batch, seq, heads * head_dim]: what o_proj reads


# Attention patterns may start from ops earlier passes made (RotaryEmbedding): match ORT's domain too.
_producer = functools.partial(producer, domains=(*STANDARD_DOMAINS, MS_DOMAIN))


def _perm(node: Any) -> list[int] | None:
    attr = node.attributes.get("perm")
    return list(attr.as_ints()) if attr is not None else None


def _unheaded(value: Any) -> Any:
    """x for ``Transpose(Reshape(x), perm=[0, 2, 1, 3])`` with x of rank 3, else None."""
    transpose = _producer(value, "Transpose")
    if transpose is None or _perm(transpose) != _PERM_BNSH:
        return None
    reshape = _producer(transpose.inputs[0], "Reshape")
    if reshape is None:
        return None
    source = reshape.inputs[0]
    return source if source.shape is not None and source.shape.rank() == 3 else None


def _rotary_source(value: Any) -> tuple[Any, Any] | None:
    """(RotaryEmbedding node, its 3-D pre-reshape input) for a rotated 4-D q or k, else None."""
    node = _producer(value, "RotaryEmbedding")
    if node is None or node.domain != MS_DOMAIN or len(node.inputs) != 4:
        return None
    source = _unheaded(node.inputs[0])
    return (node, source) if source is not None else None


def _strip_scale(value: Any) -> tuple[Any, float] | None:
    """(x, s) for ``x * s`` with a scalar constant s; (value, 1.0) when there is no Mul."""
    mul = _producer(value, "Mul")
    if mul is None:
        return value, 1.0
    left, right = mul.inputs
    if (s := scalar(right)) is not None:
        return left, s
    if (s := scalar(left)) is not None:
        return right, s
    return None


def _reads_only(value: Any, source: Any, limit: int = 12) -> bool:
    """True when *value* is *source* seen through shape-only ops (repeat_kv, the K transpose)."""
    for _ in range(limit):
        if value is source:
            return True
        node = value.producer() if value is not None else None
        if node is None or node.op_type not in _SHAPE_OPS or node.domain not in ("", "ai.onnx"):
            return False
        value = node.inputs[0]
    return False


def _matmuls_reading(source: Any, limit: int = 12) -> list[Any]:
    """MatMuls that read *source* through shape-only ops or a scaling Mul, found by walking its consumers.

    Walking forward from one layer's ``present`` keeps the match per layer independent of the graph's size.
    """
    found: list[Any] = []
    frontier, seen = [source], set()
    for _ in range(limit):
        next_frontier = []
        for value in frontier:
            for node in value.consumers():
                if id(node) in seen or node.domain not in ("", "ai.onnx"):
                    continue
                seen.add(id(node))
                if node.op_type == "MatMul":
                    found.append(node)
                elif node.op_type in _SHAPE_OPS or node.op_type == "Mul":
                    next_frontier.extend(node.outputs)
        frontier = next_frontier
    return found


def _attention_output(scores_matmul: Any, present_value: Any) -> Any:
    """From the QK MatMul forward to the [batch, seq, hidden] attention output, or None if the form differs."""
    value = scores_matmul.outputs[0]
    add = only_consumer(value)
    if add is not None and add.op_type == "Add":  # the mask
        value = add.outputs[0]
        softmax = only_consumer(value)
    else:
        softmax = add
    if softmax is None or softmax.op_type != "Softmax":
        return None
    axis = softmax.attributes.get("axis")
    if axis is not None and axis.as_int() not in (-1, 3):
        return None
    probs = softmax.outputs[0]
    consumers = [use[0] for use in probs.uses()]
    where = next((n for n in consumers if n.op_type == "Where"), None)
    if where is not None:  # Where(IsNaN(p), 0, p): rows with no visible key give 0 instead of NaN
        probs = where.outputs[0]
    pv = only_consumer(probs)
    if pv is None or pv.op_type != "MatMul" or pv.inputs[0] is not probs:
        return None
    if not _reads_only(pv.inputs[1], present_value):
        return None
    value = pv.outputs[0]
    transposed = False
    for _ in range(4):  # Reshape -> Transpose(0,2,1,3) -> Reshape to rank 3
        node = only_consumer(value)
        if node is None or node.op_type not in ("Reshape", "Transpose"):
            return None
        if node.op_type == "Transpose":
            if _perm(node) != _PERM_BNSH or transposed:
                return None
            transposed = True
        value = node.outputs[0]
        if node.op_type == "Reshape" and transposed and value.shape is not None and value.shape.rank() == 3:
            return value
    return None


def _match_layer(layer: int, present_key: Any, present_value: Any) -> _Match | None:
    concat_k, concat_v = _producer(present_key, "Concat"), _producer(present_value, "Concat")
    if concat_k is None or concat_v is None:
        return None
    for concat, kind in ((concat_k, "key"), (concat_v, "value")):
        if len(concat.inputs) != 2 or concat.attributes["axis"].as_int() not in (2, -2):
            return None
        if concat.inputs[0].name != PAST.format(layer=layer, kind=kind) or not concat.inputs[0].is_graph_input():
            return None
    rotated_k = _rotary_source(concat_k.inputs[1])
    value = _unheaded(concat_v.inputs[1])
    if rotated_k is None or value is None:
        return None
    # The QK MatMul: a consumer chain of present_key ending in a MatMul whose other side is the rotated q.
    for node in _matmuls_reading(present_key):
        q_side, k_side = _strip_scale(node.inputs[0]), _strip_scale(node.inputs[1])
        if q_side is None or k_side is None or not _reads_only(k_side[0], present_key):
            continue
        rotated_q = _rotary_source(q_side[0])
        output = _attention_output(node, present_value)
        if rotated_q is None or output is None:
            return None
        return _Match(
            layer=layer,
            query=rotated_q[1],
            key=rotated_k[1],
            value=value,
            rotary_q=rotated_q[0],
            rotary_k=rotated_k[0],
            scale=q_side[1] * k_side[1],
            output=output,
        )
    return None


def _sequence_lengths(graph: Any, mask: Any, before: Any) -> tuple[Any, Any]:
    """seqlens_k = sum(mask, 1) - 1 and total_sequence_length = mask width, both int32, built once."""
    import onnx_ir as ir

    def const(name: str, array: np.ndarray) -> Any:
        node = ir.Node("", "Constant", [], attributes=[ir.AttrTensor("value", ir.tensor(array, name=name))])
        node.outputs[0].name = name
        return node

    axis = const("gqa.axis1", np.array([1], np.int64))
    one = const("gqa.one", np.array(1, np.int64))
    index = const("gqa.width_index", np.array(1, np.int64))
    total_tokens = ir.Node("", "ReduceSum", [mask, axis.outputs[0]], attributes=[ir.AttrInt64("keepdims", 0)])
    last = ir.Node("", "Sub", [total_tokens.outputs[0], one.outputs[0]])
    seqlens = ir.Node("", "Cast", [last.outputs[0]], attributes=[ir.AttrInt64("to", ir.DataType.INT32)])
    shape = ir.Node("", "Shape", [mask])
    width = ir.Node("", "Gather", [shape.outputs[0], index.outputs[0]], attributes=[ir.AttrInt64("axis", 0)])
    total = ir.Node("", "Cast", [width.outputs[0]], attributes=[ir.AttrInt64("to", ir.DataType.INT32)])
    nodes = [axis, one, index, total_tokens, last, seqlens, shape, width, total]
    graph.insert_before(before, nodes)
    seqlens.outputs[0].name, total.outputs[0].name = "gqa.seqlens_k", "gqa.total_sequence_length"
    seqlens.outputs[0].dtype = total.outputs[0].dtype = ir.DataType.INT32
    seqlens.outputs[0].shape = ir.Shape([mask.shape[0] if mask.shape is not None else "batch"])
    total.outputs[0].shape = ir.Shape([])
    return seqlens.outputs[0], total.outputs[0]


def _rotary_3d(graph: Any, rotary: Any, x: Any, heads: int) -> Any:
    """The same rotation as *rotary* (on [b, heads, s, d]), applied to x = [b, s, heads * d]."""
    import onnx_ir as ir

    attributes = [ir.AttrInt64("num_heads", heads)]
    if (interleaved := rotary.attributes.get("interleaved")) is not None:
        attributes.append(ir.AttrInt64("interleaved", interleaved.as_int()))
    node = ir.Node(MS_DOMAIN, "RotaryEmbedding", [x, *rotary.inputs[1:]], attributes=attributes, name=rotary.name)
    graph.insert_before(rotary, node)
    node.outputs[0].dtype, node.outputs[0].shape = x.dtype, x.shape
    return node.outputs[0]


def _packed_source(match: _Match, shape: AttentionShape) -> Any:
    """The fused q/k/v projection when q, k and v are the three pieces of one Split of it, else None."""
    split = _producer(match.query, "Split")
    if split is None or list(split.outputs) != [match.query, match.key, match.value]:
        return None
    axis = split.attributes.get("axis")
    sizes = constant(split.inputs[1]) if len(split.inputs) > 1 else None
    expected = [shape.num_heads * shape.head_dim, *[shape.kv_heads * shape.head_dim] * 2]
    if axis is None or axis.as_int() not in (-1, 2) or sizes is None or sizes.tolist() != expected:
        return None
    rq, rk = match.rotary_q, match.rotary_k
    if any(a is not b for a, b in zip(rq.inputs[1:], rk.inputs[1:], strict=True)):
        return None  # q and k rotated with different positions or tables
    if any(r.attributes.get("interleaved") is not None and r.attributes["interleaved"].as_int() for r in (rq, rk)):
        return None
    return split.inputs[0]


def fuse_gqa(model: Any, context: PassContext) -> int:
    import onnx_ir as ir
    import onnx_ir.passes.common as common

    shape = AttentionShape.of(context.config)
    graph = model.graph
    inputs = {v.name: v for v in graph.inputs}
    outputs = {v.name: i for i, v in enumerate(graph.outputs)}
    mask = inputs.get(MASK_INPUT)
    if shape is None or mask is None:
        return 0
    lengths = None
    count = 0
    for layer in range(len(shape.windows)):
        names = [PRESENT.format(layer=layer, kind=kind) for kind in ("key", "value")]
        if not all(n in outputs for n in names):
            continue
        present_key, present_value = (graph.outputs[outputs[n]] for n in names)
        match = _match_layer(layer, present_key, present_value)
        if match is None:
            continue
        if lengths is None:
            lengths = _sequence_lengths(graph, mask, next(iter(graph)))
        attributes = [
            ir.AttrInt64("num_heads", shape.num_heads),
            ir.AttrInt64("kv_num_heads", shape.kv_heads),
            ir.AttrFloat32("scale", match.scale),
        ]
        if (window := shape.windows[layer]) is not None:
            attributes.append(ir.AttrInt64("local_window_size", window))
        past = [inputs[PAST.format(layer=layer, kind=kind)] for kind in ("key", "value")]
        packed = _packed_source(match, shape)
        if packed is not None:
            # One input [b, s, (heads + 2 kv_heads) * d]; the op rotates q and k itself, at the graph's positions.
            position_ids, cos, sin = match.rotary_q.inputs[1:]
            qkv_inputs = [packed, None, None, *past, *lengths, cos, sin, position_ids]
            attributes.append(ir.AttrInt64("do_rotary", 1))
        else:
            q = _rotary_3d(graph, match.rotary_q, match.query, shape.num_heads)
            k = _rotary_3d(graph, match.rotary_k, match.key, shape.kv_heads)
            qkv_inputs = [q, k, match.value, *past, *lengths]
        gqa = ir.Node(
            MS_DOMAIN,
            "GroupQueryAttention",
            qkv_inputs,
            attributes=attributes,
            num_outputs=3,
            name=f"layers.{layer}.attention/GroupQueryAttention",
        )
        graph.insert_after(match.output.producer(), gqa)
        out, new_key, new_value = gqa.outputs
        out.dtype, out.shape = match.output.dtype, match.output.shape
        match.output.replace_all_uses_with(out)
        for old, new, name in ((present_key, new_key, names[0]), (present_value, new_value, names[1])):
            new.dtype, new.shape = old.dtype, old.shape
            old.name = f"{name}.unfused"
            new.name = name
            graph.outputs[outputs[name]] = new
        count += 1
    if count:
        model.opset_imports.setdefault(MS_DOMAIN, 1)
        common.RemoveUnusedNodesPass()(model)  # the mask arithmetic, repeat_kv, softmax and Concats
        common.TopologicalSortPass()(model)
    return count
