"""The exported folder as untrusted input to the runtime: a tampered awq2trt.json, a graph whose external data
points outside the folder, a truncated weight file.  Each is one ``error:`` line and exit code 1 from
``awq2trt run``, before ONNX Runtime opens the graph, and our code opens nothing outside the folder."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest

from awq2trt.cli import main
from awq2trt.runtime.graph_file import check_graph_file
from awq2trt.sidecar import Sidecar
from tests.open_audit import OpenAudit

CASE = "llama-gemm-g64"  # two layers, 2 KV heads of 64


@pytest.fixture
def folder(shared_export: Any, tmp_path: Path) -> Path:
    out = tmp_path / "export"
    shutil.copytree(shared_export(CASE).output, out)
    return out


def _edit_sidecar(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = folder / "awq2trt.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _edit_external(folder: Path, entries: dict[str, str]) -> str:
    """Rewrite the external-data entries of the graph's first external initializer; returns its name."""
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
    for entry in tensor.external_data:
        if entry.key in entries:
            entry.value = entries[entry.key]
    onnx.save(model, str(folder / "model.onnx"))
    return tensor.name


def _run_fails(folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """`awq2trt run FOLDER`: exit 1, one error line, nothing opened outside the folder; ONNX Runtime not reached."""
    import onnxruntime

    def no_session(*args: object, **kwargs: object) -> None:
        raise AssertionError("ONNX Runtime was handed the folder")

    monkeypatch.setattr(onnxruntime, "InferenceSession", no_session)
    capsys.readouterr()
    with OpenAudit() as audit:
        code = main(["run", str(folder), "-p", "hi", "-n", "1", "--raw"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith("error: ")
    assert audit.outside(folder) == []
    return line


def test_the_untampered_folder_passes(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graph = check_graph_file(folder, Sidecar.read(folder))
    assert len(graph.external) > 10 and {i.name for i in graph.inputs} == set(Sidecar.read(folder).inputs)
    assert main(["run", str(folder), "-p", "hi", "-n", "2", "--raw", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["new_tokens"] == 2


SIDECAR_CASES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "huge max context": (
        lambda d: d.update(max_position_embeddings=2**40),
        "max_position_embeddings: expected an integer in [1, 16777216], got 1099511627776",
    ),
    "negative layers": (lambda d: d.update(num_layers=-1), "num_layers: expected an integer in [1, 4096], got -1"),
    "negative vocab": (lambda d: d.update(vocab_size=-5), "vocab_size: expected an integer in [1, 16777216], got -5"),
    "huge sliding window": (lambda d: d.update(sliding_window=2**40), "sliding_window: expected an integer"),
    "wrong kv heads": (lambda d: d.update(num_kv_heads=4096), "expected num_kv_heads = 2, as past_key_values.0"),
    "wrong head dim": (lambda d: d.update(head_dim=65536), "expected head_dim = 64, as past_key_values.0"),
    "more layers than the graph": (lambda d: d.update(num_layers=3), "expected inputs for num_layers = 3"),
    "an input renamed": (
        lambda d: d["inputs"].update(tokens=d["inputs"].pop("input_ids")),
        "expected inputs for num_layers = 2, got unknown tokens; missing input_ids",
    ),
    "cache names the graph lacks": (
        lambda d: (
            d["kv_cache"].update(past="past.{layer}.{kind}"),
            d.update(
                inputs={k.replace("past_key_values.", "past."): v for k, v in d["inputs"].items()},
            ),
        ),
        "expected the inputs of model.onnx, got unknown past.0.key",
    ),
    "a wrong input dtype": (
        lambda d: d["inputs"]["past_key_values.0.key"].update(dtype="float16"),
        "expected past_key_values.0.key of model.onnx as float16, got float32",
    ),
    "model outside the folder": (lambda d: d.update(model="../model.onnx"), "model: expected a file name"),
    "data outside the folder": (lambda d: d.update(external_data="/etc/passwd"), "external_data: expected a file name"),
}


@pytest.mark.parametrize("case", sorted(SIDECAR_CASES))
def test_tampered_sidecar(
    case: str, folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    change, needle = SIDECAR_CASES[case]
    _edit_sidecar(folder, change)
    line = _run_fails(folder, capsys, monkeypatch)
    assert str(folder / "awq2trt.json") in line and needle in line, line


@pytest.mark.parametrize("where", ["parent", "absolute"])
def test_external_data_outside_the_folder(
    where: str, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret"
    shutil.copyfile(folder / "model.onnx.data", secret)  # big enough: only the location gives it away
    location = "../secret" if where == "parent" else str(secret)
    name = _edit_external(folder, {"location": location})
    line = _run_fails(folder, capsys, monkeypatch)
    assert line == (
        f"error: {folder / 'model.onnx'}: initializer {name}: expected external data in a file of the exported"
        f" folder, got {location!r}"
    )


def test_external_data_through_a_link_out_of_the_folder(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret"
    shutil.move(folder / "model.onnx.data", secret)
    os.symlink(secret, folder / "model.onnx.data")
    line = _run_fails(folder, capsys, monkeypatch)
    assert f"expected its external data 'model.onnx.data' inside the exported folder, got a link to {secret}" in line


def test_truncated_weights(folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    data = folder / "model.onnx.data"
    size = data.stat().st_size
    with data.open("r+b") as file:
        file.truncate(size - 1000)
    line = _run_fails(folder, capsys, monkeypatch)
    assert line.startswith(f"error: {data}: expected at least ") and "a truncated weight file" in line
    assert f"got {size - 1000} bytes" in line


@pytest.mark.parametrize(
    ("entries", "needle"),
    [
        ({"offset": "-8"}, "expected external data offset as a byte count, got '-8'"),
        ({"length": "99999999999999999999999"}, "expected external data length as a byte count"),
        ({"length": "16"}, "bytes for dims"),  # fits in the file, but not the tensor's size
        ({"offset": str(2**40)}, "a truncated weight file"),
    ],
)
def test_external_data_offsets(
    entries: dict[str, str],
    needle: str,
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _edit_external(folder, entries)
    assert needle in _run_fails(folder, capsys, monkeypatch)


def test_a_graph_that_is_not_protobuf(
    folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (folder / "model.onnx").write_bytes(b"\x0a\xff\xff\xff\xff\x0f not a model")
    line = _run_fails(folder, capsys, monkeypatch)
    assert line.startswith(f"error: {folder / 'model.onnx'}: expected an ONNX model (protobuf), got ")


def test_a_sidecar_integer_of_thousands_of_digits(
    folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (folder / "awq2trt.json").write_text('{"num_layers": ' + "9" * 5000 + "}")
    line = _run_fails(folder, capsys, monkeypatch)
    assert line.startswith(f"error: {folder / 'awq2trt.json'}: expected readable JSON, got Exceeds the limit")
