"""``fuse_rotary``: rotary position embedding -> ``com.microsoft.RotaryEmbedding`` (ONNX Runtime target).

Two steps.  onnxscript's ``fuse_rotary_embedding`` finds ``x * cos + rotate_half(x) * sin`` and replaces it by
an intermediate ``ai.onnxruntime._fusion::RotaryEmbedding(x, cos, sin)``.  onnxscript's own second step
(``fuse_cos_sin_cache``) expects transformers' ``inv_freq @ positions`` + Transpose form and does not match
our trace, which computes ``Cast(Unsqueeze(position_ids)) * inv_freq`` and multiplies cos and sin by the
rope ``attention_scaling`` (1.0 for default rope).  So that step is ours: it precomputes
``cos(p * inv_freq) * scaling`` and ``sin(...)`` for p in [0, max_positions) as two [max_positions, D/2]
initializers (from ``inv_freq``, a computed buffer, never a checkpoint weight) and emits
``RotaryEmbedding(x, position_ids, cos_cache, sin_cache)``.

Positions at or beyond ``max_positions`` (config ``max_position_embeddings``) are outside the cache.  Any
intermediate node our step cannot convert is inlined back into standard ops, so the graph stays valid.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from awq2trt.ir.graph import MS_DOMAIN, constant, producer, scalar, take_over
from awq2trt.passes.manager import PassContext

FUSION_DOMAIN = "ai.onnxruntime._fusion"


def _angles_source(value: Any, kind: str) -> tuple[Any, Any, float, Any] | None:
    """From a rotary cos/sin input back to (position_ids, inv_freq, scaling, target dtype or None)."""
    unsqueeze = producer(value, "Unsqueeze")
    if unsqueeze is None or (axes := constant(unsqueeze.inputs[1])) is None or axes.tolist() != [1]:
        return None
    value, dtype = unsqueeze.inputs[0], None
    if (cast := producer(value, "Cast")) is not None:
        value, dtype = cast.inputs[0], cast.attributes["to"].as_int()
    scaling = 1.0
    if (mul := producer(value, "Mul")) is not None:
        left, right = mul.inputs
        scale = scalar(right) if scalar(right) is not None else scalar(left)
        if scale is None:
            return None
        scaling, value = scale, (left if scalar(right) is not None else right)
    trig = producer(value, kind)
    concat = producer(trig.inputs[0], "Concat") if trig is not None else None
    if concat is None or len(concat.inputs) != 2 or concat.inputs[0] is not concat.inputs[1]:
        return None
    freqs = producer(concat.inputs[0], "Mul")
    if freqs is None or concat.attributes["axis"].as_int() != -1:
        return None
    for positions, inv_freq in (freqs.inputs, reversed(freqs.inputs)):
        table = constant(inv_freq)
        cast = producer(positions, "Cast")
        unsq = producer(cast.inputs[0], "Unsqueeze") if cast is not None else None
        if table is None or unsq is None or table.ndim != 1:
            continue
        ids = unsq.inputs[0]
        axes = constant(unsq.inputs[1])
        if axes is None or axes.tolist() not in ([2], [-1]) or ids.shape is None or ids.shape.rank() != 2:
            continue
        return ids, inv_freq, scaling, dtype
    return None


def _caches(graph: Any, inv_freq: Any, scaling: float, dtype: Any, rows: int, cache: dict) -> tuple[Any, Any]:
    """The [rows, D/2] cos and sin initializers (one pair per distinct frequency table and scaling)."""
    import onnx_ir as ir

    key = (id(inv_freq), scaling, dtype)
    if key not in cache:
        table = constant(inv_freq).astype(np.float32)
        # The same float32 product the traced graph computes, then cos/sin and the scaling in float32.
        angles = np.arange(rows, dtype=np.float32)[:, None] * table[None, :]
        pair = []
        for kind, fn in (("cos", np.cos), ("sin", np.sin)):
            array = (fn(angles) * np.float32(scaling)).astype(dtype)
            name = f"rotary.{kind}_cache.{len(cache)}"
            value = ir.Value(
                name=name,
                shape=ir.Shape(array.shape),
                type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                const_value=ir.tensor(array, name=name),
            )
            graph.register_initializer(value)
            pair.append(value)
        cache[key] = tuple(pair)
    return cache[key]


def _to_contrib(model: Any, max_positions: int) -> int:
    """Turn each intermediate RotaryEmbedding whose cos/sin come from position_ids into the contrib op."""
    import onnx_ir as ir

    graph = model.graph
    caches: dict = {}
    count = 0
    for node in list(graph):
        if node.domain != FUSION_DOMAIN or node.op_type != "RotaryEmbedding" or len(node.inputs) != 3:
            continue
        x, cos, sin = node.inputs
        cos_src, sin_src = _angles_source(cos, "Cos"), _angles_source(sin, "Sin")
        if cos_src is None or sin_src is None or cos_src[0] is not sin_src[0] or cos_src[1] is not sin_src[1]:
            continue
        if cos_src[2] != sin_src[2] or x.dtype is None:
            continue
        ids, inv_freq, scaling, _ = cos_src
        cos_cache, sin_cache = _caches(graph, inv_freq, scaling, x.dtype.numpy(), max_positions, caches)
        attributes = [ir.AttrInt64("interleaved", 0)]
        if (heads := node.attributes.get("num_heads")) is not None:
            attributes.append(ir.AttrInt64("num_heads", heads.as_int()))
        fused = ir.Node(
            MS_DOMAIN, "RotaryEmbedding", [x, ids, cos_cache, sin_cache], attributes=attributes, name=node.name
        )
        graph.insert_before(node, fused)
        out, new = node.outputs[0], fused.outputs[0]
        new.type, new.shape = out.type, out.shape
        take_over(out, new, suffix="unfused", graph_outputs=True)  # a rotation may be a graph output
        graph.remove(node, safe=True)
        count += 1
    return count


def _inline_leftovers(model: Any) -> None:
    """Expand intermediate fusion nodes that were not converted back into their standard-op bodies.

    Only the fusion domain's functions are inlined: other functions (the Int4MatMul bodies, when the
    passes run on a graph that already carries them) are set aside meanwhile and put back.
    """
    import onnx_ir.passes.common as common

    others = {k: f for k, f in model.functions.items() if k[0] != FUSION_DOMAIN}
    if any(n.domain == FUSION_DOMAIN for n in model.graph):
        for key in others:
            del model.functions[key]
        try:
            common.InlinePass()(model)
        finally:
            model.functions.update(others)
    for key in [k for k in model.functions if k[0] == FUSION_DOMAIN]:
        del model.functions[key]
    model.opset_imports.pop(FUSION_DOMAIN, None)


def fuse_rotary(model: Any, context: PassContext) -> int:
    import onnx_ir.passes.common as common
    from onnxscript.rewriter.ort_fusions.rotary_embedding import fuse_rotary_embedding

    if not context.max_positions:
        return 0  # no bound for the cos/sin caches
    if int(fuse_rotary_embedding(model)) == 0:
        return 0
    count = _to_contrib(model, context.max_positions)
    _inline_leftovers(model)
    if count:
        model.opset_imports.setdefault(MS_DOMAIN, 1)
        common.RemoveUnusedNodesPass()(model)  # the per-step cos/sin arithmetic is now dead
    return count
