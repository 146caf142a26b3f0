"""``--lm-head int8|int4``: the output head as one MatMulNBits (or, for ort-kernels' int4 head, an Int4MatMul),
checked against numpy dequantization written out group by group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest

from awq2trt.errors import Awq2TrtError
from awq2trt.frontend.export import MODEL_FILE, export_checkpoint
from awq2trt.ir.graph import MS_DOMAIN
from awq2trt.targets.lm_head import quantize_lm_head
from tests.conftest import fixture_path, max_abs_rel, reference
from tests.ort_driver import IrSession

VOCAB, HIDDEN = 96, 64


def _numpy_rtn_dequant(w: np.ndarray, group: int, bits: int) -> np.ndarray:
    """Asymmetric RTN written out longhand, group by group, then dequantized: top = 2^bits - 1,
    scale = fp16((max - min) / top), zero = clip(-round(min / scale)), w' = (codes - zero) * scale."""
    top = (1 << bits) - 1
    out = np.empty_like(w, dtype=np.float32)
    for row in range(w.shape[0]):
        for start in range(0, w.shape[1], group):
            chunk = w[row, start : start + group].astype(np.float32)
            scale = np.float32(np.float16((chunk.max() - chunk.min()) / top))
            zero = np.clip(-np.round(chunk.min() / scale), 0, top)
            codes = np.clip(np.round(chunk / scale) + zero, 0, top)
            out[row, start : start + group] = (codes - zero) * scale
    return out


def _numpy_signed_max_dequant(w: np.ndarray, group: int) -> np.ndarray:
    """The int4 head's symmetric rule written out longhand: the value v of largest magnitude in each group maps to
    code 0, scale = fp16(v / -8), codes = clip(round(w / scale) + 8, 0, 15), w' = (codes - 8) * scale."""
    out = np.empty_like(w, dtype=np.float32)
    for row in range(w.shape[0]):
        for start in range(0, w.shape[1], group):
            chunk = w[row, start : start + group].astype(np.float32)
            peak = chunk[np.argmax(np.abs(chunk))]
            scale = np.float32(np.float16(peak / -8))
            codes = np.clip(np.round(chunk / scale) + 8, 0, 15)
            assert codes[np.argmax(np.abs(chunk))] == 0  # the peak takes the lowest code: the full range is used
            out[row, start : start + group] = (codes - 8) * scale
    return out


def _dequant(w: np.ndarray, group: int, choice: str) -> np.ndarray:
    return _numpy_signed_max_dequant(w, group) if choice == "int4" else _numpy_rtn_dequant(w, group, 8)


def _head_graph(weight: np.ndarray, *, tied: bool, transposed: bool) -> ir.Model:
    """hidden [B, S, H] -> logits, with the head stored [V, H] behind a Transpose or [H, V] directly.

    The tied form also Gathers from the same matrix (the input embedding), which must stay exact.
    """
    hidden = ir.Value(name="hidden", shape=ir.Shape(["b", "s", HIDDEN]), type=ir.TensorType(ir.DataType.FLOAT))
    ids = ir.Value(name="ids", shape=ir.Shape(["b", "s"]), type=ir.TensorType(ir.DataType.INT64))
    stored = weight if transposed else np.ascontiguousarray(weight.T)
    w = ir.Value(name="head", const_value=ir.tensor(stored, name="head"), shape=ir.Shape(stored.shape))
    w.type = ir.TensorType(ir.DataType.FLOAT)
    nodes = []
    rhs = w
    if transposed:
        nodes.append(ir.node("Transpose", [w], attributes={"perm": [1, 0]}))
        rhs = nodes[-1].outputs[0]
    nodes.append(ir.node("MatMul", [hidden, rhs]))
    logits = nodes[-1].outputs[0]
    logits.name = "logits"
    logits.type = ir.TensorType(ir.DataType.FLOAT)
    logits.shape = ir.Shape(["b", "s", VOCAB])
    inputs, outputs = [hidden], [logits]
    if tied:
        nodes.append(ir.node("Gather", [w, ids], attributes={"axis": 0}))
        embedded = nodes[-1].outputs[0]
        embedded.name, embedded.type = "embedded", ir.TensorType(ir.DataType.FLOAT)
        embedded.shape = ir.Shape(["b", "s", HIDDEN])
        inputs.append(ids)
        outputs.append(embedded)
    graph = ir.Graph(inputs, outputs, nodes=nodes, initializers=[w], opset_imports={"": 21}, name="head")
    return ir.Model(graph, ir_version=10)


def _run(model: ir.Model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    proto = ir.serde.serialize_model(model)
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.mark.parametrize("choice", ["int4", "int8"])
@pytest.mark.parametrize("transposed", [True, False])
def test_head_matches_numpy_dequantization(choice: str, transposed: bool) -> None:
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((VOCAB, HIDDEN), dtype=np.float32)
    hidden = rng.standard_normal((2, 5, HIDDEN), dtype=np.float32)
    model = _head_graph(weight, tied=False, transposed=transposed)
    assert quantize_lm_head(model, choice, block_size=32, accuracy_level=0)
    (logits,) = _run(model, {"hidden": hidden})
    dequant = _dequant(weight, 32, choice)
    np.testing.assert_allclose(logits, hidden @ dequant.T, rtol=1e-5, atol=1e-4)
    # One code off anywhere moves a logit by a whole scale (~0.4 for int4, ~0.02 for int8) at |hidden| ~ 1.
    assert not np.allclose(logits, hidden @ weight.T, atol=1e-3)  # it really is the quantized head
    ops = [n.op_type for n in model.graph]
    assert ops == ["MatMulNBits"] and "head" not in model.graph.initializers  # the dense head is gone
    (node,) = model.graph
    assert len(node.inputs) == (3 if choice == "int4" else 4)  # int4: symmetric, no zero points


@pytest.mark.parametrize("tiles16", [False, True])
def test_int4_head_as_an_int4matmul_matches_numpy_dequantization(tiles16: bool) -> None:
    """ort-kernels' form of the int4 head: one awq2trt::Int4MatMul with the same RTN codes (its function body runs
    it here, in stock ONNX Runtime), in the rows layout or tiled like the other nodes."""
    from awq2trt.ir import int4_op
    from awq2trt.targets.ort_kernels import tile_weights

    rng = np.random.default_rng(5)
    weight = rng.standard_normal((VOCAB, HIDDEN), dtype=np.float32)
    hidden = rng.standard_normal((2, 5, HIDDEN), dtype=np.float32)
    model = _head_graph(weight, tied=False, transposed=True)
    assert quantize_lm_head(model, "int4", block_size=32, accuracy_level=0, int4_matmul=True)
    assert not tiles16 or tile_weights(model) == 1
    int4_op.attach_functions(model)
    (logits,) = _run(model, {"hidden": hidden})
    np.testing.assert_allclose(logits, hidden @ _numpy_signed_max_dequant(weight, 32).T, rtol=1e-5, atol=1e-4)
    (node,) = model.graph
    assert (node.domain, node.op_type) == (int4_op.DOMAIN, int4_op.OP_TYPE)
    assert node.overload == int4_op.overload_name(False, False, int4_op.LAYOUT_TILES16 if tiles16 else "rows")
    assert "head" not in model.graph.initializers and MS_DOMAIN not in model.opset_imports


def test_tied_embedding_stays_exact() -> None:
    rng = np.random.default_rng(4)
    weight = rng.standard_normal((VOCAB, HIDDEN), dtype=np.float32)
    ids = rng.integers(0, VOCAB, (1, 7))
    model = _head_graph(weight, tied=True, transposed=True)
    quantize_lm_head(model, "int8", block_size=32, accuracy_level=0)
    _, embedded = _run(model, {"hidden": np.zeros((1, 7, HIDDEN), np.float32), "ids": ids})
    np.testing.assert_array_equal(embedded, weight[ids])
    assert "head" in model.graph.initializers


def test_fp_leaves_the_graph_alone() -> None:
    model = _head_graph(np.ones((VOCAB, HIDDEN), np.float32), tied=False, transposed=True)
    assert not quantize_lm_head(model, "fp")
    assert [n.op_type for n in model.graph] == ["Transpose", "MatMul"]


@pytest.fixture(scope="module")
def int8_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lm-head") / "int8"
    return export_checkpoint(
        fixture_path("llama-gemm-g64"), out, target="ort", accuracy_level=0, lm_head="int8", progress=False
    ).output


def test_exported_int8_head_keeps_the_tool_logits(int8_head: Path) -> None:
    checkpoint = fixture_path("llama-gemm-g64")
    ids = reference(checkpoint)["input_ids"]
    logits, _, _ = IrSession(int8_head).prefill(ids)
    max_abs, _ = max_abs_rel(logits, reference(checkpoint)["logits"])
    assert max_abs <= 1e-2  # vs the tool's own fp16 logits: 5.6e-3 measured; an exact head lands within 1.5e-3
    graph = onnx.load(str(int8_head / MODEL_FILE), load_external_data=False).graph
    heads = [n for n in graph.node if n.name == "lm_head/MatMulNBits"]
    assert len(heads) == 1 and {a.name: a.i for a in heads[0].attribute}["bits"] == 8
    assert not [i for i in graph.initializer if i.name.endswith("lm_head.weight")]


def test_quantized_head_needs_the_ort_target(tmp_path: Path) -> None:
    with pytest.raises(Awq2TrtError, match="--lm-head"):
        export_checkpoint(fixture_path("llama-gemm-g64"), tmp_path / "x", target="ir", lm_head="int4")
    with pytest.raises(Awq2TrtError, match="--lm-head"):
        export_checkpoint(fixture_path("llama-gemm-g64"), tmp_path / "x", target="ort", lm_head="int2")
    assert not (tmp_path / "x").exists()


def test_int4_head_rule_keeps_zero_and_tiny_groups_finite() -> None:
    """An all-zero group sits on the zero point; a group below fp16's range keeps a nonzero scale (no NaN)."""
    from awq2trt.targets.lm_head import signed_max_groups

    w = np.zeros((3, 32), np.float32)
    w[1] = 1e-9
    w[2, 5], w[2, 6] = 0.5, -0.25  # a positive peak: a negative scale, the peak on code 0
    codes, scales = signed_max_groups(w, 4, 32)
    assert np.all(scales != 0) and np.all(np.isfinite(scales))
    assert np.all(codes[0] == 8) and np.all(codes[1] == 8)
    assert scales[2, 0] == np.float32(np.float16(-0.5 / 8)) and codes[2, 5] == 0 and codes[2, 6] == 12
    dequantized = (codes.astype(np.float32) - 8) * np.repeat(scales, 32, axis=1)
    np.testing.assert_array_equal(dequantized[2, [5, 6]], [0.5, -0.25])
