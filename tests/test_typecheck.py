"""mypy over the TensorRT modules, against tensorrt-stubs: every TensorRT call, attribute and enum we use exists
with the signature we call it with (TensorRT itself cannot be installed here, so this is how we know).

The stubs (pybind11-stubgen output for TensorRT 10.13) need two things before mypy can read them: a folder on
MYPYPATH (the installed ``tensorrt/`` has ``__init__.pyi`` but no ``py.typed``, so mypy skips it in
site-packages), and five repaired lines (parameters named ``in``, a parameter without a default after ones with
defaults: Python syntax errors).  The test copies the installed stubs into a temporary folder and repairs them
there; nothing of the stubs is kept.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT

STUBS = "tensorrt-stubs"
STUBS_VERSION = "10.13.0.35.1"  # constraints.txt pins the same
STUB_PACKAGES = ("tensorrt", "tensorrt_bindings")
INSTALL = f"pip install --no-deps {STUBS}=={STUBS_VERSION} mypy (scripts/venv-run does)"


def typed_files() -> list[Path]:
    """The TensorRT builder package and the engine runtime's TensorRT modules (once they exist)."""
    files = sorted((ROOT / "awq2trt" / "tensorrt").glob("*.py")) + sorted(
        (ROOT / "awq2trt" / "runtime").glob("trt_*.py")
    )
    return [f.relative_to(ROOT) for f in files]


def _repair(text: str) -> str:
    text = re.sub(r"([(,] ?)in: ", r"\1in_: ", text)  # `in` is a keyword
    return text.replace("channel_axis: int) -> IScaleLayer", "channel_axis: int = ...) -> IScaleLayer")


def _stub_dir(tmp: Path) -> Path:
    try:
        dist = importlib.metadata.distribution(STUBS)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{STUBS} is not installed ({INSTALL})")
    assert dist.version == STUBS_VERSION, f"{STUBS} {dist.version} installed, {STUBS_VERSION} expected ({INSTALL})"
    out = tmp / "stubs"
    for file in dist.files or []:
        if file.parts[0] in STUB_PACKAGES and file.suffix == ".pyi":
            target = out / Path(*file.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            text = _repair(Path(str(dist.locate_file(file))).read_text())
            try:
                ast.parse(text)
            except SyntaxError as error:
                pytest.fail(f"{file}: a syntax error the repair does not cover: line {error.lineno}: {error.msg}")
            target.write_text(text)
    assert (out / "tensorrt" / "__init__.pyi").is_file(), f"{STUBS} installed without tensorrt/__init__.pyi"
    return out


@pytest.fixture(scope="module")
def run_mypy(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., subprocess.CompletedProcess[str]]:
    """mypy with the repaired stubs on MYPYPATH and one cache for the module (the stubs take most of the time)."""
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    if mypy is None:
        pytest.fail(f"mypy is not installed beside {sys.executable} ({INSTALL})")
    tmp = tmp_path_factory.mktemp("mypy")
    stubs = _stub_dir(tmp)

    def run(*files: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [mypy, "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp / "cache"), *map(str, files)],
            cwd=ROOT,
            env={"MYPYPATH": str(stubs), "PATH": str(Path(sys.executable).parent)},
            capture_output=True,
            text=True,
            timeout=600,
        )

    return run


@pytest.mark.slow
def test_tensorrt_modules_typecheck(run_mypy: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    files = typed_files()
    assert Path("awq2trt/tensorrt/builder.py") in files
    proc = run_mypy(*files)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_type_ignore_in_tensorrt_code() -> None:
    """Each TensorRT call is checked, none waved through."""
    for file in typed_files():
        for number, line in enumerate((ROOT / file).read_text().splitlines(), 1):
            assert "type: ignore" not in line, f"{file}:{number}: {line.strip()}"


@pytest.mark.slow
def test_the_checker_sees_tensorrt(run_mypy: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    """A wrong enum and a wrong argument type are caught: the stubs are really read, not skipped as Any."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import tensorrt as trt\n\n\n"
        "def f(config: trt.IBuilderConfig) -> None:\n"
        "    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACES, 1)\n"
        '    config.set_memory_pool_limit("workspace", 1)\n'
    )
    proc = run_mypy(probe)
    assert 'has no attribute "WORKSPACES"' in proc.stdout, proc.stdout + proc.stderr
    assert 'incompatible type "str"; expected "MemoryPoolType"' in proc.stdout, proc.stdout
