"""Build and call plugins/cuda (libawq2trt_cuda) from Python: the tests and scripts/bench_kernels_gpu.py.

The build is CMake's; `build_library` returns the library and the build log, whose ``ptxas`` lines give each
kernel's registers and spills (`ptxas_figures`).  `Kernels` wraps the C ABI (plugins/cuda/include/awq2trt_cuda.h)
with ctypes; device pointers come from the caller (torch tensors' ``data_ptr()``), so this module needs no torch.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from awq2trt.cuda_layout import CudaWeight
from awq2trt.errors import Awq2TrtError

SOURCE = Path(__file__).resolve().parents[1] / "plugins" / "cuda"
NVCC = Path("/usr/local/cuda/bin/nvcc")
FP16, BF16 = 0, 1
STATUS = {0: "ok", 1: "bad shape", 2: "bad alignment", 3: "workspace too small", 4: "launch failed"}


def build_library(build_dir: Path, timeout: float = 600) -> tuple[Path, str]:
    """Configure and build plugins/cuda into *build_dir*; returns libawq2trt_cuda.so and the build log."""
    cmake = shutil.which("cmake")
    if cmake is None:
        raise Awq2TrtError("cmake", expected="CMake 3.18 or newer on PATH", got="none")
    configure = [cmake, "-S", str(SOURCE), "-B", str(build_dir)]
    if NVCC.is_file():
        configure.append(f"-DCMAKE_CUDA_COMPILER={NVCC}")
    log = []
    for command in (configure, [cmake, "--build", str(build_dir), "-j2"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        log.append(done.stdout + done.stderr)
        if done.returncode:
            raise Awq2TrtError(" ".join(command), expected="a successful build", got="\n".join(log)[-6000:])
    return build_dir / "libawq2trt_cuda.so", "\n".join(log)


@dataclass(frozen=True)
class KernelFigures:
    function: str  # mangled name
    arch: str  # sm_80, sm_90
    registers: int
    spill_stores: int
    spill_loads: int
    stack_bytes: int


_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS = re.compile(r"Used (\d+) registers")


def ptxas_figures(log: str) -> list[KernelFigures]:
    """Each kernel's ptxas -v summary in a build log (entry line, then stack/spill line, then registers)."""
    figures = []
    current: tuple[str, str] | None = None
    frame: tuple[int, int, int] | None = None
    for line in log.splitlines():
        if entry := _ENTRY.search(line):
            current, frame = (entry.group(1), entry.group(2)), None
        elif current and (found := _FRAME.search(line)):
            frame = (int(found.group(1)), int(found.group(2)), int(found.group(3)))
        elif current and frame and (regs := _REGS.search(line)):
            figures.append(KernelFigures(current[0], current[1], int(regs.group(1)), frame[1], frame[2], frame[0]))
            current = None
    return figures


class Kernels:
    """The C ABI of one loaded libawq2trt_cuda."""

    def __init__(self, path: Path) -> None:
        self.lib = ctypes.CDLL(str(path))
        i64, vp = ctypes.c_int64, ctypes.c_void_p
        self.lib.awq2trt_host_dequantize.argtypes = [i64, i64, i64, ctypes.c_int, vp, vp, vp, vp]
        self.lib.awq2trt_int4_split_k.argtypes = [i64, i64, i64, ctypes.c_int]
        self.lib.awq2trt_int4_gemm_workspace_size.argtypes = [i64, i64, i64, ctypes.c_int]
        self.lib.awq2trt_int4_gemm_workspace_size.restype = ctypes.c_size_t
        self.lib.awq2trt_int4_gemm.argtypes = [ctypes.POINTER(GemmArgs), vp, ctypes.c_size_t, ctypes.c_int, vp]
        self.lib.awq2trt_host_repack.argtypes = [i64, i64, i64, vp, vp, vp, vp, vp, vp]
        self.lib.awq2trt_repack.argtypes = [i64, i64, i64, vp, vp, vp, vp, vp, vp, vp]

    def host_dequantize(self, weight: CudaWeight, dtype: int) -> np.ndarray:
        """float32 [N, K] through the library's __host__ __device__ dequantization."""
        out = np.empty((weight.n, weight.k), np.float32)
        codes = np.ascontiguousarray(weight.codes)
        scales = np.ascontiguousarray(weight.scales).view(np.uint16)
        zeros = np.ascontiguousarray(weight.zeros)
        status = self.lib.awq2trt_host_dequantize(
            weight.n, weight.k, weight.group_size, dtype, codes.ctypes.data, scales.ctypes.data,
            zeros.ctypes.data, out.ctypes.data,
        )  # fmt: skip
        check(status)
        return out

    def host_repack(
        self, nibbles: np.ndarray, scales: np.ndarray, zeros: np.ndarray | None, group_size: int
    ) -> CudaWeight:
        """The kernels' layout made by the library's repack from an IR node's inputs (nibbles uint8 [N, K/2],
        scales 16-bit [N, K/G], zeros uint8 [N, K/G] or None), as the ONNX Runtime CUDA op does on the device."""
        n, k = nibbles.shape[0], nibbles.shape[1] * 2
        n_pad, groups = -(-n // 8) * 8, k // group_size if group_size else 0
        codes = np.empty(n_pad * k // 8, np.int32)
        scales_out = np.empty((groups, n_pad), scales.dtype)
        zeros_out = np.full((groups, n_pad), 8, np.uint8)
        nibbles = np.ascontiguousarray(nibbles, np.uint8)
        scales_in = np.ascontiguousarray(scales).view(np.uint16)
        zeros_in = None if zeros is None else np.ascontiguousarray(zeros, np.uint8)
        status = self.lib.awq2trt_host_repack(
            n, k, group_size, nibbles.ctypes.data, scales_in.ctypes.data,
            None if zeros_in is None else zeros_in.ctypes.data, codes.ctypes.data,
            scales_out.view(np.uint16).ctypes.data, zeros_out.ctypes.data,
        )  # fmt: skip
        check(status)
        return CudaWeight(codes, scales_out, zeros_out, n, k, group_size)

    def repack(
        self, n: int, k: int, group_size: int, nibbles: int, scales: int, zeros: int, out: tuple[int, int, int],
        stream: int,
    ) -> None:  # fmt: skip
        """The device repack (device addresses; zeros 0 = none): what the ONNX Runtime CUDA op runs once per node.
        *out* is (codes, scales, zeros) of the kernels' layout."""
        check(self.lib.awq2trt_repack(n, k, group_size, nibbles, scales, zeros or None, *(o or None for o in out),
                                      stream))  # fmt: skip

    def split_k(self, m: int, n: int, k: int, sm_count: int) -> int:
        return int(self.lib.awq2trt_int4_split_k(m, n, k, sm_count))

    def workspace_size(self, m: int, n: int, k: int, sm_count: int) -> int:
        return int(self.lib.awq2trt_int4_gemm_workspace_size(m, n, k, sm_count))

    def gemm(self, args: GemmArgs, workspace: int, workspace_bytes: int, sm_count: int, stream: int) -> None:
        check(self.lib.awq2trt_int4_gemm(ctypes.byref(args), workspace, workspace_bytes, sm_count, stream))


class GemmArgs(ctypes.Structure):
    """awq2trt_gemm_args (every pointer a device address)."""

    _fields_ = [
        ("m", ctypes.c_int64),
        ("n", ctypes.c_int64),
        ("k", ctypes.c_int64),
        ("group_size", ctypes.c_int64),
        ("dtype", ctypes.c_int),
        ("a", ctypes.c_void_p),
        ("codes", ctypes.c_void_p),
        ("scales", ctypes.c_void_p),
        ("zeros", ctypes.c_void_p),
        ("bias", ctypes.c_void_p),
        ("y", ctypes.c_void_p),
    ]


def check(status: int) -> None:
    if status != 0:
        raise Awq2TrtError("libawq2trt_cuda", expected="status ok", got=STATUS.get(status, str(status)))
