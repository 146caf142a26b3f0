"""Every broken checkpoint in `broken_corpus` ends in one ``error: <where>: expected <x>, got <y>`` line.

``awq2trt inspect PATH --check -q`` runs in-process for the whole corpus, and in real subprocesses for a few
cases, to show that no traceback reaches a terminal.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from awq2trt.cli import EXIT_USER_ERROR, main
from tests.broken_corpus import CASES, CASES_BY_ID, CT, GEMM, GEMV, QWEN, BrokenCase, copy_fixture, pickle_only
from tests.cli_processes import CliResult, run_cli_processes

ERROR_LINE = re.compile(r"^error: .+: expected .+, got ")

# The kinds of mistakes the corpus must keep covering.
REQUIRED_IDS = {
    "safetensors-truncated-in-data",
    "safetensors-truncated-in-header",
    "safetensors-garbage",
    "gemm-missing-qzeros",
    "gemm-qweight-float32",
    "gemm-qweight-int16",
    "gemm-scales-wrong-groups",
    "awq-group-size-96",
    "awq-bits-3",
    "awq-version-marlin",
    "awq-backend-foo",
    "awq-quant-method-gptq",
    "awq-do-fuse-without-max-seq-len",
    "config-invalid-json",
    "config-json-list",
    "config-missing",
    "empty-folder",
    "file-not-folder",
    "nonexistent-path",
    "pickle-only-refused",
    "index-missing-shard",
    "index-invalid-json",
    "gemm-scales-nan",
    "norm-inf",
    "norm-missing",
    "unknown-extra-tensor",
    "config-hidden-size-mismatch",
    "config-model-type-gpt2",
    "ct-actorder-group",
    "ct-num-bits-8",
    "ct-missing-zero-point",
}

# Run for real, one process each: a config error, a file error, the pickle refusal, a --check decode error.
SUBPROCESS_IDS = ("awq-bits-3", "safetensors-truncated-in-data", "pickle-only-refused", "gemm-scales-nan")


def _params(ids: tuple[str, ...] | None = None) -> list:
    cases = CASES if ids is None else tuple(CASES_BY_ID[i] for i in ids)
    return [pytest.param(case, id=case.id) for case in cases]


@pytest.fixture(autouse=True)
def _restore_cli_side_effects(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`main` sets library variables (os.environ.setdefault) and may install a SIGTERM handler: undo both."""
    for var in ("HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM", "TRANSFORMERS_VERBOSITY"):
        if var in os.environ:
            monkeypatch.setenv(var, os.environ[var])
        else:
            monkeypatch.delenv(var, raising=False)
    sigterm = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, sigterm)


def inspect_argv(case: BrokenCase, path: Path) -> list[str]:
    return ["inspect", str(path), "--check", "-q", *case.args]


def assert_one_error_line(case: BrokenCase, rc: int, stdout: str, stderr: str) -> None:
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line, got {len(lines)}: {stderr!r}"
    line = lines[0]
    assert line.strip() and line.startswith("error: "), line
    assert "internal error" not in line, line
    assert ERROR_LINE.match(line), f"not 'error: <where>: expected <x>, got <y>': {line}"
    for needle in case.expect:
        assert needle in line, f"{needle!r} not named in: {line}"
    assert rc == EXIT_USER_ERROR, f"exit code {rc} for: {line}"


def test_corpus_is_large_and_covers_the_required_mistakes() -> None:
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)
    assert set(CASES_BY_ID) >= REQUIRED_IDS, sorted(REQUIRED_IDS - set(CASES_BY_ID))
    assert all(c.expect and all(c.expect) for c in CASES), "every case must say what the error line names"


@pytest.mark.parametrize("name", [GEMM, GEMV, CT, QWEN])
def test_unbroken_copies_pass(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The copy step alone (without reference/) is valid, so each case fails for its own corruption only."""
    rc = main(["inspect", str(copy_fixture(tmp_path, name)), "--check", "-q"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert err == ""
    assert "ok: every tensor decodes" in out


@pytest.mark.parametrize("case", _params())
def test_broken_input_gives_one_error_line(
    case: BrokenCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = case.build(tmp_path)
    capsys.readouterr()
    rc = main(inspect_argv(case, path))
    out, err = capsys.readouterr()
    assert_one_error_line(case, rc, out, err)


@pytest.fixture(scope="module")
def subprocess_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CliResult]:
    argvs = {}
    for case_id in SUBPROCESS_IDS:
        case = CASES_BY_ID[case_id]
        argvs[case_id] = inspect_argv(case, case.build(tmp_path_factory.mktemp(case_id)))
    return run_cli_processes(argvs)


@pytest.mark.parametrize("case", _params(SUBPROCESS_IDS))
def test_broken_input_in_a_real_process(case: BrokenCase, subprocess_results: dict[str, CliResult]) -> None:
    rc, out, err = subprocess_results[case.id]
    assert_one_error_line(case, rc, out, err)


def test_allow_pickle_loads_a_valid_pickle_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = pickle_only(tmp_path)
    assert not (path / "model.safetensors").exists()
    rc = main(["inspect", str(path), "--check", "-q", "--allow-pickle"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert err == ""
    assert "pytorch_model.bin" in out
    assert "ok: every tensor decodes" in out
