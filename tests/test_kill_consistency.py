"""Crash consistency: every writing command, SIGKILLed at random instants of its run, leaves its output path
holding one complete output (the previous one or the new one, never a mix), and the next run into the same
path succeeds and leaves nothing else behind.

Each run is the real command line (``awq2trt.cli.main``, what ``python -m awq2trt`` calls) in a fresh process,
forked from a runner that imported torch, onnx and onnxruntime once: a kill costs the command's own run, not
~5 s of interpreter start-up.  Kill instants are drawn (seeded) over the run's measured duration: half over the
whole run, half over the stretch in which the command writes (from its temporary folder's appearance to its
exit), where a kill could do harm.  Successive runs alternate between two variants of the command (different
options, so different bytes), and after every kill the output's digest must equal the digest of the output
before the run or of the run's own complete output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fixture_path, source_path

KILLS = 20
SEED = 19


# -- the runner: a warm process that forks one child per run ------------------------------------------------


def _serve() -> None:
    """Read one JSON request a line, fork a child running the CLI, kill it on time, answer one JSON line."""
    import onnxruntime  # noqa: F401

    import awq2trt.frontend.export
    import awq2trt.quantize
    import awq2trt.triton.repository
    from awq2trt.cli import main
    from tests.trace_memo import memoized_trace

    # Children inherit the runner's traces (fork): a warmed-up export then spends its run on what it writes.
    awq2trt.frontend.export._trace = memoized_trace(awq2trt.frontend.export._trace)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if "warm" in request:  # run a command here, in the runner, so its traces are in every later child
            with open(request["log"], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                rc = main(request["warm"])
            print(json.dumps({"rc": rc}), flush=True)
            continue
        sys.stdout.flush()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(main, request["argv"], request["log"])
        prefix = f".{request['name']}.partial-"
        watch = Path(request["watch"])
        kill_after, after_write = request["kill_after"], request["after_write"]
        seen, gone, killed, status = None, None, False, 0
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            elapsed = time.monotonic() - start
            if gone is None:
                writing = any(n.startswith(prefix) for n in os.listdir(watch))
                if seen is None and writing:
                    seen = elapsed
                elif seen is not None and not writing:
                    gone = elapsed
            if after_write is not None and seen is not None:
                kill_after = seen + after_write
            if kill_after is not None and elapsed >= kill_after:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                killed = True
                break
            time.sleep(0.002)
        seconds = time.monotonic() - start
        rc = os.waitstatus_to_exitcode(status)
        answer = {"rc": rc, "killed": killed, "seconds": seconds, "partial_seen": seen, "partial_gone": gone}
        print(json.dumps(answer), flush=True)


def _child(main: Callable[[list[str]], int], argv: list[str], log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = 99
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 2
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class Runner:
    def __init__(self, log_dir: Path) -> None:
        self.log = log_dir / "run.log"
        root = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tests.test_kill_consistency import _serve; _serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=root,
        )
        assert json.loads(self._line()) == {"ready": True}

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the kill runner died"
        return line

    def run(
        self, argv: list[str], output: Path, kill_after: float | None = None, after_write: float | None = None
    ) -> dict[str, Any]:
        """Run the command; SIGKILL it *kill_after* s after its start, or *after_write* s after its temporary
        output appeared (timing jitter between runs is larger than a short command's whole write)."""
        assert self.proc.stdin is not None
        request = {
            "argv": argv,
            "kill_after": kill_after,
            "after_write": after_write,
            "watch": str(output.parent),
            "name": output.name,
            "log": str(self.log),
        }
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self._line())
        answer["log"] = self.log.read_text()
        return answer

    def warm(self, argv: list[str]) -> None:
        """Run *argv* inside the runner (not killed), so the traces it makes are shared by every later child."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"warm": argv, "log": str(self.log)}) + "\n")
        self.proc.stdin.flush()
        assert json.loads(self._line()) == {"rc": 0}, self.log.read_text()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    r = Runner(tmp_path_factory.mktemp("runner"))
    yield r
    r.close()


# -- what a complete output is -----------------------------------------------------------------------------


def digest(path: Path) -> str:
    """Names, kinds and bytes of everything under *path* (files read through links): equal means identical."""
    h = hashlib.sha256()
    for item in sorted(path.rglob("*")):
        rel = item.relative_to(path).as_posix()
        if item.is_dir():
            h.update(f"d {rel}\n".encode())
        else:
            h.update(f"f {rel} {hashlib.sha256(item.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


# What a killed run may leave beside the output, for the next run to clear: its temporary folder and its lock.
def _leftover(name: str, entry: str) -> bool:
    return entry.startswith(f".{name}.partial-") or entry == f".{name}.lock"


@dataclass
class Outcome:
    before_write: int = 0  # killed before its temporary folder appeared
    while_writing: int = 0  # killed after it appeared
    finished: int = 0  # ran to the end before its kill instant


def kill_series(
    runner: Runner,
    output: Path,
    variants: tuple[list[str], list[str]],
    check_complete: Callable[[Path], None],
    *,
    kills: int = KILLS,
    seed: int = SEED,
) -> Outcome:
    """Two reference runs, *kills* killed runs, one final run; every output state checked (see the module doc)."""
    # Reference outputs of both variants, each produced by an uninterrupted run and checked once.
    reference = []
    windows = []
    for argv in variants:
        answer = runner.run(argv, output)
        assert answer["rc"] == 0 and not answer["killed"], answer["log"]
        check_complete(output)
        reference.append(digest(output))
        # The stretch in which it writes: its temporary folder exists (until it becomes the output).
        seen = answer["partial_seen"] if answer["partial_seen"] is not None else 0.0
        gone = answer["partial_gone"] if answer["partial_gone"] is not None else answer["seconds"]
        windows.append((answer["seconds"], seen, gone))
    assert reference[0] != reference[1], "the two variants must write different bytes"
    rng = random.Random(seed)
    outcome = Outcome()
    for i in range(kills):
        variant = i % 2
        whole, start, end = windows[variant]
        before = digest(output)
        if i < kills // 2:
            at = rng.uniform(0.0, whole)
            answer = runner.run(variants[variant], output, kill_after=at)
        else:
            delay = rng.uniform(0.0, end - start)
            at = start + delay
            answer = runner.run(variants[variant], output, after_write=delay)
        if answer["killed"]:
            if answer["partial_seen"] is None:
                outcome.before_write += 1
            else:
                outcome.while_writing += 1
        else:
            assert answer["rc"] == 0, answer["log"]
            outcome.finished += 1
        assert output.is_dir(), f"kill {i} at {at:.3f} s left no output"
        after = digest(output)
        assert after in (before, reference[variant]), f"kill {i} at {at:.3f} s left a mixed output"
        strays = [n for n in os.listdir(output.parent) if n != output.name and not _leftover(output.name, n)]
        assert strays == [], f"kill {i} at {at:.3f} s left {strays}"
    # The next, uninterrupted run into the same path succeeds and clears what the killed runs left.
    answer = runner.run(variants[0], output)
    assert answer["rc"] == 0, answer["log"]
    assert digest(output) == reference[0]
    check_complete(output)
    assert os.listdir(output.parent) == [output.name]
    return outcome


def _spread(outcome: Outcome) -> None:
    """The draw reached the stretch in which the command writes (a series that never killed a writer proves
    little).  Printed for the record (``pytest -s``)."""
    print(outcome)
    assert outcome.while_writing >= KILLS // 4, outcome
    assert outcome.before_write + outcome.while_writing + outcome.finished == KILLS


# -- the commands --------------------------------------------------------------------------------------------


def _checkpoint_loads(folder: Path) -> None:
    from awq2trt.checkpoint import open_checkpoint

    assert open_checkpoint(folder).linears


def test_quantize_survives_kills(runner: Runner, tmp_path: Path) -> None:
    out = tmp_path / "work" / "q"
    out.parent.mkdir()
    base = ["quantize", str(source_path("llama")), "-o", str(out), "--method", "rtn", "--force", "-q"]
    outcome = kill_series(
        runner, out, ([*base, "--group-size", "64"], [*base, "--group-size", "32"]), _checkpoint_loads
    )
    _spread(outcome)


def _repository_complete(folder: Path) -> None:
    configs = sorted(p.relative_to(folder).as_posix() for p in folder.glob("*/config.pbtxt"))
    assert configs, f"no model in {folder}"
    for config in configs:
        assert (folder / config).read_text().strip()


def test_triton_survives_kills(runner: Runner, shared_export: Any, tmp_path: Path) -> None:
    model = shared_export("llama-gemm-g64").output
    out = tmp_path / "work" / "repo"
    out.parent.mkdir()
    base = ["triton", str(model), "-o", str(out), "--force"]
    variants = ([*base, "--kind", "generate"], [*base, "--kind", "onnxruntime"])
    _spread(kill_series(runner, out, variants, _repository_complete))


def _export_opens(folder: Path) -> None:
    from awq2trt.runtime.session import OrtModel

    model = OrtModel.open(folder)
    assert model.sidecar.num_layers == 2


@pytest.mark.slow  # 22 exports; quantize and triton cover the default run
def test_export_survives_kills(runner: Runner, tmp_path: Path) -> None:
    out = tmp_path / "work" / "onnx"
    out.parent.mkdir()
    # The trace is in memory only (nothing is written until it ends), so it is made once, before the kills.
    runner.warm(["export", str(fixture_path("llama-gemm-g64")), "-o", str(tmp_path / "warm"), "-q"])
    base = ["export", str(fixture_path("llama-gemm-g64")), "-o", str(out), "--force", "-q"]
    _spread(kill_series(runner, out, (base, [*base, "--no-fuse"]), _export_opens))


def test_build_early_checks_survive_kills(runner: Runner, shared_export: Any, tmp_path: Path) -> None:
    """Without TensorRT, build runs its checks and stops (exit 4) before it writes: killed anywhere in that run,
    the previous engine files are untouched and nothing new appears."""
    model = tmp_path / "trt-export"
    shutil.copytree(shared_export("llama-gemm-g64").output, model)
    sidecar = json.loads((model / "awq2trt.json").read_text())
    sidecar["target"] = "trt"  # only what build checks before TensorRT; TensorRT itself would read the graph
    (model / "awq2trt.json").write_text(json.dumps(sidecar))
    out = tmp_path / "work" / "engine"
    out.mkdir(parents=True)
    (out / "model.plan").write_bytes(b"previous engine")
    (out / "engine.json").write_text("{}")
    before = digest(out)
    argv = ["build", str(model), "-o", str(out / "model.plan"), "--force"]
    if _has_tensorrt():
        pytest.skip("TensorRT is installed: test_build_engine_write_survives_kills kills real builds")
    first = runner.run(argv, out / "model.plan")
    assert first["rc"] == 4 and "tensorrt" in first["log"].lower(), first["log"]
    rng = random.Random(SEED)
    for _ in range(KILLS):
        runner.run(argv, out / "model.plan", kill_after=rng.uniform(0.0, first["seconds"]))
        assert digest(out) == before
        assert sorted(os.listdir(out.parent)) == ["engine"]
    assert runner.run(argv, out / "model.plan")["rc"] == 4


def _has_tensorrt() -> bool:
    from awq2trt.errors import MissingPackageError
    from awq2trt.tensorrt.builder import import_tensorrt

    try:
        import_tensorrt()
    except MissingPackageError:
        return False
    return True


@pytest.mark.tensorrt
def test_build_engine_write_survives_kills(runner: Runner, shared_export: Any, tmp_path: Path) -> None:
    """With TensorRT: builds killed anywhere leave the engine folder claiming (engine.json) only an engine it
    holds whole, the previous one or the new one, and a last build succeeds."""
    if not _has_tensorrt():
        pytest.skip("needs TensorRT 10/11 (not installable here): the engine-writing stretch of build")
    from awq2trt.tensorrt.engine_info import EngineInfo

    model = shared_export("llama-gemm-g64", target="trt").output
    out = tmp_path / "engine"
    variants = [["build", str(model), "-o", str(out / "model.plan"), "--force", "-q", "--max-batch", b] for b in "12"]
    reference = []
    for argv in variants:
        assert runner.run(argv, out / "model.plan")["rc"] == 0
        reference.append(digest(out))
    first = runner.run(variants[0], out / "model.plan")
    rng = random.Random(SEED)
    for i in range(KILLS):
        before = digest(out)
        runner.run(variants[i % 2], out / "model.plan", kill_after=rng.uniform(0.0, first["seconds"]))
        if (out / "engine.json").exists():
            EngineInfo.read(out)
            assert digest(out) in (before, reference[i % 2])
    assert runner.run(variants[0], out / "model.plan")["rc"] == 0
    assert digest(out) == reference[0]
