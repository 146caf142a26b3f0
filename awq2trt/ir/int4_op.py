"""``awq2trt::Int4MatMul``: its ONNX schema, its function bodies, and how graphs find and complete its nodes.

Node inputs: A (activations [..., K]), B (codes uint8 [N, ceil(K/2)], even k in the low nibble), scales
[N, K/G] (A's dtype), zero_points (uint8 codes [N, K/G]; optional, absent = 8 = symmetric), bias ([N];
optional).  Attributes: K, N, bits (4), block_size (G), accuracy_level (optional, default 0: how a compiled
kernel may compute; the ``ort-kernels`` target sets it for our library, 0 = fp32 activations, 4 = int8
activations per block; the function body is always exact and ignores it).  Output Y [..., N] = A @ W.T + bias with
W[n, k] = (q[n, k] - zero_points[n, k // G]) * scales[n, k // G].

``weight_layout`` (optional string, default "rows") says how B, scales and zero_points are laid out: "rows" is
the layout above; "tiles16" (`awq2trt.cpu_layout`, written by the ``ort-kernels`` target for the library's int8
decode kernel) groups 16 output rows: B uint8 [T, K/8, 16, 4] with T = ceil(N/16), B[t, c, r, i] = rows-B[16t + r,
4c + i]; scales and zero_points [T, K/G, 16], [t, g, r] = rows[16t + r, g]; the rows past N are zeros.  bias and
every other attribute are the same in both layouts.

``epilogue`` (optional string, default "none"): "silu_mul" makes the node a fused gate/up projection of a SwiGLU
MLP: with P = A @ W.T + bias of N columns (the gate's N/2, then the up's N/2), Y [..., N/2] = silu(P[..., :N/2]) *
P[..., N/2:], silu(x) = x * sigmoid(x).  The ``fuse_silu_mul`` pass writes it (``ort-kernels`` only), so that the
library's kernel applies the activation while the gate and up rows are still in its registers' cache instead of
four more graph nodes (Split, Sigmoid, Mul, Mul) each reading and writing the [M, N] product.

Each node carries a model-local function body made of standard ops, so stock ONNX Runtime runs the
un-lowered graph and it serves as the reference for every target.  ONNX Runtime refuses a body that reads
an omitted optional input, so there is one body per input signature and layout, told apart by the function
``overload`` field (ONNX IR 10): "" (no zero points, no bias), "zp", "bias", "zp_bias" for rows, and the same
prefixed by the layout for tiles16 ("tiles16", "tiles16_zp", "tiles16_bias", "tiles16_zp_bias"), whose bodies
first turn the tiles back into rows with standard ops and then compute as the rows bodies do; each of these
with the suffix "silu_mul" ("zp_silu_mul", "tiles16_zp_silu_mul", ...) for the epilogue, whose bodies end in
Split, Sigmoid and two Muls.  Every overload
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
# How B, scales and zero_points are laid out (absent = rows); the bodies of each layout read theirs.
WEIGHT_LAYOUT = "weight_layout"
LAYOUT_ROWS = "rows"  # B [N, K/2], scales and zero_points [N, K/G]
LAYOUT_TILES16 = "tiles16"  # 16-row tiles (awq2trt.cpu_layout)
WEIGHT_LAYOUTS = (LAYOUT_ROWS, LAYOUT_TILES16)
# What the node applies to its product before writing Y (absent = none).
EPILOGUE = "epilogue"
EPILOGUE_NONE = "none"  # Y = A @ W.T + bias, N columns
EPILOGUE_SILU_MUL = "silu_mul"  # Y = silu(gate) * up, the product's two halves: N / 2 columns
EPILOGUES = (EPILOGUE_NONE, EPILOGUE_SILU_MUL)


def overload_name(
    has_zero_points: bool, has_bias: bool, layout: str = LAYOUT_ROWS, epilogue: str = EPILOGUE_NONE
) -> str:
    """The function overload of a node with this input signature, weight layout and epilogue ("", "zp",
    "tiles16_bias", "tiles16_zp_silu_mul"...)."""
    if layout not in WEIGHT_LAYOUTS:
        raise ValueError(f"unknown Int4MatMul weight layout {layout!r} (known: {', '.join(WEIGHT_LAYOUTS)})")
    if epilogue not in EPILOGUES:
        raise ValueError(f"unknown Int4MatMul epilogue {epilogue!r} (known: {', '.join(EPILOGUES)})")
    parts = [layout] if layout != LAYOUT_ROWS else []
    parts += ["zp"] if has_zero_points else []
    parts += ["bias"] if has_bias else []
    parts += [epilogue] if epilogue != EPILOGUE_NONE else []
    return "_".join(parts)


_OVERLOADS = {
    overload_name(zp, bias, layout, epilogue): (layout, zp, bias, epilogue)
    for layout in WEIGHT_LAYOUTS
    for zp in (False, True)
    for bias in (False, True)
    for epilogue in EPILOGUES
}


def parse_overload(overload: str) -> tuple[str, bool, bool, str]:
    """(layout, has_zero_points, has_bias, epilogue) of an overload name; the inverse of `overload_name`."""
    try:
        return _OVERLOADS[overload]
    except KeyError:
        known = ", ".join(repr(name) for name in _OVERLOADS)
        raise ValueError(f"unknown Int4MatMul overload {overload!r} (known: {known})") from None


def node_layout(node: Any) -> str:
    """The weight layout of an onnx_ir Int4MatMul node (its ``weight_layout`` attribute, absent = rows)."""
    attr = node.attributes.get(WEIGHT_LAYOUT)
    return LAYOUT_ROWS if attr is None else attr.as_string()


def node_epilogue(node: Any) -> str:
    """The epilogue of an onnx_ir Int4MatMul node (its ``epilogue`` attribute, absent = none)."""
    attr = node.attributes.get(EPILOGUE)
    return EPILOGUE_NONE if attr is None else attr.as_string()


def node_signature(node: Any) -> tuple[str, bool, bool]:
    """(layout, has_zero_points, has_bias) of an onnx_ir Int4MatMul node, read from its inputs and attributes."""
    inputs = [*node.inputs, None, None, None, None, None][:5]
    return node_layout(node), inputs[3] is not None, inputs[4] is not None


def node_overload(node: Any) -> str:
    """The overload an onnx_ir Int4MatMul node must name, given its inputs, weight layout and epilogue."""
    layout, has_zp, has_bias = node_signature(node)
    return overload_name(has_zp, has_bias, layout, node_epilogue(node))


def output_columns(n: int, epilogue: str) -> int:
    """Y's last dimension for a node of N product columns."""
    return n // 2 if epilogue == EPILOGUE_SILU_MUL else n


def _infer_output(ctx: Any) -> None:
    """Y: A's element type, shape A[..., :-1] + [N] (N / 2 with the silu_mul epilogue), so strict shape inference
    can type what follows."""
    import onnx

    a = ctx.get_input_type(0)
    if a is None or not a.HasField("tensor_type"):
        return
    y = onnx.TypeProto()
    y.tensor_type.elem_type = a.tensor_type.elem_type
    if a.tensor_type.HasField("shape") and len(a.tensor_type.shape.dim) >= 1:
        for dim in list(a.tensor_type.shape.dim)[:-1]:
            y.tensor_type.shape.dim.add().CopyFrom(dim)
        epilogue = ctx.get_attribute(EPILOGUE)
        y.tensor_type.shape.dim.add().dim_value = output_columns(
            ctx.get_attribute("N").i, epilogue.s.decode() if epilogue is not None else EPILOGUE_NONE
        )
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
            schema.Attribute(
                WEIGHT_LAYOUT,
                helper.make_attribute(WEIGHT_LAYOUT, LAYOUT_ROWS),
                "layout of B, scales and zero_points: rows ([N, ...]) or tiles16 (16-row tiles)",
            ),
            schema.Attribute(
                EPILOGUE,
                helper.make_attribute(EPILOGUE, EPILOGUE_NONE),
                "none (Y = the product) or silu_mul (Y = silu(first half) * second half, N / 2 columns)",
            ),
        ],
    )
    op_schema.set_type_and_shape_inference_function(_infer_output)
    onnx.defs.register_schema(op_schema)


def _constant(name: str, value: np.ndarray) -> onnx.NodeProto:
    from onnx import helper, numpy_helper

    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def _untile_rows(tiled: str, rows: str, n_rows: str) -> list[onnx.NodeProto]:
    """[T, X, 16, ...] -> [N, X * ...]: row 16t + r of the result is tiled[t, :, r, ...] flattened (tiles16)."""
    from onnx import helper

    p = f"{tiled}_untile"
    four_d = tiled == "B"  # B [T, C, 16, 4]; scales and zero points [T, K/G, 16]
    nodes = [
        helper.make_node("Transpose", [tiled], [f"{p}_t"], perm=[0, 2, 1, 3] if four_d else [0, 2, 1]),
        helper.make_node("Shape", [tiled], [f"{p}_x"], start=1, end=2),  # [C] or [K/G]
    ]
    if four_d:
        nodes += [
            helper.make_node("Shape", [tiled], [f"{p}_bytes"], start=3, end=4),  # [4]
            helper.make_node("Mul", [f"{p}_x", f"{p}_bytes"], [f"{p}_width"]),  # [K/2]
        ]
    width = f"{p}_width" if four_d else f"{p}_x"
    nodes += [
        helper.make_node("Concat", ["untile_all_rows", width], [f"{p}_shape"], axis=0),
        helper.make_node("Reshape", [f"{p}_t", f"{p}_shape"], [f"{p}_padded"]),  # [16 T, width]
        helper.make_node("Slice", [f"{p}_padded", "untile_zero", n_rows, "untile_zero"], [rows]),  # [N, width]
    ]
    return nodes


def _tiles16_prelude(has_zero_points: bool) -> list[onnx.NodeProto]:
    """Standard ops that turn the tiles16 B, scales and zero_points back into rows ("B_rows", ...)."""
    from onnx import AttributeProto, helper

    n_scalar = helper.make_node("Constant", [], ["untile_n_scalar"])
    n_scalar.attribute.append(helper.make_attribute_ref("value_int", AttributeProto.INT, ref_attr_name="N"))
    nodes = [
        n_scalar,  # the node's N attribute, read by the body
        _constant("untile_zero", np.array([0], np.int64)),
        _constant("untile_all_rows", np.array([-1], np.int64)),
        helper.make_node("Unsqueeze", ["untile_n_scalar", "untile_zero"], ["untile_n"]),
        *_untile_rows("B", "B_rows", "untile_n"),
        *_untile_rows("scales", "scales_rows", "untile_n"),
    ]
    if has_zero_points:
        nodes += _untile_rows("zero_points", "zero_points_rows", "untile_n")
    return nodes


def function_body(
    has_zero_points: bool, has_bias: bool, layout: str = LAYOUT_ROWS, epilogue: str = EPILOGUE_NONE
) -> list[onnx.NodeProto]:
    """The body for *layout* and *epilogue*: tiles16 turns its weights back into rows first; then, for every
    layout, unpack the nibbles to [N, K/G, G], subtract zero points, scale, flatten, transpose and multiply; then
    the epilogue, if any."""
    if epilogue not in EPILOGUES:
        raise ValueError(f"unknown Int4MatMul epilogue {epilogue!r} (known: {', '.join(EPILOGUES)})")
    product = "Y" if epilogue == EPILOGUE_NONE else "gate_up"
    if layout == LAYOUT_ROWS:
        nodes = _rows_body(has_zero_points, has_bias, "B", "scales", "zero_points", product)
    elif layout == LAYOUT_TILES16:
        rows = _rows_body(has_zero_points, has_bias, "B_rows", "scales_rows", "zero_points_rows", product)
        nodes = _tiles16_prelude(has_zero_points) + rows
    else:
        raise ValueError(f"unknown Int4MatMul weight layout {layout!r} (known: {', '.join(WEIGHT_LAYOUTS)})")
    return nodes + (_silu_mul_epilogue(product) if epilogue == EPILOGUE_SILU_MUL else [])


def _silu_mul_epilogue(product: str) -> list[onnx.NodeProto]:
    """Y = silu(gate) * up, gate and up the two halves of *product*'s last axis (as the MLP's unfused graph)."""
    from onnx import helper

    return [
        helper.make_node("Split", [product], ["gate", "up"], axis=-1, num_outputs=2),
        helper.make_node("Sigmoid", ["gate"], ["gate_sigmoid"]),
        helper.make_node("Mul", ["gate", "gate_sigmoid"], ["gate_silu"]),
        helper.make_node("Mul", ["gate_silu", "up"], ["Y"]),
    ]


def _rows_body(
    has_zero_points: bool, has_bias: bool, b: str, scales: str, zero_points: str, output: str = "Y"
) -> list[onnx.NodeProto]:
    """The rows body, reading the codes, scales and zero points from the values named *b*, *scales*, *zero_points*
    and writing the product to *output*."""
    from onnx import helper

    nodes = [
        _constant("low_mask", np.uint8(0x0F)),
        _constant("four", np.uint8(4)),
        _constant("last_axis", np.array([-1], np.int64)),
        _constant("flat_rows", np.array([0, -1], np.int64)),
        helper.make_node("BitwiseAnd", [b, "low_mask"], ["even_codes"]),
        helper.make_node("BitShift", [b, "four"], ["odd_codes"], direction="RIGHT"),
        helper.make_node("Unsqueeze", ["even_codes", "last_axis"], ["even3"]),
        helper.make_node("Unsqueeze", ["odd_codes", "last_axis"], ["odd3"]),
        helper.make_node("Concat", ["even3", "odd3"], ["pairs"], axis=-1),  # [N, K/2, 2]
        helper.make_node("Shape", [scales], ["scales_shape"]),  # [N, K/G]
        helper.make_node("Concat", ["scales_shape", "last_axis"], ["grouped_shape"], axis=0),
        helper.make_node("Reshape", ["pairs", "grouped_shape"], ["codes"]),  # [N, K/G, G]
        helper.make_node("CastLike", ["codes", scales], ["codes_f"]),
        helper.make_node("Unsqueeze", [scales, "last_axis"], ["scales3"]),
    ]
    if has_zero_points:
        nodes += [
            helper.make_node("CastLike", [zero_points, scales], ["zeros_f"]),
            helper.make_node("Unsqueeze", ["zeros_f", "last_axis"], ["zeros3"]),
        ]
    else:  # symmetric: the implicit zero point is 2^(bits-1) = 8, as in MatMulNBits
        nodes += [_constant("eight", np.float32(8.0)), helper.make_node("CastLike", ["eight", scales], ["zeros3"])]
    nodes += [
        helper.make_node("Sub", ["codes_f", "zeros3"], ["centered"]),
        helper.make_node("Mul", ["centered", "scales3"], ["weight3"]),
        helper.make_node("Reshape", ["weight3", "flat_rows"], ["weight"]),  # [N, K]
        helper.make_node("Transpose", ["weight"], ["weight_t"], perm=[1, 0]),  # [K, N]
        helper.make_node("MatMul", ["A", "weight_t"], [output if not has_bias else "product"]),
    ]
    if has_bias:
        nodes.append(helper.make_node("Add", ["product", "bias"], [output]))
    return nodes


def make_function(
    has_zero_points: bool, has_bias: bool, layout: str = LAYOUT_ROWS, epilogue: str = EPILOGUE_NONE
) -> onnx.FunctionProto:
    from onnx import helper

    function = helper.make_function(
        DOMAIN,
        OP_TYPE,
        list(FORMAL_INPUTS),
        ["Y"],
        function_body(has_zero_points, has_bias, layout, epilogue),
        [helper.make_opsetid("", BODY_OPSET)],
        attributes=list(ATTRIBUTES),
    )
    function.overload = overload_name(has_zero_points, has_bias, layout, epilogue)
    weights = "" if layout == LAYOUT_ROWS else f", {layout} weights"
    then = "" if epilogue == EPILOGUE_NONE else f", then {epilogue}"
    function.doc_string = f"Reference body of awq2trt::Int4MatMul{weights}{then} (standard ops only)."
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

    Each node's overload must be the one its inputs, ``weight_layout`` and ``epilogue`` call for (`node_overload`):
    a node that names another would silently run a body that ignores its zero points, bias, layout or epilogue, so
    that is an error.
    """
    import onnx_ir as ir

    nodes = int4_nodes(model.graph)
    for node in nodes:
        if node.overload != (expected := node_overload(node)):
            raise ValueError(
                f"Int4MatMul node {node.name!r}: overload {node.overload!r}, but its inputs, layout and epilogue call"
                f" for {expected!r}"
            )
    for overload in sorted({node.overload for node in nodes}):
        layout, has_zp, has_bias, epilogue = parse_overload(overload)
        function = ir.serde.deserialize_function(make_function(has_zp, has_bias, layout, epilogue))
        model.functions[function.identifier()] = function
    model.opset_imports[DOMAIN] = DOMAIN_VERSION
    return len(nodes)


def drop_functions(model: Any) -> None:
    """Remove the op's domain and function bodies once a lowering has replaced every node."""
    model.opset_imports.pop(DOMAIN, None)
    for key in [key for key in model.functions if key[0] == DOMAIN]:
        del model.functions[key]
