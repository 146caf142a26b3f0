"""plugins/tensorrt and the ``trt-plugin`` target.

The plugin compiles only against TensorRT's headers, which no package ships: those tests are marked
``tensorrt`` and skip, with the reason, unless ``TENSORRT_INCLUDE_DIR`` points at a release's include/ (10.x or
11.x).  The configure step without headers (the plugin skipped with its reason, the kernels still built) and
the whole target run everywhere: the graph's structure, the plugin node's attributes and the ONNX checker, and,
since TensorRT cannot run here, the node's weights read back with numpy against the IR's own weights.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from awq2trt.cuda_layout import from_cuda, padded_rows
from awq2trt.errors import Awq2TrtError
from awq2trt.frontend.export import ExportResult
from awq2trt.targets import trt_plugin
from tests.conftest import ROOT, SYMMETRIC_CASE, int4_node_model

PLUGIN = ROOT / "plugins" / "tensorrt"
NVCC = "/usr/local/cuda/bin/nvcc"
Export = Callable[..., ExportResult]


def _cmake(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    if shutil.which("cmake") is None:
        pytest.fail("cmake is missing: plugins/ must configure in CI")
    return subprocess.run(["cmake", *args], capture_output=True, text=True, timeout=timeout, check=False)


def test_plugin_is_skipped_with_the_reason_without_headers(tmp_path: Path) -> None:
    done = _cmake("-S", str(PLUGIN), "-B", str(tmp_path), f"-DCMAKE_CUDA_COMPILER={NVCC}", "-DTENSORRT_INCLUDE_DIR=")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "AwqGemm TensorRT plugin skipped" in done.stderr and "TENSORRT_INCLUDE_DIR" in done.stderr


@pytest.fixture(scope="module")
def plugin_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    headers = os.environ.get("TENSORRT_INCLUDE_DIR")
    if not headers or not (Path(headers) / "NvInferRuntime.h").is_file():
        pytest.skip(
            "TensorRT's headers are not given: set TENSORRT_INCLUDE_DIR to a TensorRT release's include/ "
            "(10.x or 11.x; the public NVIDIA/TensorRT repository's include/ folder)"
        )
    build = tmp_path_factory.mktemp("trt-plugin")
    for args in (
        ("-S", str(PLUGIN), "-B", str(build), f"-DCMAKE_CUDA_COMPILER={NVCC}", f"-DTENSORRT_INCLUDE_DIR={headers}"),
        ("--build", str(build), "-j2"),
    ):
        done = _cmake(*args)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return build


@pytest.mark.tensorrt
def test_plugin_fields_formats_and_shapes(plugin_build: Path) -> None:
    """The C++ logic test through the library's own getCreators: field round trip, validation, formats."""
    done = subprocess.run(
        [str(plugin_build / "awq2trt_trt_logic_test"), str(plugin_build / "libawq2trt_trt.so")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and " 0 failures" in done.stdout, done.stdout + done.stderr


@pytest.mark.tensorrt
def test_plugin_exports_only_its_entry_points(plugin_build: Path) -> None:
    done = subprocess.run(
        ["nm", "-D", "--defined-only", str(plugin_build / "libawq2trt_trt.so")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    symbols = {line.split()[-1] for line in done.stdout.splitlines() if " T " in line}
    assert {"getCreators", "setLoggerFinder", "awq2trt_int4_gemm"} <= symbols
    assert not any("awq2trt" in s and s.startswith("_Z") for s in symbols), "C++ symbols leak out"


# ---- the target ------------------------------------------------------------------------------------------------


def _one_node_model(zero_points: bool, bias: bool, k: int = 256, n: int = 45, group: int = 64) -> tuple:
    rng = np.random.default_rng(int(zero_points) * 2 + int(bias))
    return int4_node_model(rng, k=k, n=n, group=group, zero_points=zero_points, bias=bias, dtype=np.float16)


def _lower(proto: onnx.ModelProto) -> onnx.ModelProto:
    import onnx_ir as ir

    from awq2trt.ir import int4_op

    int4_op.register_schema()
    trt_plugin.register_schema()
    model = ir.serde.deserialize_model(proto)
    assert trt_plugin.lower_to_plugin(model) == 1
    return ir.serde.serialize_model(model)


def _node_weights(model: onnx.ModelProto, node: onnx.NodeProto, base: Path | None = None) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t, base_dir=str(base) if base else "") for t in model.graph.initializer}
    names = ["codes", "scales"] + (["zeros"] if _attr(node, "has_zero_points") else [])
    return {key: values[name] for key, name in zip(names, node.input[1:], strict=False)}


def _attr(node: onnx.NodeProto, name: str) -> object:
    return helper.get_attribute_value(next(a for a in node.attribute if a.name == name))


@pytest.mark.parametrize(("zero_points", "bias"), [(True, True), (True, False), (False, False), (False, True)])
def test_single_node_lowering(zero_points: bool, bias: bool) -> None:
    """One Int4MatMul becomes one AwqGemm node whose weights, read back with numpy, are the IR's weight."""
    proto, codes, scales, zeros, _ = _one_node_model(zero_points, bias)
    lowered = _lower(proto)
    onnx.checker.check_model(lowered, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(lowered, strict_mode=True)
    (node,) = lowered.graph.node
    assert (node.op_type, node.domain) == ("AwqGemm", "awq2trt")
    assert not lowered.functions  # the parser would inline a function of that name instead of the plugin
    k, n, g = 256, 45, 64
    want = {"K": k, "N": n, "group_size": g, "has_zero_points": int(zero_points), "has_bias": int(bias), "dtype": 0}
    for name, value in want.items():
        assert _attr(node, name) == value, name
    assert _attr(node, "plugin_version") == b"1" and _attr(node, "plugin_namespace") == b"awq2trt"
    assert len(node.input) == 3 + int(zero_points) + int(bias)
    if bias:
        assert node.input[-1] == "m.bias"
    types = {t.name: t for t in lowered.graph.initializer}
    assert types[node.input[1]].data_type == TensorProto.INT32
    assert list(types[node.input[1]].dims) == [padded_rows(n) * k // 8]
    assert types[node.input[2]].data_type == TensorProto.FLOAT16
    assert list(types[node.input[2]].dims) == [k // g, padded_rows(n)]
    if zero_points:
        assert types[node.input[3]].data_type == TensorProto.INT32
        assert list(types[node.input[3]].dims) == [k // g, padded_rows(n) // 4]
    y = next(v for v in inferred.graph.output if v.name == "y")
    assert y.type.tensor_type.elem_type == TensorProto.FLOAT16
    # The plugin layout the node carries, decoded by from_cuda, then dequantized with numpy alone.
    weight = from_cuda(trt_plugin.plugin_weight(_node_weights(lowered, node), n, k, g))
    np.testing.assert_array_equal(weight.qweight, codes)
    np.testing.assert_array_equal(weight.scales, scales)
    np.testing.assert_array_equal(weight.zeros, zeros)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2, 3, k)).astype(np.float16).astype(np.float64)
    dense = (codes.astype(np.float64) - np.repeat(zeros, g, 1)) * np.repeat(scales.astype(np.float64), g, 1)
    got_dense = (weight.qweight.astype(np.float64) - np.repeat(weight.zeros, g, 1)) * np.repeat(weight.scales, g, 1)
    np.testing.assert_array_equal(a @ got_dense.T, a @ dense.T)


def test_refuses_shapes_the_kernels_do_not_take() -> None:
    proto, *_ = _one_node_model(True, False, k=96, group=32)
    with pytest.raises(Awq2TrtError, match="divisible by 64"):
        _lower(proto)


def test_refuses_fp32_activations(tmp_path: Path) -> None:
    from awq2trt.frontend.export import export_checkpoint
    from tests.conftest import fixture_path

    with pytest.raises(Awq2TrtError, match="fp16 or bf16"):
        export_checkpoint(fixture_path("llama-gemm-g64"), tmp_path / "out", target="trt-plugin", dtype="fp32",
                          progress=False)  # fmt: skip
    assert not (tmp_path / "out").exists()  # no half-written folder


@pytest.mark.parametrize("case", ["llama-gemm-g64", "qwen2-gemm-g128", SYMMETRIC_CASE])
def test_export_carries_the_ir_weights(case: str, shared_export: Export) -> None:
    """A whole export: every Int4MatMul of the IR graph is one AwqGemm node carrying the same weight."""
    ir_out, plugin_out = shared_export(case, "ir"), shared_export(case, "trt-plugin")  # fp32 IR: fp16 scales exactly
    assert plugin_out.int4_nodes == ir_out.int4_nodes > 0
    ir_model = onnx.load(str(ir_out.output / "model.onnx"))
    plugin_model = onnx.load(str(plugin_out.output / "model.onnx"))
    plugin_nodes = [nd for nd in plugin_model.graph.node if nd.op_type == "AwqGemm"]
    ir_nodes = [nd for nd in ir_model.graph.node if nd.op_type == "Int4MatMul"]
    assert len(plugin_nodes) == len(ir_nodes)
    assert not any(nd.domain == "awq2trt" and nd.op_type != "AwqGemm" for nd in plugin_model.graph.node)
    assert {o.domain: o.version for o in plugin_model.opset_import}.get("awq2trt") == 1
    ir_values = {t.name: numpy_helper.to_array(t) for t in ir_model.graph.initializer}
    for ir_node, node in zip(ir_nodes, plugin_nodes, strict=True):
        k, n, g = (_attr(ir_node, name) for name in ("K", "N", "block_size"))
        assert (_attr(node, "K"), _attr(node, "N"), _attr(node, "group_size")) == (k, n, g)
        has_zp = len(ir_node.input) > 3 and ir_node.input[3] != ""
        assert _attr(node, "has_zero_points") == int(has_zp)
        weight = from_cuda(trt_plugin.plugin_weight(_node_weights(plugin_model, node), n, k, g))
        packed = ir_values[ir_node.input[1]]
        codes = np.empty((n, packed.shape[1] * 2), np.uint8)
        codes[:, 0::2], codes[:, 1::2] = packed & 0xF, packed >> 4
        np.testing.assert_array_equal(weight.qweight, codes[:, :k])
        np.testing.assert_array_equal(weight.scales, ir_values[ir_node.input[2]])
        zeros = ir_values[ir_node.input[3]] if has_zp else np.full(weight.zeros.shape, 8)
        np.testing.assert_array_equal(weight.zeros, zeros)


@pytest.mark.gpu
@pytest.mark.parametrize(("zero_points", "bias"), [(True, True), (False, False)])
def test_plugin_node_weights_through_the_kernels(
    zero_points: bool, bias: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """What TensorRT would hand the plugin (the lowered node's initializers), run by the CUDA kernels, against
    numpy's dequantize-then-matmul (GPU-unverified until a GPU runs it)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU (torch.cuda.is_available() is False)")
    from awq2trt import cuda_kernels
    from tests.test_cuda_kernels import run_gemm

    library, _ = cuda_kernels.build_library(tmp_path_factory.mktemp("cuda-for-plugin"))
    kernels = cuda_kernels.Kernels(library)
    proto, codes, scales, zeros, bias_values = _one_node_model(zero_points, bias)
    lowered = _lower(proto)
    (node,) = lowered.graph.node
    k, n, g = 256, 45, 64
    weight = trt_plugin.plugin_weight(_node_weights(lowered, node), n, k, g)
    a = torch.randn((6, k), device="cuda").half()
    bias_t = torch.from_numpy(bias_values).cuda() if bias else None
    got = run_gemm(torch, kernels, a, weight, bias_t, symmetric=not zero_points).double().cpu().numpy()
    dense = (codes.astype(np.float64) - np.repeat(zeros, g, 1)) * np.repeat(scales.astype(np.float64), g, 1)
    want = a.double().cpu().numpy() @ dense.astype(np.float16).astype(np.float64).T
    if bias:
        want += bias_values.astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=0, atol=2**-10 * np.abs(want).max())
