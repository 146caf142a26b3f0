"""The command line: help everywhere, exit codes, inspect output, quantize's output handling, interruption safety."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from awq2trt.cli import EXIT_CODE_MEANINGS, ExitCode, build_parser, main
from awq2trt.cli.commands import quantize as quantize_command
from awq2trt.cli.options import DTYPES
from awq2trt.cli.perplexity_cache import cached_perplexity
from tests.conftest import AWQ_FIXTURES, ROOT, fixture_path, source_path

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


# -- exit codes and option validation ---------------------------------------------------------------------


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith("usage: awq2trt") and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["quantize", "m", "-o", "o", "--method", "gptq"], "--method"),
        (["quantize", "m", "-o", "o", "--group-size", "0"], "--group-size"),
        (["quantize", "m", "-o", "o", "--dense-dtype", "bf16"], "--dense-dtype"),
        (["quantize", "m", "-o", "o", "--device", "tpu"], "--device"),
        (["export", "c", "-o", "o", "--dtype", "bf16"], "--dtype"),
        (["export", "c", "-o", "o", "--lm-head", "int2"], "--lm-head"),
        (["export", "c", "-o", "o", "--accuracy-level", "7"], "--accuracy-level"),
        (["export", "c", "-o", "o", "--weight-layout", "tiles8"], "--weight-layout"),
        (["eval", "m", "--dtype", "int8"], "--dtype"),
        (["eval", "m", "--window", "0"], "--window"),
        (["run", "m", "-p", "hi", "-n", "-1"], "--max-new-tokens"),
        (["bench", "m", "--rounds", "0"], "--rounds"),
        (["bench", "m", "--threads", "x"], "--threads"),
    ],
)
def test_bad_option_values_are_usage_errors(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert needle in _usage_error(argv, capsys)


def test_export_without_its_arguments_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(["export", str(fixture_path("llama-gemm-g64"))], capsys)
    assert "missing -o/--output" in err
    err = _usage_error(["export", "--target", "ort"], capsys)
    assert "missing CHECKPOINT and -o/--output" in err


def test_quantize_report_and_json_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--report" in _usage_error(["quantize", "m", "-o", "o", "--json", "--report"], capsys)


def test_every_result_printing_command_has_json() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("inspect", "prepare", "quantize", "export", "eval", "run", "bench"):
        flags = {flag for action in subparsers.choices[name]._actions for flag in action.option_strings}
        assert "--json" in flags, name


def test_option_tables_match_the_compiler() -> None:
    """The CLI repeats two compiler tables (importing them would load torch for every command); the export
    options come from the target registry itself."""
    from awq2trt.modeling.loader import DTYPES as LOADER_DTYPES
    from awq2trt.quantize.api import METHODS
    from awq2trt.targets.registry import target_names

    assert set(quantize_command.METHODS) == set(METHODS)
    assert set(DTYPES) <= set(LOADER_DTYPES)
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    target = next(a for a in subparsers.choices["export"]._actions if "--target" in a.option_strings)
    assert tuple(target.choices) == target_names() == ("ir", "ort", "ort-kernels", "trt", "trt-plugin")


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"### {title}\n")
    end = text.find("\n#", start + 1)
    return text[start : end if end >= 0 else None]


def test_readme_documents_every_exit_code() -> None:
    rows = re.findall(r"^\| `(\d+)` \| (.+?) \|$", _readme_section("Exit codes"), flags=re.MULTILINE)
    assert {int(code) for code, _ in rows} == {int(code) for code in ExitCode}
    assert set(EXIT_CODE_MEANINGS) == set(ExitCode)


def test_readme_quantize_row_states_the_default_group_size() -> None:
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `awq2trt quantize"))
    assert f"default {quantize_command.DEFAULT_GROUP_SIZE}" in row


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == ExitCode.USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "internal error" not in err
    return err


def test_deeply_nested_config_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "deep"
    folder.mkdir()
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    err = _one_line_error(["inspect", str(folder)], capsys)
    assert str(folder / "config.json") in err and "expected JSON nested" in err


def test_missing_path_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["run", "/no/such/path", "-p", "hi"], ["eval", "/no/such/path"], ["inspect", "/no/such/path"]):
        assert "/no/such/path: expected a checkpoint or exported folder, got no such path" in _one_line_error(
            command, capsys
        )


def test_inspect_says_how_many_files_it_did_not_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(9):
        (tmp_path / f"file{i}.txt").write_text("x")
    err = _one_line_error(["inspect", str(tmp_path)], capsys)
    assert "file0.txt, file1.txt, file2.txt, file3.txt, file4.txt, file5.txt and 3 more" in err
    assert "awq2trt.json" in err  # it names both kinds of folder inspect describes


def test_closed_stdout_stops_quietly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "awq2trt", "inspect", "--json", str(fixture_path("llama-gemm-g64"))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader goes away before anything is written, as `| head` does after its lines
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.BROKEN_PIPE
    assert err == ""


def test_quantize_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "q"
    argv = ["quantize", str(source_path("llama")), "-o", str(out), "--method", "rtn", "--group-size", "64"]
    assert main([*argv, "--json", "-q"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["output"] == str(out) and info["method"] == "rtn" and info["group_size"] == 64
    assert info["bytes"] == sum(p.stat().st_size for p in out.glob("*.safetensors"))


# -- the demo's perplexity cache --------------------------------------------------------------------------


class _Measure:
    def __init__(self, value: float) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> _Measure:
        self.calls += 1
        self.perplexity, self.tokens_scored, self.windows = self.value, 100, 2
        return self


def test_perplexity_cache(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    text = tmp_path / "text.txt"
    text.write_text("some text")
    measure = _Measure(22.05)

    def figure(**overrides: object) -> tuple[float, bool]:
        kwargs = {"model": model, "engine": "pytorch-fp32", "text": text, "window": 512, "stride": 512, **overrides}
        result = cached_perplexity(tmp_path / "cache", measure=measure, **kwargs)  # type: ignore[arg-type]
        return result.perplexity, result.cached

    assert figure() == (22.05, False)
    assert figure() == (22.05, True) and measure.calls == 1
    assert figure(stride=256) == (22.05, False) and measure.calls == 2  # another protocol is another figure
    os.utime(model / "model.safetensors", ns=(1, 1))  # the model changed: measured again
    assert figure() == (22.05, False) and measure.calls == 3
    (tmp_path / "cache" / "perplexity.json").write_text("{not json")  # a damaged cache is an empty one
    assert figure() == (22.05, False) and measure.calls == 4
    assert figure() == (22.05, True)
