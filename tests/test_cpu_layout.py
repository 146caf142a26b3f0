"""The CPU kernels' tiles16 weight layout (awq2trt/cpu_layout.py) and the Int4MatMul bodies that read it.

The layout is checked three ways: a property-tested round trip through `QuantWeight`, the padded rows' contents,
and every element against the spec's formula written out here with loops.  The tiles16 function bodies are run
by stock ONNX Runtime (no custom library) against a float64 numpy dequantize-then-matmul and against the same
node in the rows layout; the ort-kernels lowering (`tile_weights`) is run on single nodes.  Whole exports with
``--weight-layout tiles16`` are in tests/test_ort_kernels_target.py.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from awq2trt import cpu_layout
from awq2trt.cpu_layout import from_tiles16, tile_codes, tile_groups, to_tiles16, untile_codes, untile_groups
from awq2trt.errors import Awq2TrtError
from awq2trt.ir import int4_op
from awq2trt.quant_weight import QuantWeight

GROUPS = (16, 32, 64, 128)


def _weight(rng: np.random.Generator, n: int, k: int, g: int, zero_points: bool, dtype: type) -> QuantWeight:
    codes = rng.integers(0, 16, size=(n, k), dtype=np.uint8)
    scales = (rng.random((n, k // g)) * 0.05 + 0.001).astype(dtype)
    zeros = rng.integers(0, 16, size=(n, k // g), dtype=np.uint8) if zero_points else np.full((n, k // g), 8, np.uint8)
    if zero_points and np.all(zeros == 8):  # one row, one group: it happens; such a weight would be symmetric
        zeros[0, 0] = 3
    return QuantWeight(codes, scales, zeros, g)


def _rows_bytes(codes: np.ndarray) -> np.ndarray:
    """The rows layout's B, written out independently: k = 2i in the low nibble of byte i, k = 2i + 1 in the high."""
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)


# -- the layout ---------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.one_of(st.integers(1, 15), st.integers(1, 80), st.integers(1, 40).map(lambda x: 2 * x + 1)),
    group=st.sampled_from(GROUPS),
    groups=st.integers(1, 4),
    zero_points=st.booleans(),
    dtype=st.sampled_from([np.float16, np.float32]),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip(n: int, group: int, groups: int, zero_points: bool, dtype: type, seed: int) -> None:
    k = group * groups
    weight = _weight(np.random.default_rng(seed), n, k, group, zero_points, dtype)
    codes, scales, zeros = to_tiles16(weight)
    t = -(-n // 16)
    assert codes.shape == (t, k // 8, 16, 4) and codes.dtype == np.uint8
    assert scales.shape == (t, groups, 16) and scales.dtype == dtype
    assert (zeros is not None) == zero_points  # a symmetric weight has none by default: the node omits them
    if zeros is not None:
        assert zeros.shape == (t, groups, 16) and zeros.dtype == np.uint8
    back = from_tiles16(codes, scales, zeros, n)
    assert back.equals(weight) and back.group_size == group
    # explicit zero points for a symmetric weight (a node that has the input) round-trip as well
    _, _, forced = to_tiles16(weight, with_zero_points=True)
    assert forced is not None and from_tiles16(codes, scales, forced, n).equals(weight)


@pytest.mark.parametrize("n", [1, 5, 16, 17, 31, 40])
def test_padded_rows_are_zero_codes_scales_and_zero_points(n: int) -> None:
    rng = np.random.default_rng(n)
    weight = _weight(rng, n, 64, 32, True, np.float32)
    weight = QuantWeight(weight.qweight | 1, weight.scales, weight.zeros | 1, 32)  # no zero in the real rows
    codes, scales, zeros = to_tiles16(weight)
    assert zeros is not None
    rows = np.arange(codes.shape[0] * 16).reshape(-1, 16)  # [t, r] -> 16t + r
    real, padded = rows < n, rows >= n
    assert padded.sum() == (-n) % 16
    for tiled in (codes.transpose(0, 2, 1, 3), scales.transpose(0, 2, 1), zeros.transpose(0, 2, 1)):
        assert not np.any(tiled[padded]), "a padded row holds something"
        assert np.all(tiled[real] != 0)


def test_every_element_is_where_the_spec_says() -> None:
    """codes[t, c, r, i] = B[16t + r, 4c + i]; scales[t, g, r] = scales[16t + r, g]; zero points likewise."""
    n, k, g = 37, 96, 16
    weight = _weight(np.random.default_rng(1), n, k, g, True, np.float16)
    codes, scales, zeros = to_tiles16(weight)
    assert zeros is not None
    b = _rows_bytes(weight.qweight)
    t_count, c_count = -(-n // 16), k // 8
    for t in range(t_count):
        for r in range(16):
            row = 16 * t + r
            for c in range(c_count):
                for i in range(4):
                    assert codes[t, c, r, i] == (b[row, 4 * c + i] if row < n else 0), (t, c, r, i)
            for group in range(k // g):
                want_scale = weight.scales[row, group] if row < n else 0
                want_zero = weight.zeros[row, group] if row < n else 0
                assert scales[t, group, r] == want_scale and zeros[t, group, r] == want_zero, (t, group, r)
    # One chunk read as a little-endian uint32 holds k = 8c + j in nibble j (what a kernel's 32-bit load sees).
    word = int.from_bytes(codes[1, 3, 5].tobytes(), "little")
    assert [(word >> (4 * j)) & 0xF for j in range(8)] == list(weight.qweight[21, 24:32])


def test_the_tensor_maps_keep_values_and_dtypes() -> None:
    """The per-tensor maps the lowering uses: inverses of each other, any dtype (bfloat16 scales included)."""
    import ml_dtypes

    rng = np.random.default_rng(2)
    packed = rng.integers(0, 256, size=(19, 48), dtype=np.uint8)
    np.testing.assert_array_equal(untile_codes(tile_codes(packed), 19), packed)
    scales = rng.random((19, 3)).astype(ml_dtypes.bfloat16)
    tiled = tile_groups(scales)
    assert tiled.dtype == scales.dtype and tiled.shape == (2, 3, 16)
    assert untile_groups(tiled, 19).view(np.uint16).tolist() == scales.view(np.uint16).tolist()
    weight = from_tiles16(tile_codes(packed), tiled, None, 19)
    assert weight.scales.dtype == np.float32 and np.array_equal(weight.scales, scales.astype(np.float32))
    assert np.all(weight.zeros == 8)


def _group_8_weight() -> QuantWeight:
    """A valid QuantWeight whose group size the layout cannot take (a chunk of 8 channels is one group)."""
    return QuantWeight(np.zeros((4, 24), np.uint8), np.ones((4, 3), np.float32), np.full((4, 3), 8, np.uint8), 8)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: cpu_layout.check_shape(4, 100, 20), "in_features divisible by 8"),
        (lambda: cpu_layout.check_shape(4, 64, 8), "a group size >= 16"),
        (lambda: cpu_layout.check_shape(4, 80, 20), "a multiple of 8"),
        (lambda: cpu_layout.check_shape(0, 64, 32), "N > 0"),
        (lambda: tile_codes(np.zeros((4, 6), np.uint8)), "uint8 [N, K/2] with K divisible by 8"),
        (lambda: tile_codes(np.zeros((4, 8), np.int8)), "uint8 [N, K/2]"),
        (lambda: untile_codes(np.zeros((2, 4, 16, 4), np.uint8), 40), "uint8 [T=3, K/8, 16, 4] for N=40"),
        (lambda: untile_codes(np.zeros((1, 4, 8, 4), np.uint8), 8), "uint8 [T=1, K/8, 16, 4]"),
        (lambda: untile_groups(np.zeros((1, 2, 8), np.float32), 8), "[T=1, K/G, 16] for N=8"),
        (lambda: tile_groups(np.zeros(8, np.float32)), "[N, K/G]"),
        (
            lambda: from_tiles16(np.zeros((1, 4, 16, 4), np.uint8), np.zeros((1, 3, 16), np.float32), None, 5),
            "a group count that divides K=32",
        ),
        (
            lambda: from_tiles16(
                np.zeros((1, 4, 16, 4), np.uint8), np.zeros((1, 2, 16), np.float32), np.zeros((1, 1, 16), np.uint8), 5
            ),
            "zeros: expected uint8 [1, 2, 16]",
        ),
        (
            lambda: from_tiles16(np.zeros((1, 4, 16, 4), np.uint8), np.zeros((1, 1, 16), np.int32), None, 5),
            "float16/float32",
        ),
        (lambda: to_tiles16(_group_8_weight()), "a group size >= 16"),
    ],
)
def test_bad_shapes_are_one_clear_error(call: object, needle: str) -> None:
    with pytest.raises(Awq2TrtError) as info:
        call()  # type: ignore[operator]
    message = str(info.value)
    assert needle in message and "\n" not in message, message


# -- the overloads ------------------------------------------------------------------------------------------------


def test_overload_names_parse_back() -> None:
    names = {
        (layout, zp, bias, epilogue): int4_op.overload_name(zp, bias, layout, epilogue)
        for layout in int4_op.WEIGHT_LAYOUTS
        for zp in (False, True)
        for bias in (False, True)
        for epilogue in int4_op.EPILOGUES
    }
    plain = ["", "zp", "bias", "zp_bias", "tiles16", "tiles16_zp", "tiles16_bias", "tiles16_zp_bias"]
    fused = ["silu_mul", *(f"{name}_silu_mul" for name in plain[1:])]
    assert sorted(names.values()) == sorted(plain + fused)
    for signature, name in names.items():
        assert int4_op.parse_overload(name) == signature
    for bad in ("zp_tiles16", "bias_zp", "rows", "tiles16_", "silu_mul_zp", "none", "zp_none"):
        with pytest.raises(ValueError, match="unknown Int4MatMul overload"):
            int4_op.parse_overload(bad)
    with pytest.raises(ValueError, match="unknown Int4MatMul weight layout"):
        int4_op.overload_name(True, False, "tiles8")
    with pytest.raises(ValueError, match="unknown Int4MatMul epilogue"):
        int4_op.overload_name(True, False, "rows", "gelu_mul")


def _node_model(
    weight: QuantWeight, bias: np.ndarray | None, dtype: type, layout: str, *, rank: int = 2
) -> onnx.ModelProto:
    """One Int4MatMul in *layout*, its function body attached, built with the onnx helper from *weight*."""
    n, k, g = weight.out_features, weight.in_features, weight.group_size
    zero_points = not weight.is_symmetric
    scales = weight.scales.astype(dtype)
    if layout == int4_op.LAYOUT_TILES16:
        b, scales, zeros = to_tiles16(weight, scale_dtype=dtype)
    else:
        b, zeros = _rows_bytes(weight.qweight), weight.zeros if zero_points else None
    initializers = [numpy_helper.from_array(b, "B"), numpy_helper.from_array(scales, "scales")]
    inputs = ["A", "B", "scales"]
    if zeros is not None:
        initializers.append(numpy_helper.from_array(zeros, "zero_points"))
        inputs.append("zero_points")
    if bias is not None:
        initializers.append(numpy_helper.from_array(bias.astype(dtype), "bias"))
        inputs += [""] * (4 - len(inputs)) + ["bias"]
    attributes: dict[str, object] = {"K": k, "N": n, "bits": 4, "block_size": g, "accuracy_level": 4}
    if layout != int4_op.LAYOUT_ROWS:
        attributes[int4_op.WEIGHT_LAYOUT] = layout
    node = helper.make_node("Int4MatMul", inputs, ["Y"], domain=int4_op.DOMAIN, **attributes)
    node.overload = int4_op.overload_name(zero_points, bias is not None, layout)
    element = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    lead = ["m"] if rank == 2 else ["batch", "seq"]
    graph = helper.make_graph(
        [node],
        "one_node",
        [helper.make_tensor_value_info("A", element, [*lead, k])],
        [helper.make_tensor_value_info("Y", element, [*lead, n])],
        initializers,
    )
    opsets = [helper.make_opsetid("", int4_op.BODY_OPSET), helper.make_opsetid(int4_op.DOMAIN, 1)]
    function = int4_op.make_function(zero_points, bias is not None, layout)
    return helper.make_model(graph, opset_imports=opsets, functions=[function])


def _stock_session(model: onnx.ModelProto) -> ort.InferenceSession:
    """Stock ONNX Runtime, no library registered: it inlines the node's function body."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # fp16 bodies make ORT list the nodes it cannot constant-fold
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("n", [1, 17, 40, 96])
@pytest.mark.parametrize("group", [32, 64])
def test_tiles16_body_in_stock_onnxruntime_matches_numpy_and_the_rows_node(n: int, group: int, dtype: type) -> None:
    int4_op.register_schema()
    rng = np.random.default_rng(n * 131 + group)
    k = 3 * group  # an odd number of groups
    for zero_points in (True, False):
        for with_bias in (True, False):
            weight = _weight(rng, n, k, group, zero_points, np.float16)
            bias = rng.standard_normal(n).astype(dtype) if with_bias else None
            tiles_model = _node_model(weight, bias, dtype, int4_op.LAYOUT_TILES16)
            onnx.checker.check_model(tiles_model, full_check=True)
            a = rng.standard_normal((5, k)).astype(dtype)
            got = _stock_session(tiles_model).run(None, {"A": a})[0]
            rows = _stock_session(_node_model(weight, bias, dtype, int4_op.LAYOUT_ROWS)).run(None, {"A": a})[0]
            assert got.shape == (5, n) and got.dtype == dtype
            np.testing.assert_array_equal(got, rows)  # the same ops on the same values once untiled
            dense = (weight.qweight.astype(np.float64) - np.repeat(weight.zeros, group, axis=1)) * np.repeat(
                weight.scales.astype(np.float64), group, axis=1
            )
            want = a.astype(np.float64) @ dense.T + (0.0 if bias is None else bias.astype(np.float64))
            error = np.linalg.norm(got.astype(np.float64) - want) / np.linalg.norm(want)
            bound = 1e-5 if dtype == np.float32 else 2e-3  # fp16: the body dequantizes and multiplies in fp16
            assert error <= bound, (zero_points, with_bias, error)


# -- the ort-kernels lowering -------------------------------------------------------------------------------------


def _lowered(weight: QuantWeight, bias: np.ndarray | None, share_scales: bool = False) -> tuple[object, object]:
    import onnx_ir as ir

    from awq2trt.targets.ort_kernels import tile_weights

    proto = _node_model(weight, bias, np.float32, int4_op.LAYOUT_ROWS, rank=3)
    if share_scales:  # a second node reads the scales: the first one's weights are no longer its own
        proto.graph.node.append(helper.make_node("Identity", ["scales"], ["scales_copy"]))
        proto.graph.output.append(helper.make_tensor_value_info("scales_copy", onnx.TensorProto.FLOAT, None))
    model = ir.serde.deserialize_model(proto)
    model.functions.clear()
    tiled = tile_weights(model)
    int4_op.attach_functions(model)
    return tiled, ir.serde.serialize_model(model)


@pytest.mark.parametrize(("zero_points", "with_bias"), [(True, True), (False, False), (True, False), (False, True)])
def test_tile_weights_rewrites_the_node_in_place(zero_points: bool, with_bias: bool) -> None:
    int4_op.register_schema()
    rng = np.random.default_rng(11)
    n, k, g = 40, 128, 32
    weight = _weight(rng, n, k, g, zero_points, np.float32)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    tiled, proto = _lowered(weight, bias)
    assert tiled == 1
    onnx.checker.check_model(proto, full_check=True)
    (node,) = proto.graph.node
    assert node.overload == int4_op.overload_name(zero_points, with_bias, int4_op.LAYOUT_TILES16)
    assert {a.name: helper.get_attribute_value(a) for a in node.attribute}[int4_op.WEIGHT_LAYOUT] == b"tiles16"
    assert [(f.name, f.overload) for f in proto.functions] == [("Int4MatMul", node.overload)]
    arrays = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    assert list(node.input[1:3]) == ["B", "scales"]  # the initializers keep their names
    assert arrays["B"].shape == (3, 16, 16, 4) and arrays["scales"].shape == (3, 4, 16)
    assert from_tiles16(arrays["B"], arrays["scales"], arrays.get("zero_points"), n).equals(weight)
    a = rng.standard_normal((2, 3, k)).astype(np.float32)
    reference = _stock_session(_node_model(weight, bias, np.float32, int4_op.LAYOUT_ROWS, rank=3))
    np.testing.assert_array_equal(_stock_session(proto).run(None, {"A": a})[0], reference.run(None, {"A": a})[0])


def test_tile_weights_leaves_a_node_with_shared_weights_in_rows() -> None:
    int4_op.register_schema()
    weight = _weight(np.random.default_rng(12), 24, 64, 32, True, np.float32)
    tiled, proto = _lowered(weight, None, share_scales=True)
    node = next(n for n in proto.graph.node if n.op_type == "Int4MatMul")
    assert tiled == 0 and node.overload == "zp"
    assert all(a.name != int4_op.WEIGHT_LAYOUT for a in node.attribute)
    assert {i.name: list(i.dims) for i in proto.graph.initializer}["B"] == [24, 32]


def test_tile_weights_refuses_a_shape_the_layout_cannot_hold() -> None:
    import onnx_ir as ir

    from awq2trt.targets.ort_kernels import tile_weights

    model = ir.serde.deserialize_model(_node_model(_group_8_weight(), None, np.float32, int4_op.LAYOUT_ROWS))
    with pytest.raises(Awq2TrtError, match="a group size >= 16"):
        tile_weights(model)


def test_attach_functions_refuses_an_overload_that_does_not_match_the_node() -> None:
    import onnx_ir as ir

    weight = _weight(np.random.default_rng(13), 16, 64, 32, True, np.float32)
    proto = _node_model(weight, None, np.float32, int4_op.LAYOUT_TILES16)
    proto.graph.node[0].overload = "zp"  # the rows body on tiles: wrong numbers, silently, if it were attached
    with pytest.raises(ValueError, match=r"overload 'zp', but its inputs, layout and epilogue call for 'tiles16_zp'"):
        int4_op.attach_functions(ir.serde.deserialize_model(proto))
