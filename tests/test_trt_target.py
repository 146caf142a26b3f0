"""The ``trt`` target: INT4 DequantizeLinear + MatMul with the exact zero-point correction, run in ONNX Runtime.

TensorRT itself cannot run here; ONNX Runtime executes the same standard ops (fusing DequantizeLinear + MatMul
into MatMulNBits, exact at accuracy level 0), so the graph's numbers are checked against a numpy
dequantization and against the IR graph of the same checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from awq2trt.frontend.export import export_checkpoint
from awq2trt.quantize import quantize_checkpoint
from awq2trt.runtime import OrtModel
from awq2trt.sidecar import Sidecar
from tests.conftest import copy_with_config, fixture_path, source_path


def _session(model: str | bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")  # exact fused kernel
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _numpy_dequant(codes: np.ndarray, scales: np.ndarray, zeros: np.ndarray, group: int) -> np.ndarray:
    """w[n, k] = (q[n, k] - z[n, k // G]) * s[n, k // G], written out here independently of awq2trt."""
    return (codes.astype(np.float64) - np.repeat(zeros, group, axis=1)) * np.repeat(scales, group, axis=1)


@pytest.mark.parametrize(("zero_points", "bias"), [(True, True), (True, False), (False, False)])
def test_single_node_matches_numpy(zero_points: bool, bias: bool) -> None:
    """One Int4MatMul on a rank-3 activation, lowered, against numpy's dequantize-then-matmul."""
    import onnx_ir as ir

    from awq2trt.ir import int4_op
    from awq2trt.targets.trt import lower_to_trt

    int4_op.register_schema()
    rng = np.random.default_rng(7)
    k, n, group = 256, 48, 64
    codes = rng.integers(0, 16, size=(n, k), dtype=np.uint8)
    scales = (rng.random((n, k // group)) * 0.02 + 0.001).astype(np.float16).astype(np.float32)
    zeros = rng.integers(0, 16, size=(n, k // group), dtype=np.uint8) if zero_points else np.full((n, k // group), 8)
    bias_values = rng.standard_normal(n).astype(np.float32)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    initializers = [numpy_helper.from_array(packed, "m.qweight"), numpy_helper.from_array(scales, "m.scales")]
    inputs = ["a", "m.qweight", "m.scales"]
    if zero_points:
        initializers.append(numpy_helper.from_array(zeros.astype(np.uint8), "m.zeros"))
        inputs.append("m.zeros")
    if bias:
        initializers.append(numpy_helper.from_array(bias_values, "m.bias"))
        inputs += [""] * (4 - len(inputs)) + ["m.bias"]
    node = helper.make_node("Int4MatMul", inputs, ["y"], domain="awq2trt", K=k, N=n, bits=4, block_size=group)
    graph = helper.make_graph(
        [node],
        "one",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", "seq", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", n])],
        initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("awq2trt", 1)])
    model = ir.serde.deserialize_model(proto)
    assert lower_to_trt(model) == 1
    lowered = ir.serde.serialize_model(model)
    onnx.checker.check_model(lowered, full_check=True)
    ops = [n.op_type for n in lowered.graph.node]
    assert "Int4MatMul" not in ops and ops.count("DequantizeLinear") == 1
    assert ("ReduceSum" in ops) is zero_points  # symmetric nodes need no correction term
    dequantize = next(n for n in lowered.graph.node if n.op_type == "DequantizeLinear")
    assert len(dequantize.input) == 2  # no zero point: TensorRT takes only zero-valued ones
    weight = next(t for t in lowered.graph.initializer if t.name == dequantize.input[0])
    assert weight.data_type == TensorProto.INT4 and list(weight.dims) == [k, n]
    a = rng.standard_normal((2, 5, k)).astype(np.float32)
    expected = a.astype(np.float64) @ _numpy_dequant(codes, scales, zeros, group).T
    if bias:
        expected += bias_values
    got = _session(lowered.SerializeToString()).run(None, {"a": a})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def _symmetric_checkpoint(tmp: Path) -> Path:
    source = copy_with_config(source_path("mistral"), tmp / "mistral")
    return quantize_checkpoint(source, tmp / "mistral-q", method="rtn", group_size=32, zero_point=False, progress=False)


@pytest.mark.parametrize("case", ["llama-gemm-g64", "qwen2-gemm-g128", "mistral-symmetric"])
def test_export_matches_the_ir_graph(case: str, tmp_path: Path) -> None:
    """Asymmetric AutoAWQ (Llama), with q/k/v bias (Qwen2), and symmetric: the trt graph's logits are the IR's."""
    checkpoint = _symmetric_checkpoint(tmp_path) if case == "mistral-symmetric" else fixture_path(case)
    ir_out = export_checkpoint(checkpoint, tmp_path / "ir", progress=False)
    trt_out = export_checkpoint(checkpoint, tmp_path / "trt", target="trt", progress=False)
    assert trt_out.passes == ir_out.passes and trt_out.int4_nodes == ir_out.int4_nodes
    graph = onnx.load(str(trt_out.output / "model.onnx"), load_external_data=False).graph
    domains = {node.domain for node in graph.node}
    assert domains <= {"", "ai.onnx"}, domains  # standard ops only: no awq2trt or ORT contrib node is left
    dequantize = [node for node in graph.node if node.op_type == "DequantizeLinear"]
    assert len(dequantize) == trt_out.int4_nodes and all(len(node.input) == 2 for node in dequantize)
    corrections = sum(node.op_type == "ReduceSum" for node in graph.node)
    assert corrections == (0 if case == "mistral-symmetric" else trt_out.int4_nodes)
    sidecar = Sidecar.read(trt_out.output)
    assert sidecar.target == "trt" and not sidecar.kv_cache.shared_buffer and sidecar.target_options == {}

    ids = np.arange(3, 19, dtype=np.int64)[None]
    feeds = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "position_ids": np.arange(ids.shape[1], dtype=np.int64)[None],
        "num_logits_to_keep": np.zeros(1, np.int64),
    }
    for name in sidecar.past_names():
        feeds[name] = np.zeros((1, sidecar.num_kv_heads, 0, sidecar.head_dim), np.float32)
    reference = _session(str(ir_out.output / "model.onnx")).run(["logits"], feeds)[0]
    lowered = _session(str(trt_out.output / "model.onnx")).run(["logits"], feeds)[0]
    assert np.abs(lowered - reference).max() <= 1e-5 * max(1.0, float(np.abs(reference).max()))


def test_runtime_generates_the_ir_tokens(tmp_path: Path) -> None:
    """The product runtime drives a trt folder as it drives the IR one (ONNX Runtime on the CPU)."""
    checkpoint = fixture_path("llama-gemm-g64")
    prompt = list(range(3, 15))
    ids = []
    for target in ("ir", "trt"):
        folder = export_checkpoint(checkpoint, tmp_path / target, target=target, progress=False).output
        ids.append(OrtModel.open(folder).generate(prompt, 24, stop_at_eos=False).ids[0])
    assert ids[0] == ids[1] and len(ids[0]) == 24


def test_ort_options_are_refused(tmp_path: Path) -> None:
    from awq2trt.errors import Awq2TrtError

    with pytest.raises(Awq2TrtError, match="--lm-head: expected the default with --target trt"):
        export_checkpoint(fixture_path("llama-gemm-g64"), tmp_path / "x", target="trt", lm_head="int8")
    assert not (tmp_path / "x").exists()
