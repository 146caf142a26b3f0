"""Replay every fuzz harness's corpus in-process: each input ends in a valid result or our one-line error.

The harnesses are ``tests/fuzz/fuzz_<name>.py`` and their inputs ``tests/fuzz/corpus/<name>/*`` (seeds from
the fixtures, plus every minimized input the fuzzer found: each one was a bug and stays a regression test).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fuzz._harness import CORPUS_DIR, FUZZ_DIR

HARNESSES = sorted(p.stem.removeprefix("fuzz_") for p in FUZZ_DIR.glob("fuzz_*.py"))
# The readers of untrusted bytes issue 19 lists; every one must keep a harness and a corpus.
REQUIRED = {"safetensors", "index", "config", "weights", "tokenizer", "chat_template"}
MIN_DISTINCT_INPUTS = 200


def _inputs(name: str) -> list[Path]:
    return sorted(p for p in (CORPUS_DIR / name).iterdir() if p.is_file())


def _one_input(name: str) -> Callable[[bytes], None]:
    return importlib.import_module(f"tests.fuzz.fuzz_{name}").one_input


def test_every_reader_has_a_harness_and_a_corpus() -> None:
    assert set(HARNESSES) >= REQUIRED, sorted(REQUIRED - set(HARNESSES))
    for name in HARNESSES:
        assert (CORPUS_DIR / name).is_dir() and _inputs(name), f"no corpus for fuzz_{name}"


def test_corpus_is_large_and_distinct() -> None:
    """Count hostile inputs once each: the same bytes fed to the same harness are one input, not two."""
    distinct = {(name, hashlib.sha256(p.read_bytes()).hexdigest()) for name in HARNESSES for p in _inputs(name)}
    assert len(distinct) >= MIN_DISTINCT_INPUTS, len(distinct)


@pytest.mark.parametrize("name", [n for n in HARNESSES if (CORPUS_DIR / n).is_dir()])
def test_replay_corpus(name: str) -> None:
    one_input = _one_input(name)
    failures = []
    for path in _inputs(name):
        try:
            one_input(path.read_bytes())
        except Exception as error:
            failures.append(f"{path.name}: {type(error).__name__}: {str(error)[:200]}")
    assert not failures, "\n".join(failures)
