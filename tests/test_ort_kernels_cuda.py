"""The CUDA half of libawq2trt_ort (plugins/onnxruntime built with -DAWQ2TRT_ORT_CUDA=ON): it compiles with nvcc
and -Werror, the same library still loads and computes on a CPU-only onnxruntime, the runtime refuses
``--provider cuda`` with a library or an export that cannot use it, and (marked ``gpu``, where onnxruntime has the
CUDA provider) the GPU kernel matches numpy and gives the CPU path's greedy tokens.

The repack the CUDA op runs on the device (IR inputs to the kernels' layout) is the same code as
``awq2trt_host_repack``, which tests/test_cuda_kernels.py checks against awq2trt/cuda_layout.py on the CPU.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import onnxruntime as ort
import pytest

from awq2trt.errors import Awq2TrtError
from awq2trt.runtime import kernels as kernel_lookup
from awq2trt.runtime.session import OrtModel
from tests.conftest import int4_node_model

HAS_CUDA_PROVIDER = "CUDAExecutionProvider" in ort.get_available_providers()
NEEDS_CUDA_PROVIDER = pytest.mark.skipif(
    not HAS_CUDA_PROVIDER, reason="this onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu and a GPU needed)"
)
CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture(scope="module")
def cuda_library(ort_kernels_cuda_library: Path) -> ctypes.CDLL:
    handle = ctypes.CDLL(str(ort_kernels_cuda_library.resolve()))
    handle.awq2trt_ort_compute_count.restype = ctypes.c_uint64
    handle.awq2trt_ort_cuda_compute_count.restype = ctypes.c_uint64
    return handle


def _reference(a: np.ndarray, codes: np.ndarray, scales: np.ndarray, zeros: np.ndarray, group: int) -> np.ndarray:
    weight = (codes.astype(np.float32) - np.repeat(zeros.astype(np.float32), group, axis=1)) * np.repeat(
        scales.astype(np.float32), group, axis=1
    )
    return a.astype(np.float32) @ weight.T


def _session(library: Path, proto: Any, providers: list[str]) -> ort.InferenceSession:
    """A session on *proto* with float32 input and output around the 16-bit node (numpy has no bfloat16 that
    onnxruntime's Python binding takes), so the test feeds float32 and the graph casts."""
    from onnx import TensorProto, helper

    graph = proto.graph
    element = graph.input[0].type.tensor_type.elem_type
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.elem_type = TensorProto.FLOAT
        value.name += "32"
    graph.node.insert(0, helper.make_node("Cast", ["a32"], ["a"], to=element))
    graph.node.append(helper.make_node("Cast", ["y"], ["y32"], to=TensorProto.FLOAT))
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(library.resolve()))
    return ort.InferenceSession(proto.SerializeToString(), options, providers=providers)


def test_the_cuda_build_reports_its_architectures(ort_kernels_cuda_library: Path) -> None:
    library = kernel_lookup.check_library(ort_kernels_cuda_library, "--kernels")
    assert library.has_cuda, library.build_info
    assert library.build_info is not None and "cuda 80-real 90-real 90-virtual" in library.build_info
    assert (ort_kernels_cuda_library.parent / "cuda" / "libawq2trt_cuda.so").is_file()  # plugins/cuda came along


def test_the_cpu_only_build_says_it_has_no_cuda(ort_kernels_library: Path) -> None:
    assert not kernel_lookup.check_library(ort_kernels_library, "--kernels").has_cuda


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_the_cuda_build_still_computes_on_the_cpu(
    ort_kernels_cuda_library: Path, cuda_library: ctypes.CDLL, dtype: Any
) -> None:
    """Registering CUDA-provider kernels must not disturb a CPU session: the 16-bit node runs our CPU kernel."""
    rng = np.random.default_rng(7)
    proto, codes, scales, zeros, _ = int4_node_model(rng, k=128, n=24, group=64, zero_points=True, bias=False,
                                                     dtype=dtype)  # fmt: skip
    session = _session(ort_kernels_cuda_library, proto, ["CPUExecutionProvider"])
    a = rng.standard_normal((1, 3, 128)).astype(np.float32).astype(dtype).astype(np.float32)
    before_cpu, before_cuda = cuda_library.awq2trt_ort_compute_count(), cuda_library.awq2trt_ort_cuda_compute_count()
    (y,) = session.run(None, {"a32": a})
    assert cuda_library.awq2trt_ort_compute_count() == before_cpu + 1
    assert cuda_library.awq2trt_ort_cuda_compute_count() == before_cuda
    want = _reference(a[0], codes, scales, zeros, 64)
    np.testing.assert_allclose(y[0], want, rtol=2e-2, atol=2e-2 * float(np.abs(want).max()))


def test_cuda_provider_needs_a_cuda_build(ort_kernels_library: Path) -> None:
    library = kernel_lookup.check_library(ort_kernels_library, "--kernels")
    with pytest.raises(Awq2TrtError, match="-DAWQ2TRT_ORT_CUDA=ON") as error:
        kernel_lookup.check_providers(library, CUDA, "float16", "out/awq2trt.json")
    assert str(ort_kernels_library) in str(error.value)
    kernel_lookup.check_providers(library, ["CPUExecutionProvider"], "float32", "out/awq2trt.json")  # CPU: fine


def test_cuda_provider_needs_a_16_bit_export(ort_kernels_cuda_library: Path) -> None:
    library = kernel_lookup.check_library(ort_kernels_cuda_library, "--kernels")
    with pytest.raises(Awq2TrtError, match=r"out/awq2trt.json: expected an export with --dtype fp16 or bf16"):
        kernel_lookup.check_providers(library, CUDA, "float32", "out/awq2trt.json")
    kernel_lookup.check_providers(library, CUDA, "float16", "out/awq2trt.json")


def test_cuda_provider_needs_the_rows_weight_layout(shared_export: Any, ort_kernels_cuda_library: Path) -> None:
    """tiles16 (the ort-kernels default at level 4) is the CPU kernel's layout: --provider cuda on it is one error
    at open."""
    export = shared_export("llama-gemm-g64", "ort-kernels", dtype="float16", accuracy_level=0, weight_layout="tiles16")
    with pytest.raises(Awq2TrtError, match=r"awq2trt.json: expected an export with --weight-layout rows for our CUDA"):
        OrtModel.open(export.output, providers=CUDA, kernels=ort_kernels_cuda_library)


def test_open_refuses_cuda_with_a_cpu_only_library(shared_export: Any, ort_kernels_library: Path) -> None:
    """Before any session exists: OrtModel.open names the library and how to rebuild it."""
    export = shared_export("llama-gemm-g64", "ort-kernels", dtype="float16", accuracy_level=0)
    with pytest.raises(Awq2TrtError, match="CUDA kernels for --provider cuda"):
        OrtModel.open(export.output, providers=CUDA, kernels=ort_kernels_library)


@pytest.mark.gpu
@NEEDS_CUDA_PROVIDER
@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize(("m", "n", "k", "group", "zero_points", "bias"), [
    (1, 24, 128, 64, True, False), (5, 9, 256, 32, False, True), (64, 200, 512, 128, True, True),
    (128, 64, 192, 64, True, False),
])  # fmt: skip
def test_cuda_kernel_matches_numpy(
    ort_kernels_cuda_library: Path, cuda_library: ctypes.CDLL, dtype: Any, m: int, n: int, k: int, group: int,
    zero_points: bool, bias: bool,
) -> None:  # fmt: skip
    rng = np.random.default_rng(m * n + k)
    proto, codes, scales, zeros, bias_values = int4_node_model(
        rng, k=k, n=n, group=group, zero_points=zero_points, bias=bias, dtype=dtype
    )
    session = _session(ort_kernels_cuda_library, proto, CUDA)
    a = rng.standard_normal((1, m, k)).astype(np.float32).astype(dtype).astype(np.float32)
    before = cuda_library.awq2trt_ort_cuda_compute_count()
    for _ in range(2):  # the second run uses the repacked weight the first one made
        (y,) = session.run(None, {"a32": a})
    assert cuda_library.awq2trt_ort_cuda_compute_count() == before + 2
    want = _reference(a[0], codes, scales, zeros, group) + (bias_values.astype(np.float32) if bias else 0)
    tolerance = 1e-2 if dtype == np.float16 else 4e-2
    np.testing.assert_allclose(y[0], want, rtol=tolerance, atol=tolerance * float(np.abs(want).max()))


@pytest.mark.gpu
@NEEDS_CUDA_PROVIDER
def test_cuda_path_gives_the_cpu_paths_greedy_tokens(
    shared_export: Any, ort_kernels_cuda_library: Path, cuda_library: ctypes.CDLL
) -> None:
    export = shared_export("llama-gemm-g64", "ort-kernels", dtype="float16", accuracy_level=0, weight_layout="rows")
    prompt = [1, 17, 42, 7, 99, 3, 11, 5]
    cpu = OrtModel.open(export.output, threads=2, kernels=ort_kernels_cuda_library)
    gpu = OrtModel.open(export.output, providers=CUDA, kernels=ort_kernels_cuda_library)
    before = cuda_library.awq2trt_ort_cuda_compute_count()
    on_gpu = gpu.generate([prompt], 16, stop_at_eos=False)
    assert cuda_library.awq2trt_ort_cuda_compute_count() > before
    on_cpu = cpu.generate([prompt], 16, stop_at_eos=False)
    assert list(on_gpu.ids[0]) == list(on_cpu.ids[0])
