"""``num_logits_to_keep``: a graph input that limits the output head to the last k positions (0 = all).

Generation needs the logits of the last prompt position only, but a traced decoder computes the head for
every position: for a 512-token prompt on SmolLM2 that is 512 x 49152 x 576 multiply-adds (about 7 % of the
prefill) and a 100 MB logits tensor.  Our runtime feeds 1 during prefill and 0 otherwise.

It is a plain (required) int64 [1] input, the form transformers' own ONNX exports use, because the forms that
make it optional each cost a caller something (measured with onnxruntime 1.32 and onnxruntime-genai 0.18):

* an initializer doubling as the input's default: ONNX Runtime warns on every session at its default log
  level that the initializer "appears in graph inputs and will not be treated as constant" (users' own
  sessions included);
* an ``optional(tensor(int64))`` input read through ``OptionalHasElement`` / ``If`` / ``OptionalGetElement``:
  ONNX Runtime is silent, but ONNX Runtime GenAI crashes loading the folder (it reads every input as a tensor);
* the plain input: ONNX Runtime is silent and GenAI feeds it (0) by itself, since it knows the name from
  transformers' exports; callers driving the session by hand feed ``np.zeros(1, np.int64)`` for every position.
"""

from __future__ import annotations

from typing import Any

from awq2trt.ir.graph import int64_initializer, logits_matmul

INPUT_NAME = "num_logits_to_keep"
KEPT_DIM = "kept_seq"


def add_logits_to_keep(model: Any) -> bool:
    """Insert ``hidden[:, -k:]`` (k > 0) before the logits MatMul; False when the graph has no such MatMul."""
    import onnx_ir as ir

    graph = model.graph
    head = logits_matmul(graph)
    if head is None:
        return False
    logits = head.outputs[0]
    keep = ir.Value(name=INPUT_NAME, shape=ir.Shape([1]), type=ir.TensorType(ir.DataType.INT64))
    graph.inputs.append(keep)

    zero, end, axis = (
        int64_initializer(graph, "logits_to_keep.zero", [0]),
        int64_initializer(graph, "logits_to_keep.end", [2**62]),
        int64_initializer(graph, "logits_to_keep.axis", [1]),
    )
    # start = -k when k > 0, else 0 (everything): Slice then keeps positions [start, end) along the sequence.
    nodes = [
        ir.node("Greater", [keep, zero], name="logits_to_keep/Greater"),
        ir.node("Neg", [keep], name="logits_to_keep/Neg"),
    ]
    nodes.append(ir.node("Where", [nodes[0].outputs[0], nodes[1].outputs[0], zero], name="logits_to_keep/Where"))
    hidden = head.inputs[0]
    nodes.append(ir.node("Slice", [hidden, nodes[2].outputs[0], end, axis], name="logits_to_keep/Slice"))
    for node in nodes:
        graph.insert_before(head, node)
    sliced = nodes[-1].outputs[0]
    sliced.type = hidden.type
    if hidden.shape is not None and len(hidden.shape) == 3:
        sliced.shape = ir.Shape([hidden.shape[0], KEPT_DIM, hidden.shape[2]])
    head.replace_input_with(0, sliced)
    if logits.shape is not None and len(logits.shape) == 3:
        logits.shape = ir.Shape([logits.shape[0], KEPT_DIM, logits.shape[2]])
    return True
