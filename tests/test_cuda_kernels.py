"""plugins/cuda: the weight layout, the CUDA build (warnings as errors, no register spills), the shared
__host__ __device__ dequantization against numpy, and (on a GPU) the kernels against torch.

The library is built once per test session into a temporary folder with nvcc (CI has nvcc 13, no GPU).  The
GPU tests are marked ``gpu`` and skip, with the reason, where torch sees no CUDA device.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awq2trt import cuda_kernels
from awq2trt.cuda_layout import CHUNK_K, CudaWeight, check_shape, from_cuda, padded_rows, to_cuda
from awq2trt.errors import Awq2TrtError
from awq2trt.quant_weight import QuantWeight
from tests.conftest import ROOT


def random_weight(rng: np.random.Generator, n: int, k: int, g: int, zero_point: bool = True) -> QuantWeight:
    groups = k // g
    zeros = rng.integers(0, 16, (n, groups), dtype=np.uint8) if zero_point else np.full((n, groups), 8, np.uint8)
    scales = (rng.random((n, groups)) * 0.02 + 1e-3).astype(np.float16)
    return QuantWeight(rng.integers(0, 16, (n, k), dtype=np.uint8), scales, zeros, g)


def layout_reference(weight: CudaWeight) -> np.ndarray:
    """Codes [N, K] read back element by element with the formula of cuda_layout's docstring (no shared code)."""
    n, k = weight.n, weight.k
    words = weight.codes.view(np.uint32)
    chunks = k // 64
    out = np.empty((n, k), np.uint8)
    for row in range(n):
        tile, r = divmod(row, 8)
        for col in range(k):
            j, within = divmod(col, 64)
            step, s_off = divmod(within, 16)
            c = (s_off % 8) // 2
            lane = 4 * r + c
            h = step // 2
            p = 2 * (step % 2) + (1 if s_off >= 8 else 0)
            nibble = p + 4 * (s_off % 2)
            paired = (j // 2) * 2 + 1 < chunks
            at = tile * k + (j // 2) * 128 + (lane * 4 + (j % 2) * 2 + h if paired else lane * 2 + h)
            out[row, col] = (int(words[at]) >> (4 * nibble)) & 0xF
    return out


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    chunks=st.integers(1, 7),
    g=st.sampled_from([32, 64, 128]),
    zero_point=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_repack_round_trip(n: int, chunks: int, g: int, zero_point: bool, seed: int) -> None:
    k = chunks * CHUNK_K
    if k % g:
        g = 32
    weight = random_weight(np.random.default_rng(seed), n, k, g, zero_point)
    cuda = to_cuda(weight)
    n_pad = padded_rows(n)
    assert cuda.codes.dtype == np.int32 and cuda.codes.shape == (n_pad * k // 8,)
    assert cuda.scales.shape == (k // g, n_pad) and cuda.zeros.shape == (k // g, n_pad)
    assert from_cuda(cuda).equals(weight)


@pytest.mark.parametrize(("n", "k"), [(8, 64), (9, 128), (3, 192), (16, 320)])
def test_layout_matches_documented_formula(n: int, k: int) -> None:
    weight = random_weight(np.random.default_rng(n * k), n, k, 32)
    cuda = to_cuda(weight)
    np.testing.assert_array_equal(layout_reference(cuda), weight.qweight)
    np.testing.assert_array_equal(cuda.scales[:, :n], weight.scales.T)
    assert not cuda.scales[:, n:].any() and not cuda.zeros[:, n:].any()  # padded rows are zero


def test_bit_layout_by_hand() -> None:
    """Row 0, chunk 0, lane 0 (c = 0), word 0: channels 0, 1 (pair 0), 8, 9 (pair 1), 16, 17, 24, 25."""
    codes = np.zeros((8, 64), np.uint8)
    for nibble, channel in enumerate((0, 8, 16, 24, 1, 9, 17, 25)):
        codes[0, channel] = nibble + 1
    weight = QuantWeight(codes, np.ones((8, 2), np.float16), np.full((8, 2), 8, np.uint8), 32)
    assert int(to_cuda(weight).codes.view(np.uint32)[0]) == 0x87654321


def test_shape_contract() -> None:
    check_shape(5, 128, 64)
    with pytest.raises(Awq2TrtError, match="divisible by 64"):
        check_shape(8, 96, 32)
    with pytest.raises(Awq2TrtError, match="multiple of 32"):
        check_shape(8, 128, 16)


# ---- the CUDA build -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cuda_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """libawq2trt_cuda built once per session.  No skip: nvcc is on every machine and CI must build it."""
    if not cuda_kernels.NVCC.is_file() and shutil.which("nvcc") is None:
        pytest.fail("nvcc is missing (CUDA 12+ toolkit at /usr/local/cuda): plugins/cuda must compile in CI")
    return cuda_kernels.build_library(tmp_path_factory.mktemp("cuda-kernels"))


def test_kernels_compile_without_spills(cuda_build: tuple[Path, str]) -> None:
    _, log = cuda_build
    figures = cuda_kernels.ptxas_figures(log)
    gemm = [f for f in figures if "int4_gemm_kernel" in f.function]
    # 2 dtypes x 3 M-tile counts x 2 architectures
    assert len(gemm) == 12, f"expected 12 GEMM kernel builds in the log, found {len(gemm)}:\n{log[-3000:]}"
    assert {f.arch for f in figures} == {"sm_80", "sm_90"}
    for f in figures:
        assert f.spill_stores == 0 and f.spill_loads == 0 and f.stack_bytes == 0, f
        assert f.registers <= 255, f
    summary = "\n".join(f"{f.arch} {f.function}: {f.registers} registers" for f in figures)
    print(summary)  # the README's table comes from here (pytest -s)


def test_library_exports_the_c_abi(cuda_build: tuple[Path, str]) -> None:
    kernels = cuda_kernels.Kernels(cuda_build[0])
    assert kernels.split_k(1, 4096, 4096, 132) > 1  # decode: the weight stream is split along K
    assert kernels.split_k(128, 28672, 8192, 132) == 1
    for m, n, k in ((1, 4096, 4096), (4, 576, 576), (16, 11008, 4096)):
        splits = kernels.split_k(m, n, k, 132)
        size = kernels.workspace_size(m, n, k, 132)
        assert size == (0 if splits == 1 else splits * m * n * 4)
        assert splits <= max(1, (k // 64) // 4)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize(("n", "k", "g", "zero_point"), [(9, 128, 32, True), (24, 576, 64, True), (5, 256, 128, False)])
def test_host_dequantize_matches_numpy(
    cuda_build: tuple[Path, str], dtype: str, n: int, k: int, g: int, zero_point: bool
) -> None:
    """The kernels' own __host__ __device__ dequantization equals numpy's fp32 (q - z) * s rounded once."""
    kernels = cuda_kernels.Kernels(cuda_build[0])
    rng = np.random.default_rng(k + n)
    weight = random_weight(rng, n, k, g, zero_point)
    np_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    if dtype == "bfloat16":  # scales that bf16 holds exactly, so numpy's weight and the kernels' agree bit for bit
        weight = QuantWeight(weight.qweight, weight.scales.astype(ml_dtypes.bfloat16).astype(np.float32),
                             weight.zeros, g)  # fmt: skip
    cuda = to_cuda(weight, scale_dtype=np_dtype)
    got = kernels.host_dequantize(cuda, cuda_kernels.FP16 if dtype == "float16" else cuda_kernels.BF16)
    want = weight.dequantize(np.float32).astype(np_dtype).astype(np.float32)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("n", "k", "g", "zero_point"), [(9, 128, 32, True), (24, 576, 64, True), (5, 192, 64, False)])
def test_repack_from_ir_inputs_matches_the_python_layout(
    cuda_build: tuple[Path, str], n: int, k: int, g: int, zero_point: bool
) -> None:
    """The library's repack of an Int4MatMul node's inputs (what the ONNX Runtime CUDA op runs on the device)
    gives exactly cuda_layout.to_cuda's codes, scales and zero points."""
    kernels = cuda_kernels.Kernels(cuda_build[0])
    weight = random_weight(np.random.default_rng(n * k), n, k, g, zero_point)
    nibbles = (weight.qweight[:, 0::2] | (weight.qweight[:, 1::2] << 4)).astype(np.uint8)  # the IR's B input
    got = kernels.host_repack(nibbles, weight.scales, weight.zeros if zero_point else None, g)
    want = to_cuda(weight)
    np.testing.assert_array_equal(got.codes, want.codes)
    np.testing.assert_array_equal(got.scales.view(np.uint16), want.scales.view(np.uint16))
    if zero_point:
        np.testing.assert_array_equal(got.zeros, want.zeros)
    np.testing.assert_array_equal(from_cuda(got).qweight, weight.qweight)


def test_host_repack_refuses_bad_shapes(cuda_build: tuple[Path, str]) -> None:
    kernels = cuda_kernels.Kernels(cuda_build[0])
    with pytest.raises(Awq2TrtError, match="bad shape"):  # K = 96 is not a multiple of 64
        kernels.host_repack(np.zeros((8, 48), np.uint8), np.zeros((8, 3), np.float16), None, 32)


def test_host_dequantize_refuses_bad_shapes(cuda_build: tuple[Path, str]) -> None:
    kernels = cuda_kernels.Kernels(cuda_build[0])
    weight = CudaWeight(np.zeros(8 * 96 // 8, np.int32), np.zeros((3, 8), np.float16), np.zeros((3, 8), np.uint8),
                        8, 96, 32)  # fmt: skip
    with pytest.raises(Awq2TrtError, match="bad shape"):
        kernels.host_dequantize(weight, cuda_kernels.FP16)


def test_launcher_refuses_bad_arguments_before_any_launch(cuda_build: tuple[Path, str]) -> None:
    """Shape, alignment and workspace checks come before any CUDA call, so they run without a GPU (the pointers
    are never dereferenced)."""
    kernels = cuda_kernels.Kernels(cuda_build[0])

    def args(m: int = 1, n: int = 4096, k: int = 4096, g: int = 128, a: int = 0x1000) -> cuda_kernels.GemmArgs:
        return cuda_kernels.GemmArgs(m, n, k, g, cuda_kernels.FP16, a, 0x2000, 0x3000, 0, 0, 0x4000)

    for bad in (args(k=96), args(g=16), args(m=0), args(n=0), args(k=4096, g=96)):
        with pytest.raises(Awq2TrtError, match="bad shape"):
            kernels.gemm(bad, 0, 0, 132, 0)
    with pytest.raises(Awq2TrtError, match="bad alignment"):
        kernels.gemm(args(a=0x1002), 0, 0, 132, 0)
    need = kernels.workspace_size(1, 4096, 4096, 132)
    with pytest.raises(Awq2TrtError, match="workspace too small"):
        kernels.gemm(args(), 0x5000, need - 1, 132, 0)


# ---- on a GPU -------------------------------------------------------------------------------------------------


def _torch_cuda() -> Any:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU (torch.cuda.is_available() is False)")
    return torch


def run_gemm(torch: Any, kernels: cuda_kernels.Kernels, a: Any, cuda: CudaWeight, bias: Any, symmetric: bool) -> Any:
    """Y = kernel(A, weight) with torch tensors on the current device (a helper the benchmark shares)."""
    dev = a.device
    dtype = a.dtype
    m = a.shape[0]
    codes = torch.from_numpy(cuda.codes.copy()).to(dev)
    scales = torch.from_numpy(cuda.scales.view(np.int16).copy()).to(dev).view(dtype)
    zeros = None if symmetric else torch.from_numpy(cuda.zeros.copy()).to(dev)
    y = torch.empty((m, cuda.n), dtype=dtype, device=dev)
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    size = kernels.workspace_size(m, cuda.n, cuda.k, sms)
    workspace = torch.empty(max(size, 1), dtype=torch.uint8, device=dev)
    args = cuda_kernels.GemmArgs(
        m, cuda.n, cuda.k, cuda.group_size, cuda_kernels.FP16 if dtype == torch.float16 else cuda_kernels.BF16,
        a.data_ptr(), codes.data_ptr(), scales.data_ptr(), 0 if zeros is None else zeros.data_ptr(),
        0 if bias is None else bias.data_ptr(), y.data_ptr(),
    )  # fmt: skip
    kernels.gemm(args, workspace.data_ptr(), size, sms, torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    return y


GPU_CASES = [
    (m, n, k, g, zp, dtype)
    for m, n, k, g, zp, dtype in [
        (1, 4096, 4096, 128, True, "float16"),
        (1, 577, 576, 64, True, "float16"),
        (2, 1537, 576, 32, False, "float16"),
        (3, 24, 1536, 64, True, "bfloat16"),
        (7, 129, 512, 128, False, "bfloat16"),
        (16, 1000, 1024, 32, True, "float16"),
        (17, 333, 640, 64, True, "float16"),
        (31, 2048, 1024, 128, True, "bfloat16"),
        (33, 77, 384, 128, False, "float16"),
        (64, 512, 2048, 64, True, "float16"),
        (128, 1025, 1024, 32, True, "float16"),
        (128, 4096, 4096, 128, False, "bfloat16"),
        (200, 96, 256, 64, True, "float16"),
    ]
]


@pytest.mark.gpu
@pytest.mark.parametrize(("m", "n", "k", "g", "zero_point", "dtype"), GPU_CASES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_gemm_matches_torch(
    cuda_build: tuple[Path, str], m: int, n: int, k: int, g: int, zero_point: bool, dtype: str, with_bias: bool
) -> None:
    """The kernels against torch: dequantize to the 16-bit type, then an fp32 matmul (GPU-unverified until run)."""
    torch = _torch_cuda()
    kernels = cuda_kernels.Kernels(cuda_build[0])
    rng = np.random.default_rng(m * 7919 + n)
    weight = random_weight(rng, n, k, g, zero_point)
    t_dtype = torch.float16 if dtype == "float16" else torch.bfloat16
    np_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    cuda = to_cuda(weight, scale_dtype=np_dtype)
    dense = torch.from_numpy(weight.dequantize(np.float32)).cuda().to(t_dtype)
    a = torch.randn((m, k), device="cuda").to(t_dtype)
    bias = torch.randn((n,), device="cuda").to(t_dtype) if with_bias else None
    got = run_gemm(torch, kernels, a, cuda, bias, symmetric=not zero_point).float()
    want = a.float() @ dense.float().T
    if bias is not None:
        want = want + bias.float()
    # Both sum the same 16-bit products in fp32 (different order); the only rounding that differs is Y's own.
    scale = want.abs().max().item() + 1e-6
    err = (got - want).abs().max().item()
    tol = (2**-10 if dtype == "float16" else 2**-7) * scale
    assert err <= tol, f"max |error| {err:.3g} > {tol:.3g} (max |Y| {scale:.3g})"


@pytest.mark.gpu
@pytest.mark.parametrize(("m", "n", "k", "g", "zero_point", "dtype"), [
    (1, 577, 576, 64, True, "float16"), (9, 40, 1536, 32, False, "bfloat16"), (128, 1025, 1024, 128, True, "float16"),
])  # fmt: skip
def test_device_repack_then_gemm(
    cuda_build: tuple[Path, str], m: int, n: int, k: int, g: int, zero_point: bool, dtype: str
) -> None:
    """What the ONNX Runtime CUDA op does, without ONNX Runtime: repack an Int4MatMul node's inputs on the device
    (awq2trt_repack), compare with cuda_layout.to_cuda, then multiply with the repacked weight."""
    torch = _torch_cuda()
    kernels = cuda_kernels.Kernels(cuda_build[0])
    weight = random_weight(np.random.default_rng(n + k), n, k, g, zero_point)
    t_dtype = torch.float16 if dtype == "float16" else torch.bfloat16
    np_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    want = to_cuda(weight, scale_dtype=np_dtype)
    nibbles = torch.from_numpy((weight.qweight[:, 0::2] | (weight.qweight[:, 1::2] << 4)).astype(np.uint8)).cuda()
    scales_in = torch.from_numpy(weight.scales.astype(np_dtype).view(np.int16).copy()).cuda()
    zeros_in = torch.from_numpy(weight.zeros.copy()).cuda() if zero_point else None
    n_pad, groups = padded_rows(n), k // g
    codes = torch.zeros(n_pad * k // 8, dtype=torch.int32, device="cuda")
    scales = torch.zeros((groups, n_pad), dtype=torch.int16, device="cuda")
    zeros = torch.zeros((groups, n_pad), dtype=torch.uint8, device="cuda")
    stream = torch.cuda.current_stream().cuda_stream
    kernels.repack(n, k, g, nibbles.data_ptr(), scales_in.data_ptr(), 0 if zeros_in is None else zeros_in.data_ptr(),
                   (codes.data_ptr(), scales.data_ptr(), zeros.data_ptr()), stream)  # fmt: skip
    torch.cuda.synchronize()
    np.testing.assert_array_equal(codes.cpu().numpy(), want.codes)
    np.testing.assert_array_equal(scales.cpu().numpy().view(np.uint16), want.scales.view(np.uint16))
    if zero_point:
        np.testing.assert_array_equal(zeros.cpu().numpy(), want.zeros)
    repacked = CudaWeight(codes.cpu().numpy(), scales.cpu().numpy().view(np_dtype), zeros.cpu().numpy(), n, k, g)
    a = torch.randn((m, k), device="cuda").to(t_dtype)
    got = run_gemm(torch, kernels, a, repacked, None, symmetric=not zero_point).float()
    reference = a.float() @ torch.from_numpy(weight.dequantize(np.float32)).cuda().to(t_dtype).float().T
    tol = (2**-10 if dtype == "float16" else 2**-7) * (reference.abs().max().item() + 1e-6)
    assert (got - reference).abs().max().item() <= tol


SANITIZER_DRIVER = """
import sys, numpy as np, torch
sys.path[:0] = [{root!r}]
from awq2trt import cuda_kernels
from awq2trt.cuda_layout import to_cuda
from tests.test_cuda_kernels import random_weight, run_gemm
kernels = cuda_kernels.Kernels({lib!r})
for m, n, k, g, zp in ((1, 577, 576, 64, True), (5, 40, 1536, 32, False), (70, 33, 640, 128, True)):
    w = random_weight(np.random.default_rng(m), n, k, g, zp)
    a = torch.randn((m, k), device="cuda").half()
    run_gemm(torch, kernels, a, to_cuda(w, scale_dtype=np.float16), None, symmetric=not zp)
print("driver done")
"""


@pytest.mark.gpu
@pytest.mark.parametrize("tool", ["memcheck", "racecheck"])
def test_compute_sanitizer_clean(cuda_build: tuple[Path, str], tool: str, tmp_path: Path) -> None:
    _torch_cuda()
    sanitizer = shutil.which("compute-sanitizer") or "/usr/local/cuda/bin/compute-sanitizer"
    if not Path(sanitizer).is_file():
        pytest.skip("compute-sanitizer is not installed (CUDA toolkit)")
    driver = tmp_path / "driver.py"
    driver.write_text(SANITIZER_DRIVER.format(root=str(ROOT), lib=str(cuda_build[0])))
    done = subprocess.run(
        [sanitizer, "--tool", tool, "--error-exitcode", "3", sys.executable, str(driver)],
        capture_output=True, text=True, timeout=600, check=False, env={**os.environ},
    )  # fmt: skip
    assert done.returncode == 0 and "driver done" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
