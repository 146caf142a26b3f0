"""A Python environment and a copy of ``tritonserver`` that serve ``generate`` repositories on this machine.

The ``nvidia-pytriton`` wheel carries a real ``tritonserver`` (2.51 in 0.7.0) with the Python backend and one
backend stub per Python version.  The stub embeds the system's ``libpython3.X`` (Debian: ``libpython3.X``)
and imports the packages of whichever Python comes first on ``PATH``, so the server gets a venv of its own:
the stub's numpy bridge misreads byte tensors under numpy 2 (every string input arrives as garbage), hence
numpy 1.26 there, beside onnxruntime and tokenizers, which is all a ``generate`` repository imports.

``ensure_server_env`` builds that venv and the server copy once under the cache folder, keyed by the package
list, and reuses them after; only PyPI is asked, through pip.  It is what the server tests, the Triton
benchmark and a future ``awq2trt serve`` stand on.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from awq2trt.errors import MissingPackageError

PYTRITON = "nvidia-pytriton==0.7.0"
SERVER_PACKAGES = ("numpy==1.26.4", "onnxruntime==1.32.0", "tokenizers==0.23.3")
STAMP = ".awq2trt-ready"


@dataclass(frozen=True)
class ServerEnv:
    root: Path
    bin: Path  # the venv's bin folder: first on the server's PATH
    tritonserver: Path
    backends: Path  # --backend-directory
    libraries: Path  # LD_LIBRARY_PATH: the libraries the wheel bundles

    def environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["LD_LIBRARY_PATH"] = str(self.libraries)
        return env


def ensure_server_env(cache: Path, python: str | None = None) -> ServerEnv:
    """The environment under *cache* (built on first use: a venv, pip installs, a server copy; about a minute)."""
    python = python or sys.executable
    version = subprocess.run(
        [python, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    key = hashlib.sha256("\n".join((version, PYTRITON, *SERVER_PACKAGES)).encode()).hexdigest()[:12]
    root = cache / f"triton-server-{key}"
    env = ServerEnv(
        root=root,
        bin=root / "venv" / "bin",
        tritonserver=root / "tritonserver" / "bin" / "tritonserver",
        backends=root / "tritonserver" / "backends",
        libraries=root / "libs",
    )
    check_libpython(version)
    if (root / STAMP).is_file():
        return env
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    _run([python, "-m", "venv", str(root / "venv")])
    pip = [str(env.bin / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # Not the project's pins (numpy 2): scripts/venv-run exports PIP_CONSTRAINT; the index settings stay.
    clean = {k: v for k, v in os.environ.items() if k not in ("PIP_CONSTRAINT", "PIP_REQUIREMENT")}
    _run([*pip, *SERVER_PACKAGES], clean)
    _run([*pip, "--no-deps", PYTRITON], clean)  # only its server binary is used, not its Python API
    site = Path(
        subprocess.run(
            [str(env.bin / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    shipped = site / "pytriton" / "tritonserver"
    stub = shipped / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise MissingPackageError(stub, detail=f"{PYTRITON} has no Python backend stub for Python {version}")
    shutil.copytree(shipped, root / "tritonserver", ignore=shutil.ignore_patterns("python_backend_stubs"))
    shutil.copy2(stub, env.backends / "python" / "triton_python_backend_stub")
    (root / "libs").symlink_to(site / "nvidia_pytriton.libs")
    (root / STAMP).write_text("\n".join((PYTRITON, *SERVER_PACKAGES)) + "\n")
    return env


def check_libpython(version: str) -> None:
    """The stub links the system's shared libpython: say which Debian package brings it when it is missing."""
    name = f"libpython{version}.so.1.0"
    try:
        found = name in subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:  # no ldconfig on PATH: look where Debian and most distributions put it
        found = any(Path(folder, name).exists() for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"))
    if not found:
        raise MissingPackageError(
            name,
            detail=f"the Triton Python backend stub needs it: apt-get install -y libpython{version}",
        )


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).split()[-40:])
        raise MissingPackageError(argv[0], detail=f"`{' '.join(argv[:6])} ...` failed: {tail}")
