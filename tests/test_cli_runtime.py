"""`run`, `eval` and `bench` on exported folders (ONNX Runtime), against the reference and the Python API."""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from awq2trt.cli import main
from awq2trt.frontend.export import export_checkpoint
from awq2trt.runtime import OrtModel
from awq2trt.runtime.bench import SHORT_PROMPT_TOKENS
from tests.conftest import fixture_path

CHECKPOINT = "llama-gemm-g64"


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    base = tmp_path_factory.mktemp("cli-ort")
    return {
        level: export_checkpoint(
            fixture_path(CHECKPOINT), base / f"level{level}", target="ort", accuracy_level=level, progress=False
        ).output
        for level in (0, 4)
    }


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "apache.txt"
    path.write_text(Path("/usr/share/common-licenses/Apache-2.0").read_text()[:6000])
    return path


def _eval(capsys: pytest.CaptureFixture[str], model: Path, text: Path, *extra: str) -> float:
    assert (
        main(["eval", str(model), "--text", str(text), "--window", "256", "--stride", "128", "--json", "-q", *extra])
        == 0
    )
    return json.loads(capsys.readouterr().out)["perplexity"]


def test_eval_matches_the_reference(
    folders: dict[int, Path], text_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = _eval(capsys, fixture_path(CHECKPOINT), text_file)
    exact = _eval(capsys, folders[0], text_file, "--threads", "2")
    fast = _eval(capsys, folders[4], text_file, "--threads", "2")
    assert abs(exact / reference - 1) <= 5e-4  # accuracy level 0: within 0.05 %
    assert abs(fast / reference - 1) <= 5e-3  # level 4 (int8 activations): within 0.5 %
    assert fast != exact


def test_run_streams_what_the_api_generates(folders: dict[int, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(folders[0]), "-p", "Hello there", "-n", "12", "--raw", "-q"]) == 0
    captured = capsys.readouterr()
    expected = OrtModel.open(folders[0]).generate("Hello there", 12)
    assert captured.out == expected.texts[0] + "\n"
    assert "tok/s" in captured.err and "greedy" in captured.err


def test_run_samples_reproducibly(folders: dict[int, Path], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", str(folders[0]), "-p", "Hello", "-n", "16", "--raw", "--temperature", "1.5", "--seed", "7"]
    outputs = []
    for _ in range(2):
        assert main(argv) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert main([*argv[:-1], "8"]) == 0
    assert capsys.readouterr().out != outputs[0]


def _timed_generate(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, float, list[float]]]:
    """Record every ``OrtModel.generate`` call: (prompt tokens, max_new_tokens, its wall time, the wall time of
    each ONNX Runtime run inside it), timed here, around the calls, independently of the runtime's own clock."""
    calls: list[tuple[int, int, float, list[float]]] = []
    runs: list[float] = []
    real_generate = OrtModel.generate

    def timed(real: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                runs.append(time.perf_counter() - start)

        return run

    def generate(self: OrtModel, prompts: Any, max_new_tokens: int = 64, **kwargs: Any) -> Any:
        if not getattr(self.session, "_timed_here", False):
            for method in ("run", "run_with_iobinding"):
                setattr(self.session, method, timed(getattr(self.session, method)))
            self.session._timed_here = True
        runs.clear()
        start = time.perf_counter()
        result = real_generate(self, prompts, max_new_tokens, **kwargs)
        calls.append((len(prompts), max_new_tokens, time.perf_counter() - start, list(runs)))
        return result

    monkeypatch.setattr(OrtModel, "generate", generate)
    return calls


def _within(figure: dict[str, float], low: list[float], high: list[float]) -> None:
    """best and median of per-round values that each lie in [low_i, high_i] lie between the bounds' max and
    median (order statistics keep elementwise bounds)."""
    assert set(figure) == {"best", "median"}
    assert 0 < statistics.median(low) <= figure["median"] <= statistics.median(high), (figure, low, high)


def test_bench_json_agrees_with_an_outside_clock(
    folders: dict[int, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each figure of ``bench --json`` against the same calls timed from outside: prefill tok/s between
    tokens / (whole generate call) and tokens / (the prefill's ONNX Runtime run); decode tok/s between
    (new tokens - 1) / (whole call) and the same over the decode steps' runs; time to first token in
    milliseconds between the prefill run and the whole call.  A unit slip (s for ms) or a miscounted figure
    falls outside; best is the best round of the same values."""
    calls = _timed_generate(monkeypatch)
    rounds, new_tokens, lengths = 3, 8, (16, 64)
    argv = ["bench", str(folders[4]), "--rounds", str(rounds), "--new-tokens", str(new_tokens)]
    argv += ["--prompt-lengths", ",".join(map(str, lengths)), "--json", "--threads", "2"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {
        "model",
        "provider",
        "threads",
        "rounds",
        "model_bytes",
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
        "new_tokens",
        "ttft_ms",
        "peak_rss_bytes",
    }
    assert (report["model"], report["provider"], report["threads"]) == (str(folders[4]), "cpu", 2)
    assert (report["rounds"], report["new_tokens"]) == (rounds, new_tokens)
    short = SHORT_PROMPT_TOKENS
    # One warm-up call, then per round one call per prompt length and one decode call on the short prompt.
    assert [(c[0], c[1]) for c in calls] == [(short, 4)] + [*[(n, 1) for n in lengths], (short, new_tokens)] * rounds
    per_round = [calls[1 + r * (len(lengths) + 1) : 1 + (r + 1) * (len(lengths) + 1)] for r in range(rounds)]
    assert set(report["prefill_tokens_per_s"]) == {str(n) for n in lengths}
    for i, n in enumerate(lengths):
        assert all(len(r[i][3]) == 1 for r in per_round)  # one new token: the prefill run alone
        low, high = [n / r[i][2] for r in per_round], [n / r[i][3][0] for r in per_round]
        figure = report["prefill_tokens_per_s"][str(n)]
        _within(figure, low, high)
        assert max(low) <= figure["best"] <= max(high)
    decode = [r[-1] for r in per_round]
    assert all(len(c[3]) == new_tokens for c in decode)  # the prefill, then one run per token after the first
    low, high = [(new_tokens - 1) / c[2] for c in decode], [(new_tokens - 1) / sum(c[3][1:]) for c in decode]
    _within(report["decode_tokens_per_s"], low, high)
    assert max(low) <= report["decode_tokens_per_s"]["best"] <= max(high)
    low, high = [1000 * c[3][0] for c in decode], [1000 * c[2] for c in decode]
    _within(report["ttft_ms"], low, high)
    assert min(low) <= report["ttft_ms"]["best"] <= min(high)
    files = [folders[4] / "model.onnx", folders[4] / "model.onnx.data"]
    assert report["model_bytes"] == sum(f.stat().st_size for f in files)
    assert report["peak_rss_bytes"] > files[1].stat().st_size


def _user_error(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    for needle in needles:
        assert needle in err


def test_bad_input_is_one_line(folders: dict[int, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = str(folders[0])
    _user_error(["run", folder, "-p", "", "--raw"], capsys, "empty prompt")
    _user_error(["run", folder, "-p", "word " * 2000, "--raw"], capsys, "max_position_embeddings")
    _user_error(["bench", str(fixture_path(CHECKPOINT))], capsys, "awq2trt.json")
    _user_error(["bench", folder, "--prompt-lengths", "1,x"], capsys, "--prompt-lengths")
    _user_error(["bench", folder, "--prompt-lengths", "100000"], capsys, "--prompt-lengths")
    _user_error(["run", str(fixture_path(CHECKPOINT)), "-p", "hi", "--top-k", "5"], capsys, "--top-k")
    _user_error(["run", folder, "-p", "hi", "--raw", "--top-p", "0"], capsys, "top_p")
    _user_error(["eval", folder, "--provider", "tpu"], capsys, "--provider")
    broken = shutil.copytree(folders[0], tmp_path / "no-data")
    (broken / "model.onnx.data").unlink()
    _user_error(["run", str(broken), "-p", "hi"], capsys, "model.onnx.data")
    mismatched = shutil.copytree(folders[0], tmp_path / "mismatch")
    sidecar = json.loads((mismatched / "awq2trt.json").read_text())
    sidecar["num_layers"] += 1
    (mismatched / "awq2trt.json").write_text(json.dumps(sidecar))
    _user_error(["eval", str(mismatched)], capsys, "awq2trt.json")
