"""The TensorRT ONNX-parser support table and its checker, and TensorRT's own ONNX tooling, on ``trt`` exports.

TensorRT cannot be installed here, so two things stand in for its parser: the table of what the parser accepts
(awq2trt/targets/trt_support.json, from onnx-tensorrt's operator table and TensorRT's headers), checked over every
export; and Polygraphy / ONNX-GraphSurgeon, NVIDIA's pip-installable ONNX tools, which must read the export.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from awq2trt.errors import Awq2TrtError
from awq2trt.sidecar import Sidecar
from awq2trt.targets import trt_support
from awq2trt.targets.trt import TrtTarget
from tests.conftest import ROOT, SYMMETRIC_CASE

CASES = ("llama-gemm-g64", "qwen2-gemm-g128", SYMMETRIC_CASE)  # asymmetric, q/k/v bias, no zero points
K, N, GROUP = 128, 32, 64


@pytest.fixture(scope="module")
def trt_export(shared_export: Callable[..., Any]) -> Callable[[str], Path]:
    """The model.onnx of a case's default (fp16) trt export, shared with the other test files."""
    return lambda case: shared_export(case, "trt").output / "model.onnx"


# --- the exports pass ---


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_exports_pass_every_targeted_version(case: str, trt_export: Callable[[str], Path]) -> None:
    """export_checkpoint already ran the check in TrtTarget.verify; here each version's list is empty on its own."""
    path = trt_export(case)
    model = onnx.load(str(path), load_external_data=False)
    assert trt_support.versions() == ["10.13", "11.1"]
    for version in trt_support.versions():
        assert trt_support.violations(model, version, base_dir=path.parent) == []
    used = {node.op_type for node in model.graph.node}
    assert {"DequantizeLinear", "MatMul"} <= used
    for version in trt_support.versions():  # every op the export uses is a row of the table, not a fallthrough
        assert used <= set(trt_support.load_table()["versions"][version]["ops"])


# --- hand-made graphs fail, naming the node ---


def _int4_model(*, zero_point: np.ndarray | None = None, weight_as_input: bool = False) -> onnx.ModelProto:
    """A: [1, K] @ DequantizeLinear(INT4 [K, N], scales [K/G, N], axis 0, block_size G)."""
    rng = np.random.default_rng(0)
    weight = helper.make_tensor("w", TensorProto.INT4, [K, N], rng.integers(-8, 8, K * N).tolist())
    scales = numpy_helper.from_array((rng.random((K // GROUP, N)) * 0.01 + 0.001).astype(np.float32), "s")
    initializers = [scales] if weight_as_input else [weight, scales]
    inputs = ["w", "s"]
    if zero_point is not None:
        initializers.append(helper.make_tensor("z", TensorProto.INT4, [K // GROUP, N], zero_point.ravel().tolist()))
        inputs.append("z")
    nodes = [
        helper.make_node("DequantizeLinear", inputs, ["w_fp"], name="m/DequantizeLinear", axis=0, block_size=GROUP),
        helper.make_node("MatMul", ["a", "w_fp"], ["y"], name="m/MatMul"),
    ]
    graph_inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, K])]
    if weight_as_input:
        graph_inputs.append(helper.make_tensor_value_info("w", TensorProto.INT4, [K, N]))
    graph = helper.make_graph(
        nodes, "dq", graph_inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, N])], initializers
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def _only(model: onnx.ModelProto, version: str = "11.1") -> trt_support.Violation:
    found = trt_support.violations(model, version)
    assert len(found) == 1, found
    return found[0]


def test_zero_valued_zero_point_passes() -> None:
    """The control for the next test: an explicit all-zero zero point is what IDequantizeLayer allows."""
    model = _int4_model(zero_point=np.zeros((K // GROUP, N), np.int8))
    onnx.checker.check_model(model, full_check=True)
    for version in trt_support.versions():
        assert trt_support.violations(model, version) == []


def test_non_zero_zero_point_fails_naming_the_node(tmp_path: Path) -> None:
    zeros = np.zeros((K // GROUP, N), np.int8)
    zeros[1, 3] = 2
    model = _int4_model(zero_point=zeros)
    onnx.checker.check_model(model, full_check=True)
    for version in trt_support.versions():
        problem = _only(model, version)
        assert (problem.node, problem.op_type) == ("m/DequantizeLinear", "DequantizeLinear")
        assert "zero" in problem.expected and "1 non-zero" in problem.got
    with pytest.raises(Awq2TrtError, match=r"node 'm/DequantizeLinear' \(DequantizeLinear\).*zeros.*1 non-zero"):
        trt_support.require_supported(model, "hand-made")
    # TrtTarget.verify runs the same check on a saved file, after the ONNX checker (which this graph passes)
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    with pytest.raises(Awq2TrtError, match=r"model\.onnx: node 'm/DequantizeLinear'"):
        TrtTarget().verify(path)


def test_int4_weights_must_be_constants() -> None:
    """INT4 is weight-only in TensorRT: fed as a graph input it is refused as a binding and at the dequantize."""
    found = trt_support.violations(_int4_model(weight_as_input=True), "11.1")
    assert [(v.node, v.op_type) for v in found] == [
        ("w", "graph input"),
        ("m/DequantizeLinear", "DequantizeLinear"),
    ]
    assert "weight" in found[1].expected


def _one_node_model(
    node: onnx.NodeProto,
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    *,
    opset: int = 21,
    initializers: list[onnx.TensorProto] | None = None,
    extra_opsets: list[onnx.OperatorSetIdProto] | None = None,
) -> onnx.ModelProto:
    graph = helper.make_graph([node], "one", inputs, outputs, initializers or [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *(extra_opsets or [])])


def _value(name: str, dtype: int, shape: list[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def test_contrib_op_fails() -> None:
    """An ORT contrib op (what the ort target emits) needs a TensorRT plugin: never in a trt export."""
    packed = numpy_helper.from_array(np.zeros((N, K // GROUP, GROUP // 2), np.uint8), "b")
    scales = numpy_helper.from_array(np.ones(N * K // GROUP, np.float32), "s")
    node = helper.make_node(
        "MatMulNBits", ["a", "b", "s"], ["y"], name="ort/MatMulNBits", domain="com.microsoft",
        K=K, N=N, bits=4, block_size=GROUP,
    )  # fmt: skip
    model = _one_node_model(
        node,
        [_value("a", TensorProto.FLOAT, [1, K])],
        [_value("y", TensorProto.FLOAT, [1, N])],
        initializers=[packed, scales],
        extra_opsets=[helper.make_opsetid("com.microsoft", 1)],
    )
    problem = _only(model)
    assert (problem.node, problem.op_type) == ("ort/MatMulNBits", "MatMulNBits")
    assert "plugin" in problem.expected and "com.microsoft::MatMulNBits" in problem.got
    with pytest.raises(Awq2TrtError, match=r"node 'ort/MatMulNBits' \(MatMulNBits\) for TensorRT 10\.13"):
        trt_support.require_supported(model, "hand-made")


def test_standard_op_the_parser_lacks_fails() -> None:
    node = helper.make_node("Det", ["x"], ["y"], name="det")
    model = _one_node_model(node, [_value("x", TensorProto.FLOAT, [2, 3, 3])], [_value("y", TensorProto.FLOAT, [2])])
    onnx.checker.check_model(model, full_check=True)
    for version in trt_support.versions():
        problem = _only(model, version)
        assert (problem.node, problem.op_type) == ("det", "Det") and "unsupported" in problem.got


def test_op_in_a_subgraph_is_found() -> None:
    """If/Loop/Scan bodies are walked too: a Det inside a branch is named."""
    branch = helper.make_graph(
        [helper.make_node("Det", ["x"], ["d"], name="branch/det")], "then", [], [_value("d", TensorProto.FLOAT, [2])]
    )
    other = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["r"], name="else/sum", keepdims=0)],
        "else",
        [],
        [_value("r", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.array([1, 2], np.int64), "axes")],
    )
    node = helper.make_node("If", ["c"], ["y"], name="if", then_branch=branch, else_branch=other)
    model = _one_node_model(
        node,
        [_value("c", TensorProto.BOOL, []), _value("x", TensorProto.FLOAT, [2, 3, 3])],
        [_value("y", TensorProto.FLOAT, [2])],
    )
    onnx.checker.check_model(model, full_check=True)
    problem = _only(model)
    assert (problem.node, problem.op_type) == ("branch/det", "Det")


def test_local_function_bodies_are_checked() -> None:
    """The parser inlines a model-local function, so a call is as good as its body: a Det inside is named."""
    body = [helper.make_node("Det", ["x"], ["d"], name="fn/det")]
    function = helper.make_function("local", "Wrapped", ["x"], ["d"], body, [helper.make_opsetid("", 21)])
    node = helper.make_node("Wrapped", ["x"], ["y"], name="call", domain="local")
    model = _one_node_model(
        node,
        [_value("x", TensorProto.FLOAT, [2, 3, 3])],
        [_value("y", TensorProto.FLOAT, [2])],
        extra_opsets=[helper.make_opsetid("local", 1)],
    )
    model.functions.append(function)
    onnx.checker.check_model(model, full_check=True)
    problem = _only(model)
    assert (problem.node, problem.op_type) == ("fn/det", "Det")


def test_dtype_outside_the_table_fails() -> None:
    """MatMul takes float types only; an INT32 MatMul is valid ONNX but not parsed."""
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="int_matmul")
    model = _one_node_model(
        node,
        [_value("a", TensorProto.INT32, [2, 4]), _value("b", TensorProto.INT32, [4, 3])],
        [_value("y", TensorProto.INT32, [2, 3])],
    )
    onnx.checker.check_model(model, full_check=True)
    problem = _only(model)
    assert (problem.node, problem.op_type) == ("int_matmul", "MatMul")
    assert "FLOAT16" in problem.expected and problem.got.startswith("INT32")


def test_data_type_the_parser_lacks_fails() -> None:
    """UINT16 is no TensorRT type at all: refused as a binding and at the node that reads it."""
    node = helper.make_node("Identity", ["x"], ["y"], name="id")
    model = _one_node_model(node, [_value("x", TensorProto.UINT16, [4])], [_value("y", TensorProto.UINT16, [4])])
    found = trt_support.violations(model, "11.1")
    assert {(v.node, v.op_type) for v in found} == {("x", "graph input"), ("y", "graph output"), ("id", "Identity")}
    assert all("UINT16" in v.got for v in found)


def test_reduce_axes_must_be_an_initializer() -> None:
    node = helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="sum", keepdims=0)
    model = _one_node_model(
        node,
        [_value("x", TensorProto.FLOAT, [2, 3]), _value("axes", TensorProto.INT64, [1])],
        [_value("y", TensorProto.FLOAT, ["d"])],
    )
    problem = _only(model)
    assert problem.node == "sum" and "axes (input 1) to be an initializer" in problem.expected


def _attention_model() -> onnx.ModelProto:
    shape = [1, 2, 4, 8]  # [batch, heads, seq, head size]: the 4-D form both tables take
    node = helper.make_node("Attention", ["q", "k", "v"], ["y"], name="attn")
    values = [_value(name, TensorProto.FLOAT, shape) for name in ("q", "k", "v")]
    return _one_node_model(node, values, [_value("y", TensorProto.FLOAT, shape)], opset=23)


def test_opset_23_llm_ops_per_version() -> None:
    """Attention / RMSNormalization / RotaryEmbedding: parsed by 11.1, not by 10.13 (nor its opset range)."""
    table = trt_support.load_table()["versions"]
    llm_ops = {"Attention", "RMSNormalization", "RotaryEmbedding"}
    assert llm_ops <= set(table["11.1"]["ops"]) and llm_ops <= set(table["10.13"]["unsupported_ops"])
    model = _attention_model()
    onnx.checker.check_model(model, full_check=True)
    assert trt_support.violations(model, "11.1") == []
    assert {v.op_type for v in trt_support.violations(model, "10.13")} == {"opset_import", "Attention"}


# --- the table itself ---


def test_table_is_well_formed() -> None:
    table = trt_support.load_table()
    known_dtypes = set(TensorProto.DataType.keys())
    assert resources.files("awq2trt.targets").joinpath(trt_support.TABLE_FILE).is_file()
    assert '"awq2trt.targets" = ["trt_support.json"]' in (ROOT / "pyproject.toml").read_text()  # pip install ships it
    for version, spec in table["versions"].items():
        assert spec["sources"] and all(s["name"] and s["url"].startswith("https://") for s in spec["sources"]), version
        assert spec["notes"] and 9 <= spec["opset"]["min"] <= 21 <= spec["opset"]["max"], version
        assert set(spec["ops"]).isdisjoint(spec["unsupported_ops"]), version
        assert trt_support.dtype_set(spec["parser_dtypes"] + spec["io_dtypes"]) <= known_dtypes
        for op_type, entry in spec["ops"].items():
            where = f"{version} {op_type}"
            assert entry["types"] and trt_support.dtype_set(entry["types"]) <= known_dtypes, where
            for rule in entry.get("rules", []):
                assert rule["kind"] in trt_support.RULES, where
                if "dtypes" in rule:
                    assert trt_support.dtype_set(rule["dtypes"]) <= known_dtypes, where
    notes = " ".join(table["versions"]["10.13"]["notes"] + table["versions"]["11.1"]["notes"])
    assert all(op in notes for op in ("Attention", "RMSNormalization", "RotaryEmbedding"))


# --- TensorRT's own ONNX tooling reads the export ---


def _polygraphy(*args: str) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).with_name("polygraphy")  # the venv's console script, not one on PATH
    return subprocess.run([str(tool), *args], capture_output=True, text=True, timeout=300, check=False)


def _lint_shapes(path: Path) -> list[str]:
    """Consistent feeds for the lint's ONNX Runtime pass: 4 new tokens after 1 cached one, all attended."""
    sidecar = Sidecar.read(path.parent)
    model = onnx.load(str(path), load_external_data=False)
    past = [1, sidecar.num_kv_heads, 1, sidecar.head_dim]
    shapes = {"attention_mask": [1, 5], "num_logits_to_keep": [1], **{name: past for name in sidecar.past_names()}}
    return [f"{v.name}:{shapes.get(v.name, [1, 4])}".replace(" ", "") for v in model.graph.input]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["llama-gemm-g64", "qwen2-gemm-g128"])
def test_polygraphy_inspects_and_lints_the_export(case: str, trt_export: Callable[[str], Path]) -> None:
    path = trt_export(case)
    inspected = _polygraphy("inspect", "model", str(path))
    assert inspected.returncode == 0, inspected.stdout + inspected.stderr
    nodes = len(onnx.load(str(path), load_external_data=False).graph.node)
    assert f"---- {nodes} Node(s) ----" in inspected.stdout, inspected.stdout  # it read the whole graph
    ranges = ["input_ids:[0,100]", "attention_mask:[1,1]", "position_ids:[1,4]", "num_logits_to_keep:[0,0]"]
    linted = _polygraphy("check", "lint", str(path), "--input-shapes", *_lint_shapes(path), "--val-range", *ranges)
    assert linted.returncode == 0 and "PASSED" in linted.stdout + linted.stderr, linted.stdout + linted.stderr


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_graphsurgeon_round_trips_the_export(case: str, trt_export: Callable[[str], Path]) -> None:
    import onnx_graphsurgeon as gs

    original = onnx.load(str(trt_export(case)))
    shared_export = gs.export_onnx(gs.import_onnx(original))
    onnx.checker.check_model(shared_export, full_check=True)
    assert len(shared_export.graph.node) == len(original.graph.node)
    weights = {t.name: numpy_helper.to_array(t) for t in original.graph.initializer if t.data_type == TensorProto.INT4}
    back = {t.name: t for t in shared_export.graph.initializer if t.name in weights}
    assert weights and set(back) == set(weights)
    for name, values in weights.items():  # INT4 weights survive as INT4, value for value
        assert back[name].data_type == TensorProto.INT4
        np.testing.assert_array_equal(numpy_helper.to_array(back[name]), values)
