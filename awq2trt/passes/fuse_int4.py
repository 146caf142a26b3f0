"""``fuse_qkv`` and ``fuse_gate_up``: Int4MatMuls that read one activation become one, plus a Split.

They run on the portable ``awq2trt::Int4MatMul`` nodes, before any lowering, so every backend gets the fused
form (the ort lowering turns the fused node into one MatMulNBits; TensorRT into one dequantize + GEMM).

Which nodes fuse is decided by the fusion mapping (module leaf names, see ``mappings``): for each parent
module (``...layers.3.self_attn``) the members of a group (``q_proj, k_proj, v_proj``) must all be present,
read the same input, agree on K, block size, bits, scale dtype and the presence of zero points and bias, and
own their weights (constants used by no other node).  Otherwise the group is left as it is.

The fused weights are the members' tensors concatenated along N (codes [N, K/2], scales and zero points
[N, K/G], bias [N]).  Each output column of an int4 matmul depends only on its own row of codes, scales and
zero points, so the Split gives back exactly the members' outputs.  Concatenation is lazy: it happens when
the model is saved, reading the members' lazy tensors then, so no weight is decoded here.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from awq2trt.ir import int4_op
from awq2trt.ir.graph import take_over
from awq2trt.passes.manager import PassContext
from awq2trt.passes.mappings import GATE_UP, QKV

LINEARS_META = "awq2trt.linears"  # how many Linears an Int4MatMul computes (1 unless fused)


def linears_computed(model: Any) -> int:
    """How many quantized Linears the graph's Int4MatMul nodes compute, counting each fused member."""
    return sum(int(n.meta.get(LINEARS_META, 1)) for n in int4_op.int4_nodes(model.graph))


def _inputs(node: Any) -> list[Any]:
    """A, B, scales, zero_points, bias (absent ones None)."""
    return (list(node.inputs) + [None] * 5)[:5]


def _module_parts(node: Any) -> tuple[str, str] | None:
    """(parent path, leaf) of the Linear whose codes node reads, from the initializer's name."""
    codes = node.inputs[1]
    if codes is None or not codes.name or "." not in codes.name:
        return None
    module = codes.name.rpartition(".")[0]
    parent, _, leaf = module.rpartition(".")
    return (parent, leaf) if parent and leaf else None


def _signature(node: Any) -> tuple[Any, ...]:
    _, _, scales, zeros, bias = _inputs(node)
    attrs = node.attributes
    return (
        attrs["K"].as_int(),
        attrs["block_size"].as_int(),
        attrs.get("bits").as_int() if attrs.get("bits") is not None else 4,
        scales.dtype,
        zeros is not None,
        bias is not None,
        node.overload,
    )


def _owns_weights(node: Any) -> bool:
    for value in _inputs(node)[1:]:
        if value is None:
            continue
        if not value.is_initializer() or value.const_value is None or len(value.uses()) != 1:
            return False
    return not node.outputs[0].is_graph_output()


def _lazy_concat(name: str, sources: list[Any]) -> Any:
    """A new initializer: *sources* concatenated along axis 0 when (and each time) the data is read."""
    import onnx_ir as ir

    tensors = [v.const_value for v in sources]
    dtype = tensors[0].dtype
    rest = tuple(int(d) for d in tensors[0].shape[1:])
    shape = (sum(int(t.shape[0]) for t in tensors), *rest)

    def materialize() -> Any:
        return ir.Tensor(np.concatenate([t.numpy() for t in tensors], axis=0), name=name)

    lazy = ir.LazyTensor(materialize, dtype, ir.Shape(shape), name=name)
    return ir.Value(name=name, shape=ir.Shape(shape), type=ir.TensorType(dtype), const_value=lazy)


def _fuse(graph: Any, members: list[Any], fused_module: str) -> None:
    """Replace *members* (same input, compatible, in output order) by one Int4MatMul and a Split."""
    import onnx_ir as ir

    first = members[0]
    columns = [n.attributes["N"].as_int() for n in members]
    weights = []
    for slot in range(1, 5):
        sources = [_inputs(n)[slot] for n in members]
        if sources[0] is None:
            weights.append(None)
            continue
        leaf = sources[0].name.rpartition(".")[2]  # qweight / scales / zeros / bias
        value = _lazy_concat(f"{fused_module}.{leaf}", sources)
        graph.register_initializer(value)
        weights.append(value)
    while weights and weights[-1] is None:  # trailing optional inputs are omitted, as the exporter does
        weights.pop()
    attributes = {name: attr for name, attr in first.attributes.items()}
    attributes["N"] = ir.AttrInt64("N", sum(columns))
    fused = ir.Node(
        int4_op.DOMAIN,
        int4_op.OP_TYPE,
        [first.inputs[0], *weights],
        attributes=list(attributes.values()),
        overload=first.overload,
        name=f"{fused_module}/Int4MatMul",
    )
    fused.meta[LINEARS_META] = sum(int(n.meta.get(LINEARS_META, 1)) for n in members)
    out = fused.outputs[0]
    out.name = f"{fused_module}.out"
    out.type = first.outputs[0].type
    if first.outputs[0].shape is not None:
        out.shape = ir.Shape([*list(first.outputs[0].shape)[:-1], sum(columns)])
    sizes = ir.Value(
        name=f"{fused_module}.split_sizes",
        shape=ir.Shape([len(columns)]),
        type=ir.TensorType(ir.DataType.INT64),
        const_value=ir.tensor(np.array(columns, np.int64), name=f"{fused_module}.split_sizes"),
    )
    graph.register_initializer(sizes)
    split = ir.Node(
        "",
        "Split",
        [out, sizes],
        attributes=[ir.AttrInt64("axis", -1)],
        num_outputs=len(members),
        name=f"{fused_module}/Split",
    )
    order = {id(n): i for i, n in enumerate(graph)}
    graph.insert_before(min(members, key=lambda n: order[id(n)]), [fused, split])
    old_weights = [v for n in members for v in _inputs(n)[1:] if v is not None]
    for node, new in zip(members, split.outputs, strict=True):
        old = node.outputs[0]
        new.type, new.shape = old.type, old.shape
        take_over(old, new, suffix="unfused")
    graph.remove(members, safe=True)
    for value in old_weights:
        graph.initializers.pop(value.name)


def fuse_groups(model: Any, group: str, members: tuple[str, ...]) -> int:
    """Fuse every complete, compatible set of *members* under one parent module; returns how many."""
    if len(members) < 2:
        return 0
    graph = model.graph
    by_site: dict[tuple[int, str], dict[str, Any]] = defaultdict(dict)
    for node in int4_op.int4_nodes(graph):
        parts = _module_parts(node)
        if parts is not None and parts[1] in members and node.inputs[0] is not None:
            by_site[(id(node.inputs[0]), parts[0])][parts[1]] = node
    count = 0
    for found in by_site.values():
        if set(found) != set(members):
            continue
        nodes = [found[leaf] for leaf in members]
        if len({_signature(n) for n in nodes}) != 1 or not all(_owns_weights(n) for n in nodes):
            continue
        codes_name = nodes[0].inputs[1].name
        prefix = codes_name.rpartition(".")[0].rpartition(".")[0]  # the parent path as the graph spells it
        _fuse(graph, nodes, f"{prefix}.{group}")
        count += 1
    return count


def fuse_qkv(model: Any, context: PassContext) -> int:
    if context.mapping is None:
        return 0
    return fuse_groups(model, QKV, context.mapping.members(QKV))


def fuse_gate_up(model: Any, context: PassContext) -> int:
    if context.mapping is None:
        return 0
    return fuse_groups(model, GATE_UP, context.mapping.members(GATE_UP))
