"""The command line: help everywhere, inspect output, quantize's output handling, interruption safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from awq2trt.cli import build_parser, main
from tests.conftest import AWQ_FIXTURES, fixture_path, source_path

COMMANDS = ("inspect", "prepare", "quantize", "export", "eval", "run", "bench", "demo")


def test_help_for_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], *([c, "--help"] for c in COMMANDS)):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
        assert "usage: awq2trt" in capsys.readouterr().out


def test_parser_lists_all_commands() -> None:
    help_text = build_parser().format_help()
    assert all(c in help_text for c in COMMANDS)


@pytest.mark.parametrize("name", sorted(AWQ_FIXTURES))
def test_inspect_json(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(fixture_path(name)), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == AWQ_FIXTURES[name][0] and info["group_size"] == AWQ_FIXTURES[name][1]
    assert info["quantized_params"] + info["dense_params"] > 1_000_000


def test_inspect_table_and_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(fixture_path("llama-ct-g128")), "--check", "-q"]) == 0
    out = capsys.readouterr().out
    assert "compressed-tensors pack-quantized" in out and "group size" in out and "check" in out


def test_quantize_output_handling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = str(source_path("llama"))
    out = tmp_path / "q"
    # AWQ is the default method: the calibration options are accepted without --method (RTN refuses them).
    small = ["--calib-samples", "4", "--calib-seqlen", "64", "--allow-worse"]
    assert main(["quantize", source, "-o", str(out), "--group-size", "64", *small, "-q"]) == 0
    assert (out / "model.safetensors").is_file()
    capsys.readouterr()
    # A second run into the same non-empty folder is refused, then allowed with --force.
    assert main(["quantize", source, "-o", str(out), "--method", "rtn", "--group-size", "64", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(out) in err and "--force" in err
    argv = ["quantize", source, "-o", str(out), "--method", "rtn", "--group-size", "32", "--symmetric", "--force"]
    assert main([*argv, "-q"]) == 0
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["group_size"] == 32 and config["zero_point"] is False
    assert [p.name for p in tmp_path.iterdir()] == ["q"]  # no temporary folders left


def test_quantize_bad_option_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["quantize", str(source_path("llama")), "-o", str(tmp_path / "q"), "--group-size", "100", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "group_size=100" in err[0] and "model.layers.0" in err[0]
    assert not (tmp_path / "q").exists()


SLOW_QUANTIZE = """
import sys, time
import awq2trt.quantize.api as api
real = api.rtn_quantize
def slow(*args, **kwargs):
    time.sleep(0.5)
    return real(*args, **kwargs)
api.rtn_quantize = slow
from awq2trt.cli import main
sys.exit(main(["quantize", sys.argv[1], "-o", sys.argv[2], "--method", "rtn", "-q"]))
"""


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 130), (signal.SIGINT, 130)])
def test_interrupted_quantize_leaves_nothing(tmp_path: Path, sig: int, code: int) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_QUANTIZE, str(source_path("llama")), str(out)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".out.partial-") for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "quantize never started writing"
        time.sleep(0.05)
    time.sleep(1.0)  # well inside the write: a few layers are done
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert "Traceback" not in err and err.strip().startswith("error: interrupted")
    assert list(tmp_path.iterdir()) == []
