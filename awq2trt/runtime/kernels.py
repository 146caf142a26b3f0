"""Find, check and register ``libawq2trt_ort``, our ONNX Runtime custom-op library (plugins/onnxruntime).

Where the library is looked for, first match wins:

1. an explicit path: ``--kernels PATH`` (run, eval, bench, triton, serve) or ``OrtModel.open(..., kernels=PATH)``;
2. the environment variable ``AWQ2TRT_ORT_KERNELS``;
3. the copy ``pip install .`` builds into the package (``awq2trt/native/libawq2trt_ort.so``, see setup.py).

Before ONNX Runtime loads it, the file is checked with ctypes: it must exist, load as a shared library, export
``RegisterCustomOps`` (what ONNX Runtime calls) and ``awq2trt_ort_abi_version()`` returning the ABI the sidecar
asks for.  Each failure is one ``Awq2TrtError``: ONNX Runtime itself would report a wrong file as a multi-line
error, and a library of another ABI could read tensors in a layout it does not know.  ctypes and ONNX Runtime
then share one ``dlopen`` handle (same path), so the library is loaded once.

Standard library only (plus the session options object handed in): the serving environments copy this module.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from awq2trt.errors import Awq2TrtError
from awq2trt.sidecar import ORT_KERNELS, KernelsSpec

ENV_VAR = "AWQ2TRT_ORT_KERNELS"
LIBRARY_FILE = ORT_KERNELS.library + ".so"
PACKAGE_COPY = Path(__file__).resolve().parent.parent / "native" / LIBRARY_FILE
ABI_SYMBOL = "awq2trt_ort_abi_version"
BUILD_INFO_SYMBOL = "awq2trt_ort_build_info"
ENTRY_SYMBOL = "RegisterCustomOps"
# Targets whose graphs hold awq2trt::Int4MatMul nodes a library can claim without the sidecar asking for it.
KERNEL_OPTIONAL_TARGETS = ("ir",)
CUDA_PROVIDER = "CUDAExecutionProvider"
CUDA_BUILD_MARK = "; cuda "  # in the build info of a library built with -DAWQ2TRT_ORT_CUDA=ON
# The activation dtypes the CUDA kernels take (tensor cores); a float32 graph's nodes would stay on the CPU.
CUDA_DTYPES = ("float16", "bfloat16")

BUILD_HINT = (
    "build it: ONNXRUNTIME_INCLUDE_DIR=<ONNX Runtime's include/> pip install . (from the awq2trt source), or"
    " cmake -S plugins/onnxruntime -B build/ort -DONNXRUNTIME_INCLUDE_DIR=... && cmake --build build/ort"
    " (plugins/onnxruntime/README.md), then pass --kernels build/ort/" + LIBRARY_FILE + " or set " + ENV_VAR
)


@dataclass(frozen=True)
class KernelLibrary:
    """A checked library: where it is, how it was found, its ABI and (when it says) how it was built."""

    path: Path
    source: str  # "--kernels", "$AWQ2TRT_ORT_KERNELS" or "the package"
    abi_version: int
    build_info: str | None

    @property
    def has_cuda(self) -> bool:
        """Built with the CUDA execution provider's kernels (plugins/onnxruntime, -DAWQ2TRT_ORT_CUDA=ON)."""
        return self.build_info is not None and CUDA_BUILD_MARK in self.build_info


def find_library(explicit: str | Path | None = None) -> tuple[Path, str]:
    """The library's path and what named it; one error (with how to build it) when nothing does."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit), "--kernels"
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return Path(from_env), f"${ENV_VAR}"
    if PACKAGE_COPY.is_file():
        return PACKAGE_COPY, "the package"
    raise Awq2TrtError(
        LIBRARY_FILE,
        expected=f"awq2trt's kernel library (no --kernels, no ${ENV_VAR}, none built into {PACKAGE_COPY.parent})",
        got="none found",
        detail=BUILD_HINT,
    )


def check_library(path: Path, source: str, wanted: KernelsSpec = ORT_KERNELS) -> KernelLibrary:
    """Load *path* with ctypes and check its entry point and ABI before ONNX Runtime sees it."""
    where = f"{path} (from {source})"
    if not path.exists():
        raise Awq2TrtError(where, expected=f"the kernel library {LIBRARY_FILE}", got="no such file", detail=BUILD_HINT)
    if not path.is_file():
        raise Awq2TrtError(where, expected=f"the kernel library file {LIBRARY_FILE}", got="a folder")
    try:
        # Absolute, so ONNX Runtime's later dlopen of the same path finds this handle instead of a second copy.
        handle = ctypes.CDLL(str(path.resolve()))
    except OSError as error:
        reason = str(error).rsplit(": ", 1)[-1] or type(error).__name__
        raise Awq2TrtError(where, expected="a shared library this machine can load", got=reason[:200]) from None
    if not hasattr(handle, ENTRY_SYMBOL):
        raise Awq2TrtError(where, expected=f"an ONNX Runtime custom-op library (exporting {ENTRY_SYMBOL})", got="none")
    abi = _abi_version(handle, where)
    if abi != wanted.abi_version:
        raise Awq2TrtError(
            where,
            expected=f"{ABI_SYMBOL}() = {wanted.abi_version} (the ABI this export needs)",
            got=abi,
            detail="rebuild the library from the same awq2trt as the export, or export again",
        )
    return KernelLibrary(path, source, abi, _build_info(handle))


def _abi_version(handle: ctypes.CDLL, where: str) -> int:
    if not hasattr(handle, ABI_SYMBOL):
        raise Awq2TrtError(where, expected=f"a library exporting {ABI_SYMBOL}()", got="none (an older or other build)")
    function = getattr(handle, ABI_SYMBOL)
    function.argtypes = []
    function.restype = ctypes.c_int
    return int(function())


def _build_info(handle: ctypes.CDLL) -> str | None:
    if not hasattr(handle, BUILD_INFO_SYMBOL):
        return None
    function = getattr(handle, BUILD_INFO_SYMBOL)
    function.argtypes = []
    function.restype = ctypes.c_char_p
    raw = function()
    return raw.decode("utf-8", "replace") if raw else None


def kernels_for(
    wanted: KernelsSpec | None, target: str, explicit: str | Path | None, where: str | Path
) -> KernelLibrary | None:
    """The checked library a graph of *target* needs (sidecar ``kernels`` = *wanted*), or None when it needs none.

    An explicit library for a graph that does not need one is used for the ``ir`` graph (its Int4MatMul nodes then
    run in our kernel instead of their function bodies) and refused for the others, which have no node it claims.
    """
    if wanted is None:
        if explicit is None:
            return None
        if target not in KERNEL_OPTIONAL_TARGETS:
            raise Awq2TrtError(
                "--kernels",
                expected="an export with awq2trt::Int4MatMul nodes (--target ort-kernels or ir)",
                got=f"a --target {target} export ({where})",
            )
        wanted = ORT_KERNELS
    if wanted.library != ORT_KERNELS.library:
        known = f'"kernels": {{"library": "{ORT_KERNELS.library}"}} (the one this awq2trt knows)'
        raise Awq2TrtError(where, expected=known, got=wanted.library)
    path, source = find_library(explicit)
    return check_library(path, source, wanted)


def check_providers(
    library: KernelLibrary,
    providers: Sequence[str],
    dtype: str,
    where: str | Path,
    weight_layout: str = "rows",
    epilogues: int = 0,
) -> None:
    """With the CUDA provider, the library must have its CUDA kernels, the graph 16-bit activations, the rows
    weight layout (tiles16 is the CPU kernel's) and no fused epilogue (*epilogues*: how many nodes
    ``fuse_silu_mul`` gave one, which only the CPU kernel computes).

    Otherwise ONNX Runtime would quietly place every int4 node on our CPU kernel and copy each activation to the
    host and back, many times slower than the user asked for; one error says which half is missing.
    """
    if CUDA_PROVIDER not in providers:
        return
    if not library.has_cuda:
        raise Awq2TrtError(
            f"{library.path} (from {library.source})",
            expected="a build with CUDA kernels for --provider cuda (cmake ... -DAWQ2TRT_ORT_CUDA=ON)",
            got=library.build_info or "a build that does not say",
        )
    if dtype not in CUDA_DTYPES:
        raise Awq2TrtError(
            where,
            expected="an export with --dtype fp16 or bf16 for our CUDA kernels (--provider cuda)",
            got=f"dtype {dtype}",
        )
    if weight_layout != "rows":
        raise Awq2TrtError(
            where,
            expected="an export with --weight-layout rows for our CUDA kernels (--provider cuda)",
            got=f"weight layout {weight_layout}, which only the CPU kernel reads",
        )
    if epilogues:
        raise Awq2TrtError(
            where,
            expected="an export with --disable-passes fuse_silu_mul for our CUDA kernels (--provider cuda)",
            got=f"{epilogues} Int4MatMul nodes with the silu_mul epilogue, which only the CPU kernel computes",
        )


def register(options: Any, library: KernelLibrary) -> None:
    """Register the checked library with ONNX Runtime ``SessionOptions``; its refusal becomes one error line."""
    try:
        options.register_custom_ops_library(str(library.path.resolve()))
    except Exception as error:  # ONNX Runtime's own exception types, multi-line
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Awq2TrtError(
            f"{library.path} (from {library.source})", detail=f"ONNX Runtime refused it: {detail[:300]}"
        ) from None
