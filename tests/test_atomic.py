"""All-or-nothing outputs: the temporary folder becomes the output only on success."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from awq2trt.atomic import atomic_output_dir, remove_stale_partials
from awq2trt.errors import Awq2TrtError
from tests.conftest import ROOT, fixture_path, source_path


def test_success_renames_with_normal_permissions(tmp_path: Path) -> None:
    with atomic_output_dir(tmp_path / "out") as tmp:
        fd = os.open(tmp / "data.bin", os.O_CREAT | os.O_WRONLY, 0o600)  # as some writers create files
        os.close(fd)
    out = tmp_path / "out"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == 0o777 & ~umask
    assert ((out / "data.bin").stat().st_mode & 0o777) == 0o666 & ~umask


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_output_dir(tmp_path / "out") as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force_and_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(Awq2TrtError, match="--force"), atomic_output_dir(out):
        pass
    with atomic_output_dir(out, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_file_in_the_way_and_unwritable_parent(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(Awq2TrtError, match="existing file"), atomic_output_dir(tmp_path / "file"):
        pass
    # A parent that cannot hold folders (a file) is unwritable even for root.
    with pytest.raises(Awq2TrtError, match="file"), atomic_output_dir(tmp_path / "file" / "out"):
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_force_swaps_in_one_exchange_and_without_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import awq2trt.atomic as atomic

    out = tmp_path / "out"
    for without_exchange in (False, True):
        if without_exchange:  # a filesystem without RENAME_EXCHANGE: the old output is moved aside first
            monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
        out.mkdir(exist_ok=True)
        (out / "old.txt").write_text("old")
        with atomic_output_dir(out, force=True) as tmp:
            (tmp / "new.txt").write_text("new")
        assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
        assert [p.name for p in tmp_path.iterdir()] == ["out"]
        shutil.rmtree(out)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_an_old_output_moved_aside_by_a_killed_run_is_put_back(tmp_path: Path) -> None:
    pid = _dead_pid()
    aside = tmp_path / f".out.old-{pid}-abcd"
    aside.mkdir()
    (aside / "old.txt").write_text("old")
    partial = tmp_path / f".out.partial-{pid}-efgh"
    partial.mkdir()
    (partial / "half.bin").write_bytes(b"x")
    remove_stale_partials(tmp_path, "out")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (tmp_path / "out" / "old.txt").read_text() == "old"


ROOM = "room to write the output (nothing was left behind)"
FULL_DISK_COMMANDS = {
    "quantize": lambda out: ["quantize", str(source_path("llama")), "-o", str(out), "--method", "rtn", "-q"],
    "export": lambda out: ["export", str(fixture_path("llama-gemm-g64")), "-o", str(out), "-q"],
}


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process

    return apply


@pytest.mark.parametrize("command", sorted(FULL_DISK_COMMANDS))
def test_a_full_disk_is_one_error_and_leaves_nothing(command: str, tmp_path: Path) -> None:
    out = tmp_path / "work" / "out"
    out.parent.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "awq2trt", *FULL_DISK_COMMANDS[command](out)],
        capture_output=True,
        text=True,
        preexec_fn=_file_size_limit(200_000),  # the weights are ~1.5 MB
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    # The reason is the errno where the writer keeps it (safetensors), the short write where it does not (numpy).
    assert line in (
        f"error: {out}: expected {ROOM}, got File too large",
        f"error: {out}: expected {ROOM}, got a short write (a full disk or a file-size limit)",
    )
    assert os.listdir(out.parent) == []


def test_a_full_disk_while_writing_the_triton_repository(shared_export: Any, tmp_path: Path) -> None:
    out = tmp_path / "work" / "repo"
    out.parent.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "awq2trt", "triton", str(shared_export("llama-gemm-g64").output), "-o", str(out)],
        capture_output=True,
        text=True,
        preexec_fn=_file_size_limit(300),  # config.pbtxt is ~1 kB; the weights are hard-linked, not written
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr
    assert (
        proc.stderr.strip()
        == f"error: {out}: expected room to write the output (nothing was left behind), got File too large"
    )
    assert os.listdir(out.parent) == []
