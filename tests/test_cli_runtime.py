"""`run`, `eval` and `bench` on exported folders (ONNX Runtime), against the reference and the Python API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from awq2trt.cli import main
from awq2trt.frontend.export import export_checkpoint
from awq2trt.runtime import OrtModel
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


def test_bench_json(folders: dict[int, Path], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", str(folders[4]), "--rounds", "2", "--new-tokens", "8", "--prompt-lengths", "16,64", "--json"]
    assert main([*argv, "--threads", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["prefill_tokens_per_s"]) == {"16", "64"}
    for figure in (*report["prefill_tokens_per_s"].values(), report["decode_tokens_per_s"], report["ttft_ms"]):
        assert figure["best"] > 0 and figure["median"] > 0
    assert report["decode_tokens_per_s"]["best"] >= report["decode_tokens_per_s"]["median"]
    assert report["ttft_ms"]["best"] <= report["ttft_ms"]["median"]
    data = folders[4] / "model.onnx.data"
    assert report["model_bytes"] >= data.stat().st_size and report["peak_rss_bytes"] > data.stat().st_size


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
