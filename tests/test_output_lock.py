"""One writer per output: a second run into a path another run is writing stops at once, with one error line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from awq2trt.atomic import atomic_output_dir
from awq2trt.cli import main
from awq2trt.errors import Awq2TrtError
from awq2trt.output_lock import lock_path, output_lock
from tests.conftest import ROOT, source_path

HOLD = """
import sys
from awq2trt.output_lock import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def _holder(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def test_a_held_output_is_refused_with_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _holder(out)
    try:
        with pytest.raises(Awq2TrtError) as info, atomic_output_dir(out) as tmp:
            (tmp / "x").write_text("never")
        message = str(info.value)
        assert message.startswith(f"{out}: expected no other run writing this output, got another run (pid {proc.pid})")
        assert not out.exists()
    finally:
        _release(proc)
    with atomic_output_dir(out) as tmp:  # released: the next run writes
        (tmp / "x").write_text("written")
    assert sorted(os.listdir(tmp_path)) == ["out"]  # the lock file goes with its holder


def test_a_killed_holder_frees_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _holder(out)
    proc.kill()
    proc.wait(timeout=30)
    assert lock_path(out).exists()  # left behind by the kill; the kernel dropped the lock itself
    with atomic_output_dir(out) as tmp:
        (tmp / "x").write_text("written")
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_the_lock_is_reentrant_in_one_process(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with output_lock(out), atomic_output_dir(out) as tmp:  # a command's lock, then its writer's
        (tmp / "x").write_text("written")
        assert lock_path(out).exists()
    assert not lock_path(out).exists()
    assert (out / "x").read_text() == "written"


def test_cli_refuses_a_held_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "q"
    proc = _holder(out)
    try:
        code = main(["quantize", str(source_path("llama")), "-o", str(out), "--method", "rtn", "-q", "--force"])
    finally:
        _release(proc)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith(f"error: {out}: expected no other run writing this output")
    assert sorted(os.listdir(tmp_path)) == []


def test_two_quantizes_into_one_folder_at_once(tmp_path: Path) -> None:
    """Both start together; the one that takes the lock first writes, the other stops with the lock error."""
    out = tmp_path / "q"
    small = ["--calib-samples", "4", "--calib-seqlen", "64", "--allow-worse", "-q"]
    procs = []
    for group in ("64", "32"):
        argv = ["quantize", str(source_path("llama")), "-o", str(out), "--force", *small, "--group-size", group]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "awq2trt", *argv],
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        )
        time.sleep(0.05)
    results = [(p.wait(timeout=600), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    assert "expected no other run writing this output" in loser and "Traceback" not in loser
    assert len(loser.strip().splitlines()) == 1
    from awq2trt.checkpoint import open_checkpoint

    assert open_checkpoint(out).linears
    assert sorted(os.listdir(tmp_path)) == ["q"]
