"""The suite's trace memo (tests/trace_memo.py) must not change what an export writes: an export through it is
byte for byte the export of a fresh trace, and different structures never share a trace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from awq2trt.frontend import export as export_module
from tests.conftest import fixture_path
from tests.trace_memo import memoized_trace


def _export(tmp_path: Path, name: str, case: str, target: str, dtype: str | None = None) -> Path:
    out = tmp_path / name
    export_module.export_checkpoint(fixture_path(case), out, target=target, dtype=dtype, progress=False)
    return out


def test_an_export_through_the_memo_is_the_fresh_traces_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_trace = _unwrapped(export_module._trace)
    memo = memoized_trace(real_trace)
    monkeypatch.setattr(export_module, "_trace", real_trace)
    fresh = _export(tmp_path, "fresh", "qwen2-gemm-g128", "ort")
    monkeypatch.setattr(export_module, "_trace", memo)
    _export(tmp_path, "warm", "qwen2-gemm-g128", "ir")  # fills the memo, and the passes edit its copy
    memoized = _export(tmp_path, "memoized", "qwen2-gemm-g128", "ort")
    assert len(memo.traced) == 1  # type: ignore[attr-defined]
    for name in ("model.onnx", "model.onnx.data", "awq2trt.json"):
        assert (memoized / name).read_bytes() == (fresh / name).read_bytes(), name


def test_other_structures_get_their_own_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    memo = memoized_trace(_unwrapped(export_module._trace))
    monkeypatch.setattr(export_module, "_trace", memo)
    _export(tmp_path, "gemm-fp32", "llama-gemm-g64", "ir")
    _export(tmp_path, "gemm-fp16", "llama-gemm-g64", "ir", dtype="fp16")  # another dtype
    _export(tmp_path, "ct", "llama-ct-g128", "ir")  # same architecture, other group size
    assert len(memo.traced) == 3  # type: ignore[attr-defined]


def _unwrapped(trace: Any) -> Any:
    """The real _trace under the session's memo (conftest installs one)."""
    return getattr(trace, "__wrapped__", trace)
