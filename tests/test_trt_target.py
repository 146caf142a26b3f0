"""The ``trt`` target: INT4 DequantizeLinear + MatMul with the exact zero-point correction, run in ONNX Runtime.

TensorRT itself cannot run here; ONNX Runtime executes the same standard ops (fusing DequantizeLinear + MatMul
into MatMulNBits, exact at accuracy level 0), so the graph's numbers are checked against a numpy
dequantization and against the IR graph of the same checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from awq2trt.frontend.export import ExportResult, export_checkpoint
from awq2trt.runtime import OrtModel
from awq2trt.sidecar import Sidecar
from tests.conftest import ALL_FIXTURES, SYMMETRIC_CASE, fixture_path, int4_node_model
from tests.ort_driver import IrSession


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
    proto, codes, scales, zeros, bias_values = int4_node_model(
        rng, k=k, n=n, group=group, zero_points=zero_points, bias=bias, dtype=np.float32
    )
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


Export = Callable[..., ExportResult]


def assert_trt_equals_ir(ir_folder: Path, trt_folder: Path, prompt: np.ndarray, steps: int = 32) -> float:
    """Prefill + 8 decode steps of logits within float rounding, and *steps* greedy tokens identical.

    Returns the largest logits difference over those 9 forwards.  The bound is 1e-3 absolute; only fp32
    summation order differs, but the correction adds a second large term (group sums @ s(8 - z)) that cancels
    against the first, so the rounding grows with the activations: measured 5e-7 on the tiny fixtures, 7.7e-5
    on SmolLM2 RTN g64 and 4.7e-4 on SmolLM2 AWQ g64 (whose scaled channels carry larger activations).
    """
    ir_ids, ir_logits = IrSession(ir_folder).greedy(prompt, steps)
    trt_ids, trt_logits = IrSession(trt_folder).greedy(prompt, steps)
    worst = max(float(np.abs(trt_logits[step] - ir_logits[step]).max()) for step in range(9))
    assert worst <= 1e-3, worst
    np.testing.assert_array_equal(trt_ids, ir_ids)
    return worst


@pytest.mark.parametrize("case", [*sorted(ALL_FIXTURES), SYMMETRIC_CASE])
def test_export_matches_the_ir_graph(case: str, shared_export: Export) -> None:
    """Every peer-made fixture (AutoAWQ GEMM/GEMV, compressed-tensors, llm-awq; Qwen2 biases; g64/g128) and a
    symmetric g32 checkpoint: the fp32 trt graph computes the IR graph's logits and greedy tokens."""
    ir_out, trt_out = shared_export(case, "ir"), shared_export(case, "trt", "fp32")
    assert trt_out.passes == ir_out.passes and trt_out.int4_nodes == ir_out.int4_nodes
    graph = onnx.load(str(trt_out.output / "model.onnx"), load_external_data=False).graph
    domains = {node.domain for node in graph.node}
    assert domains <= {"", "ai.onnx"}, domains  # standard ops only: no awq2trt or ORT contrib node is left
    dequantize = [node for node in graph.node if node.op_type == "DequantizeLinear"]
    assert len(dequantize) == trt_out.int4_nodes and all(len(node.input) == 2 for node in dequantize)
    corrections = sum(node.op_type == "ReduceSum" for node in graph.node)
    assert corrections == (0 if case == SYMMETRIC_CASE else trt_out.int4_nodes)
    sidecar = Sidecar.read(trt_out.output)
    assert sidecar.target == "trt" and not sidecar.kv_cache.shared_buffer and sidecar.target_options == {}
    prompt = np.arange(3, 19, dtype=np.int64)[None]
    assert_trt_equals_ir(ir_out.output, trt_out.output, prompt)


def test_fp16_is_the_default(shared_export: Export) -> None:
    """TensorRT's int4 GEMMs take fp16 activations: the default trt export is fp16 and tracks the fp32 one."""
    half, full = shared_export("qwen2-gemm-g128", "trt"), shared_export("qwen2-gemm-g128", "trt", "fp32")
    assert Sidecar.read(half.output).dtype == "float16"
    graph = onnx.load(str(half.output / "model.onnx"), load_external_data=False).graph
    scales = {i.name: i for i in graph.initializer}
    dequantize = [node for node in graph.node if node.op_type == "DequantizeLinear"]
    assert all(scales[node.input[1]].data_type == TensorProto.FLOAT16 for node in dequantize)
    prompt = np.arange(3, 19, dtype=np.int64)[None]
    half_logits = IrSession(half.output).prefill(prompt)[0]
    full_logits = IrSession(full.output).prefill(prompt)[0]
    assert half_logits.dtype == np.float16  # the graph computes in fp16 end to end, logits included
    error = np.abs(half_logits.astype(np.float32) - full_logits).max()
    assert error <= 2e-3 * max(1.0, float(np.abs(full_logits).max())), error


def test_runtime_generates_the_ir_tokens(shared_export: Export) -> None:
    """The product runtime drives a trt folder as it drives the IR one (ONNX Runtime on the CPU)."""
    prompt = list(range(3, 15))
    ids = []
    for result in (shared_export("llama-gemm-g64", "ir"), shared_export("llama-gemm-g64", "trt", "fp32")):
        ids.append(OrtModel.open(result.output).generate(prompt, 24, stop_at_eos=False).ids[0])
    assert ids[0] == ids[1] and len(ids[0]) == 24


def test_ort_options_are_refused(tmp_path: Path) -> None:
    from awq2trt.errors import Awq2TrtError

    with pytest.raises(Awq2TrtError, match="--lm-head: expected the default with --target trt"):
        export_checkpoint(fixture_path("llama-gemm-g64"), tmp_path / "x", target="trt", lm_head="int8")
    assert not (tmp_path / "x").exists()
