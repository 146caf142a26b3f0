"""Commands on an exported folder: no compiler imported, inspect from the sidecar, JSON, the demo's re-export."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from awq2trt.cli import main
from awq2trt.cli.commands.demo import open_or_export
from awq2trt.errors import Awq2TrtError
from awq2trt.runtime import OrtModel
from tests.conftest import ROOT, fixture_path

CHECKPOINT = "llama-gemm-g64"
# What serving must not load: torch and transformers, the compiler stages, and the ONNX tooling they use.
COMPILER_MODULES = ("torch", "transformers", "onnx", "onnx_ir", "onnxscript")
COMPILER_PACKAGES = ("awq2trt.frontend", "awq2trt.passes", "awq2trt.quantize", "awq2trt.modeling")
# Runs one command in a fresh interpreter, then reports on stderr's last line which modules it loaded.
LOADED_MODULES = """
import json, sys
from awq2trt.cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
print(json.dumps({"code": int(code), "modules": sorted(sys.modules)}), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    folder = tmp_path_factory.mktemp("serving") / "ort"
    argv = ["export", str(fixture_path(CHECKPOINT)), "-o", str(folder), "--target", "ort", "--json", "-q"]
    capture = subprocess.run(
        [sys.executable, "-m", "awq2trt", *argv], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return folder, json.loads(capture.stdout)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "apache.txt"
    path.write_text(Path("/usr/share/common-licenses/Apache-2.0").read_text()[:2000])
    return path


def test_export_json(exported: tuple[Path, dict[str, object]]) -> None:
    folder, result = exported
    sidecar = json.loads((folder / "awq2trt.json").read_text())
    assert result["output"] == str(folder) and result["target"] == "ort"
    assert result["int4_nodes"] == sidecar["quantization"]["int4_nodes"]
    assert result["data_bytes"] == (folder / "model.onnx.data").stat().st_size
    assert list(result["passes"]) == list(sidecar["passes"])  # type: ignore[arg-type]


def _loaded_modules(argv: list[str]) -> tuple[int, list[str], str]:
    proc = subprocess.run(
        [sys.executable, "-c", LOADED_MODULES, *argv], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return report["code"], report["modules"], proc.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["run", "{folder}", "-p", "Hello", "-n", "4", "--raw"],
        ["run", "{folder}", "-p", "Hello", "-n", "4", "--raw", "--json"],
        ["eval", "{folder}", "--text", "{text}", "--window", "64", "--stride", "64"],
        ["bench", "{folder}", "--rounds", "1", "--new-tokens", "2", "--prompt-lengths", "8", "--json"],
        ["inspect", "{folder}", "--json"],
    ],
    ids=["run", "run-json", "eval", "bench", "inspect"],
)
def test_serving_imports_no_compiler(
    command: list[str], exported: tuple[Path, dict[str, object]], text_file: Path
) -> None:
    folder, _ = exported
    argv = [arg.format(folder=folder, text=text_file) for arg in command] + ["-q"]
    code, modules, _ = _loaded_modules(argv)
    assert code == 0
    loaded = [m for m in modules if m.split(".")[0] in COMPILER_MODULES or m.startswith(COMPILER_PACKAGES)]
    assert loaded == []
    assert "awq2trt.runtime.session" in modules or command[0] == "inspect"  # it did run on the folder


def test_inspect_describes_the_export(
    exported: tuple[Path, dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = exported
    sidecar = json.loads((folder / "awq2trt.json").read_text())
    assert main(["inspect", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "export" and info["target"] == "ort"
    assert info["target_options"]["accuracy_level"] == 4
    assert info["passes"] == sidecar["passes"] and info["pass_nodes"] == sidecar["pass_nodes"]
    assert set(info["inputs"]) == set(sidecar["inputs"]) and "logits" in info["outputs"]
    assert info["files"]["model.onnx.data"] == (folder / "model.onnx.data").stat().st_size
    assert info["total_bytes"] == sum(p.stat().st_size for p in folder.iterdir())
    assert main(["inspect", str(folder)]) == 0
    table = capsys.readouterr().out
    layers = sidecar["num_layers"]
    assert "target" in table and "ort (accuracy_level 4" in table
    assert f"past_key_values.{{i}}.key float32 [batch, num_kv_heads, past_seq, head_dim] x{layers}" in table
    assert "model.onnx.data" in table and "total size" in table


def test_inspect_check_refuses_an_export(
    exported: tuple[Path, dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(exported[0]), "--check"]) == 1
    assert "--check: expected a checkpoint folder" in capsys.readouterr().err


def test_inspect_reads_a_sidecar_the_runtime_refuses(
    exported: tuple[Path, dict[str, object]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An export from another version still gets described: missing keys are shown as absent."""
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "awq2trt.json").write_text(json.dumps({"format": "awq2trt-onnx", "format_version": 0, "target": "ir"}))
    assert main(["inspect", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "version 0" in out and "target" in out and "ir" in out


def test_run_json_is_what_the_api_generates(
    exported: tuple[Path, dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = exported
    assert main(["run", str(folder), "-p", "Hello there", "-n", "8", "--raw", "--json", "-q"]) == 0
    answer = json.loads(capsys.readouterr().out)
    expected = OrtModel.open(folder).generate("Hello there", 8)
    assert answer["text"] == expected.texts[0] and answer["new_tokens"] == len(expected.ids[0])
    assert answer["finish_reason"] == expected.finish_reasons[0] and answer["backend"] == "onnxruntime"
    assert answer["ttft_ms"] > 0


def test_demo_exports_again_when_the_runtime_refuses_the_cached_folder(
    exported: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    stale = shutil.copytree(exported[0], tmp_path / "stale")
    sidecar = json.loads((stale / "awq2trt.json").read_text())
    (stale / "awq2trt.json").write_text(json.dumps({**sidecar, "format": "an-older-format"}))
    with pytest.raises(Awq2TrtError, match="format"):
        OrtModel.open(stale)
    model = open_or_export(fixture_path(CHECKPOINT), stale, quiet=True)
    assert json.loads((stale / "awq2trt.json").read_text())["format"] == sidecar["format"]
    assert model.generate("Hello", 4).ids == OrtModel.open(exported[0]).generate("Hello", 4).ids
