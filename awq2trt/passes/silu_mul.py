"""``fuse_silu_mul``: a fused gate/up Int4MatMul, its Split and the SwiGLU that follows become one node.

After ``fuse_gate_up`` a Llama-family MLP reads::

    P = Int4MatMul(x)            # [.., 2I]: the gate's I columns, then the up's I
    gate, up = Split(P)          # axis -1, two halves
    y = Mul(Mul(gate, Sigmoid(gate)), up)

This pass gives that Int4MatMul the ``epilogue = "silu_mul"`` attribute (`awq2trt.ir.int4_op`): its output is y
itself, [.., I], and the Split, the Sigmoid and both Muls go (SmolLM2: 350 graph nodes become 230).  Only
``ort-kernels`` runs it, for its library's kernel computes the epilogue on each task's gate and up rows while
they are in cache.  Measured on SmolLM2 (Zen 4), decode moved by 1.01x and a batched 8-row step within noise:
ONNX Runtime already fuses the Sigmoid and its Mul, and the rest is little work.  The graph is smaller and the
numbers are the same; ``--disable-passes fuse_silu_mul`` keeps the four nodes (the CUDA provider's kernel needs
that).

The half width I must be a multiple of 16 (`awq2trt.cpu_layout.TILE_N`), so that the up half starts on a tile of
the tiles16 layout; every Llama-family MLP is (SmolLM2 1536, Llama-7B 11008).  Anything else in the pattern (a
value read elsewhere or a graph output, uneven halves, another activation) leaves the nodes as they are.
"""

from __future__ import annotations

from typing import Any

from awq2trt.cpu_layout import TILE_N
from awq2trt.ir import int4_op
from awq2trt.ir.graph import constant, only_consumer, take_over
from awq2trt.passes.manager import PassContext


def _is(node: Any, op_type: str) -> bool:
    return node is not None and node.op_type == op_type and node.domain in ("", "ai.onnx")


def _halves(split: Any, columns: int) -> bool:
    """Whether the Split cuts the last axis of a [.., columns] value into two equal halves."""
    if len(split.outputs) != 2 or columns % 2:
        return False
    axis = split.attributes.get("axis")
    if axis is not None and axis.as_int() != -1:
        rank = split.inputs[0].shape.rank() if split.inputs[0].shape is not None else None
        if rank is None or axis.as_int() != rank - 1:
            return False
    sizes = constant(split.inputs[1]) if len(split.inputs) > 1 and split.inputs[1] is not None else None
    return sizes is None or [int(s) for s in sizes.reshape(-1)] == [columns // 2] * 2


def _silu_of(gate: Any) -> Any:
    """The Mul computing gate * Sigmoid(gate) when those two nodes are all that read *gate*, else None."""
    uses = [use[0] for use in gate.uses()]
    if gate.is_graph_output() or len(uses) != 2:
        return None
    sigmoid = next((n for n in uses if _is(n, "Sigmoid")), None)
    mul = next((n for n in uses if _is(n, "Mul")), None)
    if sigmoid is None or mul is None or only_consumer(sigmoid.outputs[0]) is not mul:
        return None
    return mul if {id(v) for v in mul.inputs} == {id(gate), id(sigmoid.outputs[0])} else None


def match_swiglu(node: Any) -> list[Any] | None:
    """[Split, Sigmoid, Mul (silu), Mul (silu * up)] when *node*'s output feeds exactly that SwiGLU, else None."""
    if int4_op.node_epilogue(node) != int4_op.EPILOGUE_NONE:
        return None
    columns = node.attributes["N"].as_int()
    split = only_consumer(node.outputs[0])
    if not _is(split, "Split") or split.inputs[0] is not node.outputs[0] or not _halves(split, columns):
        return None
    if (columns // 2) % TILE_N:
        return None
    gate, up = split.outputs
    silu = _silu_of(gate)
    if silu is None:
        return None
    product = only_consumer(silu.outputs[0])
    if not _is(product, "Mul") or only_consumer(up) is not product:
        return None
    if {id(v) for v in product.inputs} != {id(silu.outputs[0]), id(up)}:
        return None
    sigmoid = next(use[0] for use in gate.uses() if _is(use[0], "Sigmoid"))
    return [split, sigmoid, silu, product]


def fuse_silu_mul(model: Any, context: PassContext) -> int:
    """Give every fused gate/up Int4MatMul followed by a SwiGLU the silu_mul epilogue; returns how many."""
    import onnx_ir as ir

    graph = model.graph
    count = 0
    for node in int4_op.int4_nodes(graph):
        pattern = match_swiglu(node)
        if pattern is None:
            continue
        result = pattern[-1].outputs[0]
        node.attributes[int4_op.EPILOGUE] = ir.AttrString(int4_op.EPILOGUE, int4_op.EPILOGUE_SILU_MUL)
        node.overload = int4_op.node_overload(node)
        out = node.outputs[0]
        out.type = result.type
        if out.shape is not None:
            out.shape = ir.Shape([*list(out.shape)[:-1], node.attributes["N"].as_int() // 2])
        take_over(result, out, suffix="unfused")  # the SwiGLU's output name (per-layer profiles read it)
        graph.remove(pattern, safe=True)
        count += 1
    return count
