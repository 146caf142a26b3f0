"""The install hook that builds plugins/onnxruntime (libawq2trt_ort) into the package; pyproject.toml has the rest.

``ONNXRUNTIME_INCLUDE_DIR=<ONNX Runtime's include/> pip install .`` (or ``pip install -e .``, as scripts/venv-run
does) compiles the library with CMake and puts it at ``awq2trt/native/libawq2trt_ort.so``, where
``awq2trt.runtime.kernels`` finds it at run time.  Without the variable the install stays pure Python and the
library is skipped (a ``--target ort-kernels`` export then says how to build it); with the variable set, a
missing cmake or a failing build fails the install: the headers were asked for, so no silent fallback.
``AWQ2TRT_ORT_CUDA=1`` as well adds the CUDA provider's kernels (needs nvcc; plugins/onnxruntime/README.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import ClassVar

from setuptools import Command, Distribution, setup
from setuptools.command.build import build
from setuptools.errors import ExecError

ROOT = Path(__file__).resolve().parent
PLUGIN = ROOT / "plugins" / "onnxruntime"
HEADERS_ENV = "ONNXRUNTIME_INCLUDE_DIR"
CUDA_ENV = "AWQ2TRT_ORT_CUDA"
LIBRARY = "libawq2trt_ort.so"
NATIVE = Path("awq2trt") / "native"  # inside the package: the runtime looks here (awq2trt/runtime/kernels.py)


def _headers() -> str | None:
    return os.environ.get(HEADERS_ENV) or None


class BuildOrtKernels(Command):
    """``build`` subcommand: CMake-build libawq2trt_ort into the package when the headers are given."""

    description = f"build plugins/onnxruntime into {NATIVE} (needs ${HEADERS_ENV} and cmake)"
    user_options: ClassVar[list[tuple[str, str | None, str]]] = []

    def initialize_options(self) -> None:
        self.build_lib: str | None = None
        self.build_temp: str | None = None
        self.editable_mode = False  # setuptools sets it for `pip install -e`: then build into the source tree

    def finalize_options(self) -> None:
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))
        self.set_undefined_options("build", ("build_temp", "build_temp"))

    def _destination(self) -> Path:
        base = ROOT if self.editable_mode else Path(str(self.build_lib))
        return base / NATIVE / LIBRARY

    def run(self) -> None:
        headers = _headers()
        if headers is None:
            if not self.editable_mode:  # build/lib outlives a build: never ship a library from an earlier one
                self._destination().unlink(missing_ok=True)
            print(
                f"awq2trt: {HEADERS_ENV} is not set, so the kernel library for --target ort-kernels is not built;"
                f" to build it: {HEADERS_ENV}=<ONNX Runtime's include/> pip install . (plugins/onnxruntime/README.md)"
            )
            return
        cmake = shutil.which("cmake")
        if cmake is None:
            raise ExecError(f"{HEADERS_ENV} is set but cmake is not installed: install cmake, or unset {HEADERS_ENV}")
        work = Path(str(self.build_temp)) / "ort-kernels"
        cuda = "ON" if os.environ.get(CUDA_ENV, "") not in ("", "0") else "OFF"
        configure = [cmake, "-S", str(PLUGIN), "-B", str(work), f"-D{HEADERS_ENV}={headers}", f"-D{CUDA_ENV}={cuda}"]
        for command in (
            [*configure, "-DCMAKE_BUILD_TYPE=Release"],
            [cmake, "--build", str(work), "-j", str(max(1, min(4, os.cpu_count() or 1)))],
        ):
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise ExecError(
                    f"building plugins/onnxruntime failed ({' '.join(command)}):\n{done.stdout}\n{done.stderr}"
                )
        destination = self._destination()
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{LIBRARY}.partial-{os.getpid()}")
        shutil.copyfile(work / LIBRARY, partial)
        partial.chmod(0o755)
        os.replace(partial, destination)  # a running process keeps the old file; new ones load the new one
        print(f"awq2trt: built {destination}")

    def get_source_files(self) -> list[str]:
        return [str(p.relative_to(ROOT)) for p in sorted(PLUGIN.rglob("*")) if p.is_file()]

    def get_outputs(self) -> list[str]:
        return [str(self._destination())] if _headers() else []

    def get_output_mapping(self) -> dict[str, str]:
        return {}


class KernelDistribution(Distribution):
    """A wheel holding the compiled library is platform-specific; the pure-Python one is not."""

    def has_ext_modules(self) -> bool:
        return _headers() is not None


build.sub_commands.append(("build_ort_kernels", None))
setup(cmdclass={"build_ort_kernels": BuildOrtKernels}, distclass=KernelDistribution)
