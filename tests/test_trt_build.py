"""`awq2trt build` and its pure parts: optimization profiles, limits, engine.json, sizes, the TensorRT glue.

Only the test marked `tensorrt` needs TensorRT (it builds a real engine).  The others run everywhere; where a
fake `tensorrt` module stands in, it only feeds our code what the real API would return (a parser failure,
progress callbacks) and no test pretends an engine was built.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from awq2trt.cli import ExitCode, main
from awq2trt.errors import Awq2TrtError
from awq2trt.ir import io_names
from awq2trt.sidecar import SIDECAR_FILE, KvCacheSpec, Sidecar, TensorSpec
from awq2trt.tensorrt import ENGINE_INFO_FILE, EngineInfo, ShapeRange, check_tensorrt_version
from awq2trt.tensorrt.builder import ENGINE_FILE, build_engine, import_tensorrt
from awq2trt.tensorrt.cancel import cancel_on_signals
from awq2trt.tensorrt.parser_errors import OnnxParseError, parser_error_line
from awq2trt.tensorrt.profiles import engine_limits, optimization_profiles
from awq2trt.tensorrt.progress import ProgressBars, tensorrt_monitor
from awq2trt.tensorrt.sizes import parse_size
from awq2trt.tensorrt.trt_logger import ErrorLog, tensorrt_logger
from tests.conftest import engine_info_for, fixture_path

NEEDS_TENSORRT = "needs TensorRT (pip install tensorrt)"


@pytest.fixture(scope="module")
def trt_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny `--target trt` export (two layers, 2 KV heads of 64, max_position_embeddings 512)."""
    from awq2trt.frontend.export import export_checkpoint

    out = tmp_path_factory.mktemp("trt") / "exported"
    export_checkpoint(fixture_path("llama-gemm-g64"), out, target="trt", progress=False)
    return out


@pytest.fixture(scope="module")
def sidecar(trt_export: Path) -> Sidecar:
    return Sidecar.read(trt_export)


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")}


def _one_line(error: pytest.ExceptionInfo[Awq2TrtError]) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


IMPORTS = """
import sys
import awq2trt.tensorrt, awq2trt.tensorrt.profiles
light = sorted(m for m in sys.modules if m.split(".")[0] in ("numpy", "torch", "onnx", "tensorrt", "tqdm"))
import awq2trt.tensorrt.builder, awq2trt.cli
print(light, "tensorrt" in sys.modules, "torch" in sys.modules)
"""


def test_engine_info_and_profiles_import_only_the_standard_library() -> None:
    """A server reads engine.json without numpy; nothing imports TensorRT (or torch) until a build starts."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "False", "False"]


# -- optimization profiles ---------------------------------------------------------------------------------------


def test_profiles_for_a_real_sidecar(sidecar: Sidecar) -> None:
    prefill, decode = optimization_profiles(sidecar, max_batch=4, max_seq=128, max_context=512)
    assert (prefill.name, decode.name) == ("prefill", "decode")
    heads, head_dim = sidecar.num_kv_heads, sidecar.head_dim
    assert (heads, head_dim) == (2, 64)
    past = sidecar.past_names()
    # Every dynamic input has a range in both profiles; num_logits_to_keep (static [1]) only a value range.
    dynamic = set(sidecar.inputs) - {io_names.LOGITS_TO_KEEP}
    assert set(prefill.shapes) == set(decode.shapes) == dynamic
    assert set(prefill.values) == set(decode.values) == {io_names.LOGITS_TO_KEEP}

    for name in (io_names.INPUT_IDS, io_names.POSITION_IDS, io_names.ATTENTION_MASK):
        assert prefill.shapes[name] == ShapeRange((1, 1), (4, 64), (4, 128))
    for name in past:  # no cache in prefill
        assert prefill.shapes[name] == ShapeRange(
            (1, heads, 0, head_dim), (4, heads, 0, head_dim), (4, heads, 0, head_dim)
        )
    assert prefill.values[io_names.LOGITS_TO_KEEP] == ShapeRange((0,), (1,), (128,))

    for name in (io_names.INPUT_IDS, io_names.POSITION_IDS):
        assert decode.shapes[name] == ShapeRange((1, 1), (4, 1), (4, 1))
    assert decode.shapes[io_names.ATTENTION_MASK] == ShapeRange((1, 1), (4, 256), (4, 512))
    for name in past:  # cache 0 .. max_context - 1, so past + the new token fits the context
        assert decode.shapes[name] == ShapeRange(
            (1, heads, 0, head_dim), (4, heads, 255, head_dim), (4, heads, 511, head_dim)
        )
    assert decode.values[io_names.LOGITS_TO_KEEP] == ShapeRange((0,), (1,), (1,))
    for profile in (prefill, decode):
        for shape in (*profile.shapes.values(), *profile.values.values()):
            assert all(a <= b <= c for a, b, c in zip(shape.min, shape.opt, shape.max, strict=True))


def test_profiles_at_the_smallest_limits(sidecar: Sidecar) -> None:
    prefill, decode = optimization_profiles(sidecar, max_batch=1, max_seq=1, max_context=1)
    assert prefill.shapes[io_names.INPUT_IDS] == ShapeRange((1, 1), (1, 1), (1, 1))
    name = sidecar.past_names()[0]
    assert decode.shapes[name].max[2] == 0 and decode.shapes[io_names.ATTENTION_MASK].max == (1, 1)


def test_default_limits(sidecar: Sidecar) -> None:
    assert sidecar.max_position_embeddings == 512
    limits = engine_limits(sidecar)
    assert (limits.max_batch, limits.max_seq, limits.max_context) == (1, 512, 512)  # min(4096, 512)
    assert engine_limits(sidecar, max_context=300).max_seq == 300  # the prompt may fill the context
    long = dataclasses.replace(sidecar, max_position_embeddings=32768)
    assert engine_limits(long).max_context == 4096
    unknown = dataclasses.replace(sidecar, max_position_embeddings=None)
    assert engine_limits(unknown, max_context=10000).max_context == 10000


@pytest.mark.parametrize(
    ("limits", "needle"),
    [
        ({"max_batch": 0}, "--max-batch: expected an integer >= 1, got 0"),
        ({"max_seq": 0}, "--max-seq: expected an integer >= 1, got 0"),
        ({"max_context": -3}, "--max-context: expected an integer >= 1, got -3"),
        ({"max_seq": 300, "max_context": 200}, "--max-seq: expected at most --max-context = 200"),
        ({"max_context": 513}, "--max-context: expected at most the model's max_position_embeddings = 512, got 513"),
    ],
)
def test_bad_limits_name_the_flag(sidecar: Sidecar, limits: dict[str, int], needle: str) -> None:
    with pytest.raises(Awq2TrtError) as info:
        engine_limits(sidecar, **limits)
    assert needle in _one_line(info)


def _with_input(sidecar: Sidecar, name: str, shape: tuple[str | int, ...]) -> Sidecar:
    return dataclasses.replace(sidecar, inputs={**sidecar.inputs, name: TensorSpec("int64", shape)})


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda s: dataclasses.replace(s, target="ort"), "awq2trt.json: target: expected an export for TensorRT"),
        (lambda s: dataclasses.replace(s, target="ir"), "got ir"),
        (lambda s: dataclasses.replace(s, kv_cache=KvCacheSpec(shared_buffer=True)), "kv_cache.shared_buffer"),
        (
            lambda s: _with_input(s, "input_ids", ("batch", "sequence")),
            "inputs.input_ids.shape: expected ['batch', 'seq']",
        ),
        (lambda s: _with_input(s, "attention_mask", ("batch", 7)), "inputs.attention_mask.shape"),
        (
            lambda s: _with_input(s, "past_key_values.1.value", ("batch", 2, "past_seq", 64)),
            "inputs.past_key_values.1.value.shape: expected ['batch', 'num_kv_heads', 'past_seq', 'head_dim']",
        ),
        (lambda s: _with_input(s, io_names.LOGITS_TO_KEEP, (2,)), "inputs.num_logits_to_keep.shape"),
    ],
)
def test_sidecars_the_profiles_refuse(sidecar: Sidecar, change: Callable[[Sidecar], Sidecar], needle: str) -> None:
    with pytest.raises(Awq2TrtError) as info:
        optimization_profiles(change(sidecar), 1, 16, 32)
    assert needle in _one_line(info)


def test_trt_plugin_target_is_accepted(sidecar: Sidecar) -> None:
    assert len(optimization_profiles(dataclasses.replace(sidecar, target="trt-plugin"), 1, 8, 8)) == 2


# -- engine.json -------------------------------------------------------------------------------------------------


def _info(sidecar: Sidecar, engine_bytes: int) -> EngineInfo:
    info: EngineInfo = engine_info_for(
        sidecar, engine_bytes=engine_bytes, plugin_libs=("/opt/plugins/libawq2trt_plugin.so",)
    )
    return info


@pytest.fixture
def engine_folder(tmp_path: Path, sidecar: Sidecar) -> Path:
    (tmp_path / "model.plan").write_bytes(b"\x01" * 100)
    _info(sidecar, 100).write(tmp_path)
    return tmp_path


def test_engine_info_round_trip(engine_folder: Path, sidecar: Sidecar) -> None:
    info = EngineInfo.read(engine_folder)
    assert info == _info(sidecar, 100)
    assert info.profile_index("prefill") == 0 and info.profile_index("decode") == 1
    assert info.engine_path(engine_folder) == engine_folder / "model.plan"
    assert info.profiles[1].shapes[io_names.ATTENTION_MASK].contains((2, 32))
    assert not info.profiles[1].shapes[io_names.ATTENTION_MASK].contains((3, 1))
    assert {p.name for p in engine_folder.iterdir()} == {"model.plan", ENGINE_INFO_FILE}  # no temporary file left


def _tamper(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = folder / ENGINE_INFO_FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.__setitem__(key, value)


def _profile_range(part: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["profiles"][1]["shapes"]["attention_mask"][part] = value

    return change


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (_set("max_batch", "2"), "max_batch: expected a JSON integer, got '2'"),
        (_set("max_batch", True), "max_batch: expected a JSON integer, got True"),
        (_set("max_seq", 0), "max_seq: expected an integer in [1,"),
        (_set("max_seq", 64), "max_seq: expected at most max_context = 32, got 64"),
        (_set("dtype", "bfloat16"), "dtype: expected float32 or float16, got 'bfloat16'"),
        (_set("tensorrt_version", 10), "tensorrt_version: expected a JSON string, got 10"),
        (_set("engine_bytes", -1), "engine_bytes: expected a byte count >= 0"),
        (
            _set("engine", "../model.plan"),
            "engine: expected a file name inside the engine's folder, got '../model.plan'",
        ),
        (_set("engine", "/etc/passwd"), "engine: expected a file name inside the engine's folder"),
        (_set("engine", ".."), "engine: expected a file name inside the engine's folder"),
        (_set("format_version", 2), "format_version: expected 1 (build the engine again with this awq2trt), got 2"),
        (_set("format", "other"), 'format: expected "awq2trt-engine"'),
        (_set("plugin_libs", ["libx.so"]), "plugin_libs[0]: expected an absolute path to a plugin library"),
        (_set("profiles", []), "profiles: expected a list of 1 to"),
        (_set("profiles", {"prefill": {}}), "profiles: expected a JSON list"),
        (lambda data: data.pop("max_context"), 'expected a "max_context" entry, got none'),
        (_profile_range("min", [5, 1]), "profiles[1]: shapes.attention_mask: expected min <= opt <= max in every dim"),
        (_profile_range("max", [2]), "profiles[1]: shapes.attention_mask: expected min, opt and max of one length"),
        (_profile_range("opt", [2, -1]), "profiles[1]: shapes.attention_mask.opt: expected a list of integers"),
        (lambda data: data["profiles"][0].__setitem__("name", "decode"), "profiles: expected profiles with distinct"),
    ],
)
def test_tampered_engine_info_names_the_key(
    engine_folder: Path, change: Callable[[dict[str, Any]], None], needle: str
) -> None:
    _tamper(engine_folder, change)
    with pytest.raises(Awq2TrtError) as info:
        EngineInfo.read(engine_folder)
    text = _one_line(info)
    assert str(engine_folder / ENGINE_INFO_FILE) in text and needle in text


def test_engine_info_checks_the_engine_file(engine_folder: Path) -> None:
    (engine_folder / "model.plan").write_bytes(b"\x01" * 60)  # half copied
    with pytest.raises(Awq2TrtError) as info:
        EngineInfo.read(engine_folder)
    assert "engine_bytes: expected 100 bytes in" in _one_line(info) and "got 60" in str(info.value)
    (engine_folder / "model.plan").unlink()
    with pytest.raises(Awq2TrtError) as info:
        EngineInfo.read(engine_folder)
    assert f"engine: expected an engine file {engine_folder / 'model.plan'}, got no such file" in _one_line(info)


def test_engine_info_missing_or_unreadable(tmp_path: Path) -> None:
    with pytest.raises(Awq2TrtError) as info:
        EngineInfo.read(tmp_path)
    assert f"{tmp_path / ENGINE_INFO_FILE}: expected the file `awq2trt build` writes" in _one_line(info)
    (tmp_path / ENGINE_INFO_FILE).write_text("{not json")
    with pytest.raises(Awq2TrtError) as info:
        EngineInfo.read(tmp_path)
    assert "expected readable JSON" in _one_line(info)
    (tmp_path / ENGINE_INFO_FILE).write_text("[1]")
    with pytest.raises(Awq2TrtError) as info:
        EngineInfo.read(tmp_path)
    assert "expected a JSON object, got list" in _one_line(info)


def test_tensorrt_version_check(engine_folder: Path) -> None:
    info = EngineInfo.read(engine_folder)
    check_tensorrt_version(info, "10.13.0.35", engine_folder / "model.plan")
    with pytest.raises(Awq2TrtError) as error:
        check_tensorrt_version(info, "11.1.0.7", engine_folder / "model.plan")
    text = _one_line(error)
    assert text.startswith(str(engine_folder / "model.plan"))
    assert "11.1.0.7" in text and "10.13.0.35" in text and "awq2trt build" in text


# -- --workspace -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4GiB", 4 << 30),
        ("4gib", 4 << 30),
        ("4G", 4 << 30),
        ("512MiB", 512 << 20),
        ("512m", 512 << 20),
        ("1.5GiB", 3 << 29),
        ("2KiB", 2048),
        ("1TiB", 1 << 40),
        ("1GB", 10**9),
        ("250MB", 250 * 10**6),
        ("1073741824", 1 << 30),
        ("100B", 100),
        (" 8 GiB ", 8 << 30),
    ],
)
def test_workspace_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GiB", "4XB", "4 i", "-1GiB", "0", "0.1", "4GiBs", "1e9", "4iB", "nan"])
def test_bad_workspace_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_size(text)


def test_bad_workspace_is_a_usage_error(trt_export: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["build", str(trt_export), "--workspace", "lots"])
    assert info.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "--workspace" in err and "4GiB" in err


# -- the command line ----------------------------------------------------------------------------------------------


def test_build_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["build", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: awq2trt build")
    for flag in ("--output", "--max-batch", "--max-seq", "--max-context", "--workspace", "--timing-cache"):
        assert flag in out
    assert "--plugin-lib" in out and "--force" in out and "--json" in out and "model.plan" in out


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """`import tensorrt` fails, as on a machine without it (whether or not this one has it)."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def _cli_error(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(argv) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines) and "Traceback" not in captured.err
    return lines


@pytest.mark.usefixtures("no_tensorrt")
def test_build_without_tensorrt(trt_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _listing(trt_export)
    out = tmp_path / "engines" / "nested"
    cache = tmp_path / "caches" / "timing.cache"
    argv = ["build", str(trt_export), "-o", str(out / "m.plan"), "--timing-cache", str(cache)]
    (line,) = _cli_error(argv, ExitCode.MISSING_PACKAGE, capsys)
    assert line.startswith("error: tensorrt: expected TensorRT 10 or 11") and 'pip install "awq2trt[trt]"' in line
    assert "tensorrt>=10,<12" in line
    assert list(tmp_path.iterdir()) == []  # not even the engine's folder
    (line,) = _cli_error(["build", str(trt_export)], ExitCode.MISSING_PACKAGE, capsys)
    assert _listing(trt_export) == before


def test_build_with_only_the_stubs_or_another_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from awq2trt.errors import MissingPackageError

    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # what tensorrt-stubs alone gives
    with pytest.raises(MissingPackageError, match="only its type stubs"):
        import_tensorrt()
    old = types.ModuleType("tensorrt")
    old.__dict__.update(__version__="8.6.1", Builder=object)
    monkeypatch.setitem(sys.modules, "tensorrt", old)
    with pytest.raises(MissingPackageError, match=r"expected TensorRT 10\.x or 11\.x .*got 8\.6\.1"):
        import_tensorrt()


@pytest.mark.usefixtures("no_tensorrt")
@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--max-context", "1024"], "--max-context: expected at most the model's max_position_embeddings = 512"),
        (["--max-seq", "600"], "--max-seq: expected at most --max-context = 512"),
        (["--plugin-lib", "/no/such/lib.so"], "--plugin-lib /no/such/lib.so: expected a plugin library file"),
    ],
)
def test_build_checks_before_tensorrt(
    trt_export: Path, extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Limits and paths are refused before TensorRT is looked for: a bad command line fails the same anywhere."""
    (line,) = _cli_error(["build", str(trt_export), *extra], ExitCode.USER_ERROR, capsys)
    assert needle in line


def test_a_trt_plugin_export_needs_the_plugin_library(
    trt_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before TensorRT is looked for, instead of a parser error on the first AwqGemm node."""
    import shutil

    plugin_export = tmp_path / "plugin-export"
    shutil.copytree(trt_export, plugin_export)
    sidecar_path = plugin_export / "awq2trt.json"
    data = json.loads(sidecar_path.read_text())
    data["target"] = "trt-plugin"
    sidecar_path.write_text(json.dumps(data))
    (line,) = _cli_error(["build", str(plugin_export)], ExitCode.USER_ERROR, capsys)
    assert "--plugin-lib: expected the AwqGemm plugin library (libawq2trt_trt.so" in line
    assert line.endswith("got none given")


@pytest.mark.usefixtures("no_tensorrt")
def test_build_refuses_what_it_cannot_use(trt_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (line,) = _cli_error(["build", str(tmp_path / "nothing")], ExitCode.USER_ERROR, capsys)
    assert "expected an exported folder" in line
    (line,) = _cli_error(["build", str(fixture_path("llama-gemm-g64"))], ExitCode.USER_ERROR, capsys)
    assert "awq2trt.json: expected the sidecar" in line  # a checkpoint, not an export
    (line,) = _cli_error(["build", str(trt_export), "-o", str(tmp_path)], ExitCode.USER_ERROR, capsys)
    assert "expected a path for the engine file" in line
    (line,) = _cli_error(["build", str(trt_export), "-o", str(tmp_path / "model.onnx")], ExitCode.USER_ERROR, capsys)
    assert "expected an engine file name other than model.onnx" in line
    (tmp_path / "a-file").write_text("x")
    (line,) = _cli_error(
        ["build", str(trt_export), "-o", str(tmp_path / "a-file" / "m.plan")], ExitCode.USER_ERROR, capsys
    )
    assert "a-file: expected a folder to hold the output, got a file" in line


@pytest.mark.usefixtures("no_tensorrt")
def test_build_refuses_existing_outputs_without_force(
    trt_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "engine"
    out.mkdir()
    for existing in ("m.plan", ENGINE_INFO_FILE, SIDECAR_FILE, "tokenizer.json"):
        (out / existing).write_text("old")
        (line,) = _cli_error(["build", str(trt_export), "-o", str(out / "m.plan")], ExitCode.USER_ERROR, capsys)
        assert f"{out / existing}: expected a new output, got an existing file (pass --force" in line
        (out / existing).unlink()
    # With --force the same command gets as far as looking for TensorRT.
    (out / "m.plan").write_text("old")
    argv = ["build", str(trt_export), "-o", str(out / "m.plan"), "--force"]
    _cli_error(argv, ExitCode.MISSING_PACKAGE, capsys)
    assert (out / "m.plan").read_text() == "old"


# -- the TensorRT glue, driven by stand-ins for what TensorRT calls and returns -------------------------------------


class _Severity(enum.IntEnum):  # TensorRT's ILogger.Severity order: lower is more severe
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class _FakeParserError:
    def __init__(self, desc: str, node: int = -1, name: str = "", operator: str = "") -> None:
        self._desc, self._node, self._name, self._operator = desc, node, name, operator

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def node_name(self) -> str:
        return self._name

    def node_operator(self) -> str:
        return self._operator


PARSER_ERRORS = [
    _FakeParserError(
        "Assertion failed: zero point must be 0\nIn node 12",
        12,
        "model.layers.0.mlp/DequantizeLinear",
        "DequantizeLinear",
    ),
    _FakeParserError("unsupported\tdatatype INT4", 40, "", "MatMul"),
    _FakeParserError("failed to open model.onnx.data"),
]


def _fake_tensorrt(parsed: list[str] | None = None) -> types.ModuleType:
    """As much of the tensorrt module as `build_engine` touches up to parsing, which fails (paths into *parsed*)."""
    trt = types.ModuleType("tensorrt")

    class ILogger:
        Severity = _Severity

        def __init__(self) -> None:
            pass

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    class Builder:
        def __init__(self, logger: Any) -> None:
            self.logger = logger

        def create_network(self, flags: int) -> object:
            assert flags == 1 << 1  # STRONGLY_TYPED
            return object()

    class OnnxParser:
        def __init__(self, network: object, logger: Any) -> None:
            self.num_errors = len(PARSER_ERRORS)

        def parse_from_file(self, path: str) -> bool:
            if parsed is not None:
                parsed.append(path)
            return False

        def get_error(self, index: int) -> _FakeParserError:
            return PARSER_ERRORS[index]

    trt.__dict__.update(
        __version__="10.13.0.35",
        ILogger=ILogger,
        IProgressMonitor=IProgressMonitor,
        Builder=Builder,
        OnnxParser=OnnxParser,
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=1),
    )
    return trt


def test_parser_error_lines() -> None:
    lines = [parser_error_line("m/model.onnx", e) for e in PARSER_ERRORS]
    assert lines == [
        "m/model.onnx: node 12 model.layers.0.mlp/DequantizeLinear (DequantizeLinear): Assertion failed: zero point"
        " must be 0 In node 12",
        "m/model.onnx: node 40 (MatMul): unsupported datatype INT4",
        "m/model.onnx: failed to open model.onnx.data",
    ]
    error = OnnxParseError("m/model.onnx", lines)
    assert error.lines == tuple(lines) and str(error).endswith("(and 2 more parser errors)")
    assert "\n" not in str(OnnxParseError("m/model.onnx", []))


def test_parser_errors_reach_the_terminal_node_by_node(
    trt_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parsed: list[str] = []
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(parsed))
    before = _listing(trt_export)
    argv = ["build", str(trt_export), "-o", str(tmp_path / "out" / "m.plan"), "-q"]
    lines = _cli_error(argv, ExitCode.USER_ERROR, capsys)
    model = trt_export / "model.onnx"
    assert lines == [f"error: {parser_error_line(model, e)}" for e in PARSER_ERRORS]
    assert parsed == [str(model)]  # from its path, so TensorRT finds model.onnx.data beside it
    assert list(tmp_path.iterdir()) == [] and _listing(trt_export) == before


class _Recorder:
    """tqdm stand-in: records what the bars were asked to show."""

    made: ClassVar[list[_Recorder]] = []

    def __init__(self, *, total: int, desc: str, position: int, **_: Any) -> None:
        self.total, self.desc, self.position, self.n, self.closed = total, desc, position, 0, False
        _Recorder.made.append(self)

    def update(self, steps: int) -> None:
        self.n += steps

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Recorder]]:
    import awq2trt.tensorrt.progress as progress

    monkeypatch.setattr(progress, "tqdm", _Recorder)
    _Recorder.made = []
    yield _Recorder


def test_progress_monitor_drives_nested_bars(monkeypatch: pytest.MonkeyPatch, recorder: type[_Recorder]) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt())
    bars = ProgressBars()
    monitor: Any = tensorrt_monitor(bars)
    assert isinstance(monitor, sys.modules["tensorrt"].IProgressMonitor)
    monitor.phase_start("Building engine", None, 3)
    monitor.phase_start("Tactic selection", "Building engine", 10)
    for step in range(4):
        assert monitor.step_complete("Tactic selection", step) is True
    assert monitor.step_complete("Tactic selection", 8) is True  # TensorRT may skip steps
    monitor.phase_finish("Tactic selection")
    assert monitor.step_complete("Building engine", 0) is True
    outer, inner = recorder.made
    assert (outer.position, inner.position, inner.total, inner.n) == (0, 1, 10, 9)
    assert inner.closed and not outer.closed and inner.desc.strip() == "Tactic selection"
    bars.cancel()  # what Ctrl-C does during a build
    assert monitor.step_complete("Building engine", 1) is False
    bars.close()
    assert outer.closed


def test_progress_callback_errors_stop_the_build_without_raising(recorder: type[_Recorder]) -> None:
    bars = ProgressBars()
    bars.phase_start("Building engine", None, 2)

    def broken(steps: int) -> None:
        raise OSError("terminal went away")

    setattr(recorder.made[0], "update", broken)  # noqa: B010
    assert bars.step_complete("Building engine", 0) is False  # no exception may cross into TensorRT's C++
    assert isinstance(bars.error, OSError) and bars.cancelled


def test_logger_keeps_errors_and_is_quiet(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt())
    for verbose in (False, True):
        log = ErrorLog(verbose=verbose)
        logger: Any = tensorrt_logger(log)
        logger.log(_Severity.VERBOSE, "tactic 12")
        logger.log(_Severity.INFO, "building\n  profile 0")
        logger.log(_Severity.ERROR, "out of\nmemory")
        logger.log(_Severity.INTERNAL_ERROR, "assertion")
        assert log.errors == ["out of memory", "assertion"] and log.last_error == "assertion"
        err = capsys.readouterr().err
        if verbose:
            assert err.splitlines() == [
                "tensorrt: building profile 0",
                "tensorrt: out of memory",
                "tensorrt: assertion",
            ]
        else:
            assert err == ""


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_ctrl_c_during_a_build_cancels_it() -> None:
    cancelled = threading.Event()
    previous = signal.getsignal(signal.SIGINT)
    with cancel_on_signals(cancelled.set):
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: TensorRT is asked to stop instead
        deadline = time.monotonic() + 5
        while not cancelled.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert cancelled.is_set()
    assert signal.getsignal(signal.SIGINT) is previous


def test_build_engine_api_default_output(trt_export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python entry point fails the same way as the command when TensorRT is missing, writing nothing."""
    from awq2trt.errors import MissingPackageError

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingPackageError):
        build_engine(trt_export, max_seq=8, max_context=16, progress=False)
    assert not (trt_export / ENGINE_FILE).exists()


# -- a real engine -----------------------------------------------------------------------------------------------------


def _real_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        pytest.skip(NEEDS_TENSORRT)
    if not hasattr(trt, "Builder"):  # only tensorrt-stubs
        pytest.skip(NEEDS_TENSORRT)
    return trt


@pytest.mark.tensorrt
def test_real_engine_build(trt_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trt = _real_tensorrt()
    out = tmp_path / "engine"
    cache = tmp_path / "timing.cache"
    argv = ["build", str(trt_export), "-o", str(out / "tiny.plan"), "--max-batch", "2", "--max-seq", "16"]
    argv += ["--max-context", "32", "--workspace", "1GiB", "--timing-cache", str(cache), "--json", "-q"]
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    info = EngineInfo.read(out)
    assert result["engine_path"] == str(out / "tiny.plan") and info.engine == result["engine"] == "tiny.plan"
    assert result["engine_info_path"] == str(out / ENGINE_INFO_FILE) and result["copied"]
    assert info.tensorrt_version == trt.__version__ and info.dtype == "float32"
    assert (info.max_batch, info.max_seq, info.max_context) == (2, 16, 32)
    assert [p.name for p in info.profiles] == ["prefill", "decode"]
    assert info.engine_bytes == (out / "tiny.plan").stat().st_size > 0
    assert (out / SIDECAR_FILE).is_file() and (out / "tokenizer.json").is_file()  # the folder stands alone
    assert cache.stat().st_size > 0
    assert not any(p.name.startswith(".") for p in out.iterdir())
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine((out / "tiny.plan").read_bytes())
    assert engine is not None and engine.num_optimization_profiles == 2
    # A second build is refused without --force; with it the timing cache is read back.
    assert main(argv) == ExitCode.USER_ERROR
    assert main([*argv, "--force"]) == 0


class _Tensor:
    def __init__(self, name: str, shape: tuple[int, ...], is_shape_tensor: bool = False) -> None:
        self.name, self.shape, self.is_shape_tensor = name, shape, is_shape_tensor


class _Network:
    def __init__(self, inputs: list[_Tensor]) -> None:
        self.inputs = inputs
        self.num_inputs = len(inputs)

    def get_input(self, index: int) -> _Tensor:
        return self.inputs[index]


class _RecordingProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[Any, ...]] = {}
        self.values: dict[str, tuple[Any, ...]] = {}

    def set_shape(self, name: str, low: Any, opt: Any, high: Any) -> None:
        self.shapes[name] = (low, opt, high)

    def set_shape_input(self, name: str, low: list[int], opt: list[int], high: list[int]) -> None:
        self.values[name] = (low, opt, high)

    def __bool__(self) -> bool:
        return True


class _Config:
    def __init__(self) -> None:
        self.profiles: list[_RecordingProfile] = []

    def add_optimization_profile(self, profile: _RecordingProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1


class _ProfileBuilder:
    def create_optimization_profile(self) -> _RecordingProfile:
        return _RecordingProfile()


def _network_inputs(sidecar: Sidecar, keep_is_shape_tensor: bool) -> list[_Tensor]:
    """What the parser makes of the export's inputs: -1 for every symbolic dim."""
    tensors = []
    for name, spec in sidecar.inputs.items():
        dims = tuple(d if isinstance(d, int) else -1 for d in spec.shape)
        if name.startswith("past_key_values"):
            dims = (-1, sidecar.num_kv_heads, -1, sidecar.head_dim)  # the graph fixes heads and head_dim
        tensors.append(_Tensor(name, dims, is_shape_tensor=keep_is_shape_tensor and name == io_names.LOGITS_TO_KEEP))
    return tensors


@pytest.mark.parametrize("shape_tensor", [True, False])
def test_profiles_reach_tensorrt(sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch, shape_tensor: bool) -> None:
    """Dims for every declared input; values for num_logits_to_keep only when TensorRT calls it a shape tensor."""
    from awq2trt.tensorrt.builder import _add_profile

    fake = _fake_tensorrt()
    fake.__dict__["Dims"] = tuple  # trt.Dims(list) behaves like a tuple
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    network, config = _Network(_network_inputs(sidecar, shape_tensor)), _Config()
    profiles = optimization_profiles(sidecar, 2, 16, 32)
    for index, profile in enumerate(profiles):
        _add_profile(_ProfileBuilder(), network, config, profile, index, Path("m/model.onnx"))
    prefill, decode = config.profiles
    assert set(prefill.shapes) == set(sidecar.inputs) - {io_names.LOGITS_TO_KEEP}
    assert decode.shapes[io_names.ATTENTION_MASK] == ((1, 1), (2, 16), (2, 32))
    if shape_tensor:
        assert prefill.values == {io_names.LOGITS_TO_KEEP: ([0], [1], [16])}
        assert decode.values == {io_names.LOGITS_TO_KEEP: ([0], [1], [1])}
    else:
        assert prefill.values == decode.values == {}
    network.inputs.append(_Tensor("extra", (-1, 4)))
    network.num_inputs += 1
    with pytest.raises(Awq2TrtError, match="input extra, profile prefill: expected an input the sidecar declares"):
        _add_profile(_ProfileBuilder(), network, _Config(), profiles[0], 0, Path("m/model.onnx"))
