"""The CLI in real child processes, started all at once: each pays the interpreter's start-up, in parallel."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

# What a child returns: exit code, stdout, stderr.
CliResult = tuple[int, str, str]


def run_cli_processes(argvs: Mapping[str, Sequence[str]], timeout: float = 120.0) -> dict[str, CliResult]:
    """Run `python -m awq2trt.cli ARGV` for every named argv concurrently, offline, and collect each result."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "awq2trt.cli", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name, argv in argvs.items()
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=timeout)
        results[name] = (proc.returncode, out, err)
    return results
