"""``awq2trt::Int4MatMul``: its ONNX schema, its function bodies, and how graphs find and complete its nodes.

Node inputs: A (activations [..., K]), B (codes uint8 [N, ceil(K/2)], even k in the low nibble), scales
[N, K/G] (A's dtype), zero_points (uint8 codes [N, K/G]; optional, absent = 8 = symmetric), bias ([N];
optional).  Attributes: K, N, bits (4), block_size (G), accuracy_level (optional, default 0: how a compiled
kernel may compute; the ``ort-kernels`` target sets it for our library, 0 = fp32 activations, 4 = int8
activations per block; the function body is always exact and ignores it).  Output Y [..., N] = A @ W.T + bias with
W[n, k] = (q[n, k] - zero_points[n, k // G]) * scales[n, k // G].

Each node carries a model-local function body made of standard ops, so stock ONNX Runtime runs the
un-lowered graph and it serves as the reference for every target.  ONNX Runtime refuses a body that reads
an omitted optional input, so there is one body per input signature, told apart by the function
``overload`` field (ONNX IR 10): "" (no zero points, no bias), "zp", "bias", "zp_bias".  Every overload
declares all five formal inputs and ignores the ones its signature lacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # onnx is imported where a schema or body is built: target tables load without it
    import onnx

DOMAIN = "awq2trt"
OP_TYPE = "Int4MatMul"
DOMAIN_VERSION = 1
BODY_OPSET = 21
FORMAL_INPUTS = ("A", "B", "scales", "zero_points", "bias")
ATTRIBUTES = ("K", "N", "bits", "block_size")  # what the function bodies declare
# Read by compiled kernels only (plugins/onnxruntime); the bodies, the exact reference, never reference it.
ACCURACY_LEVEL = "accuracy_level"


def overload_name(has_zero_points: bool, has_bias: bool) -> str:
    return {(False, False): "", (True, False): "zp", (False, True): "bias", (True, True): "zp_bias"}[
        (has_zero_points, has_bias)
    ]


def _infer_output(ctx: Any) -> None:
    """Y: A's element type, shape A[..., :-1] + [N] (so strict shape inference can type what follows)."""
    import onnx

    a = ctx.get_input_type(0)
    if a is None or not a.HasField("tensor_type"):
        return
    y = onnx.TypeProto()
    y.tensor_type.elem_type = a.tensor_type.elem_type
    if a.tensor_type.HasField("shape") and len(a.tensor_type.shape.dim) >= 1:
        for dim in list(a.tensor_type.shape.dim)[:-1]:
            y.tensor_type.shape.dim.add().CopyFrom(dim)
        y.tensor_type.shape.dim.add().dim_value = ctx.get_attribute("N").i
    ctx.set_output_type(0, y)


def register_schema() -> None:
    """Make the op known to onnx (and so to onnxscript and the exporter), with shape inference; idempotent."""
    import onnx
    from onnx import helper

    if onnx.defs.has(OP_TYPE, DOMAIN):
        return
    schema = onnx.defs.OpSchema
    formal = schema.FormalParameter
    optional = schema.FormalParameterOption.Optional
    op_schema = schema(
        OP_TYPE,
        DOMAIN,
        DOMAIN_VERSION,
        doc=__doc__ or "",
        inputs=[
            formal("A", "T"),
            formal("B", "T1"),
            formal("scales", "T"),
            formal("zero_points", "T1", param_option=optional),
            formal("bias", "T", param_option=optional),
        ],
        outputs=[formal("Y", "T")],
        type_constraints=[
            ("T", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"], "activations, scales, bias"),
            ("T1", ["tensor(uint8)"], "packed codes and zero points"),
        ],
        attributes=[
            schema.Attribute("K", schema.AttrType.INT, "in_features"),
            schema.Attribute("N", schema.AttrType.INT, "out_features"),
            schema.Attribute("bits", helper.make_attribute("bits", 4), "bits per code (4)"),
            schema.Attribute("block_size", schema.AttrType.INT, "group size G"),
            schema.Attribute(
                ACCURACY_LEVEL,
                helper.make_attribute(ACCURACY_LEVEL, 0),
                "compiled kernels: 0 = fp32 activations (exact), 4 = int8 activations per block",
            ),
        ],
    )
    op_schema.set_type_and_shape_inference_function(_infer_output)
    onnx.defs.register_schema(op_schema)


def _constant(name: str, value: np.ndarray) -> onnx.NodeProto:
    from onnx import helper, numpy_helper

    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def function_body(has_zero_points: bool, has_bias: bool) -> list[onnx.NodeProto]:
    """Unpack the nibbles to [N, K/G, G], subtract zero points, scale, flatten, transpose and multiply."""
    from onnx import helper

    nodes = [
        _constant("low_mask", np.uint8(0x0F)),
        _constant("four", np.uint8(4)),
        _constant("last_axis", np.array([-1], np.int64)),
        _constant("flat_rows", np.array([0, -1], np.int64)),
        helper.make_node("BitwiseAnd", ["B", "low_mask"], ["even_codes"]),
        helper.make_node("BitShift", ["B", "four"], ["odd_codes"], direction="RIGHT"),
        helper.make_node("Unsqueeze", ["even_codes", "last_axis"], ["even3"]),
        helper.make_node("Unsqueeze", ["odd_codes", "last_axis"], ["odd3"]),
        helper.make_node("Concat", ["even3", "odd3"], ["pairs"], axis=-1),  # [N, K/2, 2]
        helper.make_node("Shape", ["scales"], ["scales_shape"]),  # [N, K/G]
        helper.make_node("Concat", ["scales_shape", "last_axis"], ["grouped_shape"], axis=0),
        helper.make_node("Reshape", ["pairs", "grouped_shape"], ["codes"]),  # [N, K/G, G]
        helper.make_node("CastLike", ["codes", "scales"], ["codes_f"]),
        helper.make_node("Unsqueeze", ["scales", "last_axis"], ["scales3"]),
    ]
    if has_zero_points:
        nodes += [
            helper.make_node("CastLike", ["zero_points", "scales"], ["zeros_f"]),
            helper.make_node("Unsqueeze", ["zeros_f", "last_axis"], ["zeros3"]),
        ]
    else:  # symmetric: the implicit zero point is 2^(bits-1) = 8, as in MatMulNBits
        nodes += [_constant("eight", np.float32(8.0)), helper.make_node("CastLike", ["eight", "scales"], ["zeros3"])]
    nodes += [
        helper.make_node("Sub", ["codes_f", "zeros3"], ["centered"]),
        helper.make_node("Mul", ["centered", "scales3"], ["weight3"]),
        helper.make_node("Reshape", ["weight3", "flat_rows"], ["weight"]),  # [N, K]
        helper.make_node("Transpose", ["weight"], ["weight_t"], perm=[1, 0]),  # [K, N]
        helper.make_node("MatMul", ["A", "weight_t"], ["Y" if not has_bias else "product"]),
    ]
    if has_bias:
        nodes.append(helper.make_node("Add", ["product", "bias"], ["Y"]))
    return nodes


def make_function(has_zero_points: bool, has_bias: bool) -> onnx.FunctionProto:
    from onnx import helper

    function = helper.make_function(
        DOMAIN,
        OP_TYPE,
        list(FORMAL_INPUTS),
        ["Y"],
        function_body(has_zero_points, has_bias),
        [helper.make_opsetid("", BODY_OPSET)],
        attributes=list(ATTRIBUTES),
    )
    function.overload = overload_name(has_zero_points, has_bias)
    function.doc_string = "Reference body of awq2trt::Int4MatMul (standard ops only)."
    return function


def is_int4_matmul(node: Any) -> bool:
    """Whether an onnx_ir node is an ``awq2trt::Int4MatMul``."""
    return node.op_type == OP_TYPE and node.domain == DOMAIN


def int4_nodes(graph: Any) -> list[Any]:
    return [node for node in graph if is_int4_matmul(node)]


def attach_functions(model: Any) -> int:
    """Give the onnx_ir *model* the function body of each Int4MatMul signature it uses; returns the node count.

    Functions are attached only once the graph is final, so that no inliner (the exporter's, onnx_ir's)
    replaces the nodes by their bodies.
    """
    import onnx_ir as ir

    nodes = int4_nodes(model.graph)
    for overload in sorted({node.overload for node in nodes}):
        has_zp, has_bias = overload in ("zp", "zp_bias"), overload in ("bias", "zp_bias")
        function = ir.serde.deserialize_function(make_function(has_zp, has_bias))
        model.functions[function.identifier()] = function
    model.opset_imports[DOMAIN] = DOMAIN_VERSION
    return len(nodes)


def drop_functions(model: Any) -> None:
    """Remove the op's domain and function bodies once a lowering has replaced every node."""
    model.opset_imports.pop(DOMAIN, None)
    for key in [key for key in model.functions if key[0] == DOMAIN]:
        del model.functions[key]
