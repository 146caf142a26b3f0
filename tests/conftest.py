"""Shared test helpers: where the third-party fixtures live and how to read their references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"
AWQ_FIXTURES = {
    # name: (format label, group size, model_type) as documented in shared/fixtures/README.md
    "llama-gemm-g64": ("awq-gemm", 64, "llama"),
    "qwen2-gemm-g128": ("awq-gemm", 128, "qwen2"),
    "llama-gemv-g64": ("awq-gemv", 64, "llama"),
    "llama-ct-g128": ("compressed-tensors", 128, "llama"),
}
SOURCES = ("llama", "qwen2", "mistral")


def fixture_path(name: str) -> Path:
    path = FIXTURES / "awq" / name
    if not path.is_dir():
        pytest.skip(f"third-party fixture {path} is not present (shared/ must sit beside the project)")
    return path


def source_path(name: str) -> Path:
    path = FIXTURES / "sources" / name
    if not path.is_dir():
        pytest.skip(f"source model {path} is not present (shared/ must sit beside the project)")
    return path


def import_peer(module: str, install: str) -> Any:
    """Import a peer tool the tests compare against: skip when it is absent, fail if CI requires peers."""
    import importlib
    import os

    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("AWQ2TRT_REQUIRE_PEERS") == "1":
            pytest.fail(f"{module} is not installed but AWQ2TRT_REQUIRE_PEERS=1 ({install})")
        pytest.skip(f"{module} is not installed ({install})")


def copy_with_config(source: Path, dest: Path, **changes: object) -> Path:
    """A writable copy of a checkpoint folder's files (not subfolders), with config.json keys replaced."""
    import json
    import shutil

    dest.mkdir(parents=True)
    for file in source.iterdir():
        if file.is_file():
            shutil.copyfile(file, dest / file.name)
    config = json.loads((dest / "config.json").read_text())
    (dest / "config.json").write_text(json.dumps({**config, **changes}, indent=2))
    return dest


def reference(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "reference" / "reference.safetensors"))


def max_abs_rel(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    diff = actual.astype(np.float64) - expected.astype(np.float64)
    return float(np.abs(diff).max()), float(np.linalg.norm(diff) / np.linalg.norm(expected))


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a model hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
