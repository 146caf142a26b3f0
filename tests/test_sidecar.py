"""The typed sidecar: what export writes reads back equal, and every tampered field is one clear error."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from awq2trt.errors import Awq2TrtError
from awq2trt.ir import io_names
from awq2trt.sidecar import FORMAT_VERSION, SIDECAR_FILE, KvCacheSpec, QuantizationInfo, Sidecar, TensorSpec
from tests.conftest import ROOT


def _sidecar(layers: int = 2, shared: bool = False) -> Sidecar:
    kv = TensorSpec("float32", ("batch", "num_kv_heads", "past_seq", "head_dim"))
    ids = TensorSpec("int64", ("batch", "seq"))
    return Sidecar(
        target="ort",
        dtype="float32",
        model_type="llama",
        num_layers=layers,
        num_attention_heads=4,
        num_kv_heads=2,
        head_dim=16,
        hidden_size=64,
        vocab_size=512,
        inputs={
            "input_ids": ids,
            "attention_mask": TensorSpec("int64", ("batch", "total_seq")),
            "position_ids": ids,
            **dict.fromkeys(io_names.past_names(layers), kv),
            "num_logits_to_keep": TensorSpec("int64", (1,)),
        },
        outputs={
            "logits": TensorSpec("float32", ("batch", "kept_seq", "vocab")),
            **dict.fromkeys(io_names.present_names(layers), kv),
        },
        kv_cache=KvCacheSpec(shared_buffer=shared),
        quantization=QuantizationInfo(4, (64,), True, "awq-gemm", 14),
        max_position_embeddings=256,
        rope_theta=10000.0,
        eos_token_ids=(2,),
        passes={"fuse_qkv": 2},
        pass_nodes={"input": 100, "fuse_qkv": 98},
        target_options={"accuracy_level": 4, "lm_head": "fp"},
    )


def test_round_trip(tmp_path: Path) -> None:
    original = _sidecar(shared=True)
    original.write(tmp_path)
    data = json.loads((tmp_path / SIDECAR_FILE).read_text())
    assert data["format_version"] == FORMAT_VERSION and data["kv_cache"]["padding"] == "right"
    again = Sidecar.read(tmp_path)
    assert again == original
    assert again.past_names()[:2] == ["past_key_values.0.key", "past_key_values.0.value"]
    assert again.present_names()[-1] == "present.1.value" and again.keeps_logits


def _tampered(tmp_path: Path, change: Any) -> Path:
    data = _sidecar().to_json()
    change(data)
    (tmp_path / SIDECAR_FILE).write_text(json.dumps(data))
    return tmp_path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="onnx"), 'expected "format": "awq2trt-onnx", got onnx'),
        (lambda d: d.update(format_version=1), "expected format_version 2 .export the checkpoint again"),
        (lambda d: d.update(num_layers=3), "expected inputs for num_layers = 3, got missing past_key_values.2.key"),
        (lambda d: d.update(num_layers=10**9), "num_layers: expected an integer in \\[1, 4096\\]"),
        (lambda d: d.update(num_layers="2"), "num_layers: expected a JSON integer, got '2'"),
        (lambda d: d.update(dtype="bfloat16"), "dtype: expected float32 or float16, got 'bfloat16'"),
        (lambda d: d.update(model="../../etc/passwd"), "model: expected a file name inside the exported folder"),
        (lambda d: d.update(external_data="/tmp/x"), "external_data: expected a file name inside the exported"),
        (lambda d: d["inputs"].pop("position_ids"), "expected inputs for num_layers = 2, got missing position_ids"),
        (lambda d: d["outputs"].update(extra={"dtype": "float32", "shape": []}), "got unknown extra"),
        (lambda d: d["inputs"]["input_ids"].update(dtype="string"), "inputs.input_ids.dtype: expected float32"),
        (lambda d: d["kv_cache"].update(past="past.{layer}"), "kv_cache.past: expected a name with {layer} and"),
        (lambda d: d["kv_cache"].update(padding="right"), "kv_cache.padding: expected right with a shared buffer"),
        (lambda d: d.update(eos_token_id=[-1]), "eos_token_id: expected a list of integers >= 0"),
        (lambda d: d.update(sliding_layers=[5]), "sliding_layers: expected a list of integers >= 0 below 2"),
        (lambda d: d.pop("kv_cache"), 'expected a "kv_cache" entry, got none'),
        (lambda d: d.update(rope_theta=float("nan")), "rope_theta: expected a finite number"),
    ],
)
def test_tampered_fields_are_one_clear_error(tmp_path: Path, change: Any, message: str) -> None:
    folder = _tampered(tmp_path, change)
    with pytest.raises(Awq2TrtError, match=message) as info:
        Sidecar.read(folder)
    assert SIDECAR_FILE in str(info.value) and "\n" not in str(info.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(Awq2TrtError, match="no such file"):
        Sidecar.read(tmp_path)
    (tmp_path / SIDECAR_FILE).write_text("[" * 100_000)
    with pytest.raises(Awq2TrtError, match="readable JSON"):
        Sidecar.read(tmp_path)
    (tmp_path / SIDECAR_FILE).write_text("[1, 2]")
    with pytest.raises(Awq2TrtError, match="expected a JSON object, got list"):
        Sidecar.read(tmp_path)


def test_serving_modules_import_no_compiler() -> None:
    """The sidecar and IO names are read by servers: importing them loads neither torch nor onnx."""
    code = (
        "import sys, awq2trt.sidecar, awq2trt.ir.io_names;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'onnx_ir', 'transformers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def _awq2trt_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("awq2trt")}


@pytest.mark.parametrize("package", ["passes", "targets", "ir"])
def test_layering(package: str) -> None:
    """Passes, targets and the shared IR never reach back into the frontend (nor the IR into passes/targets)."""
    forbidden = ("awq2trt.frontend", "awq2trt.modeling", "awq2trt.quantize")
    if package == "ir":
        forbidden += ("awq2trt.passes", "awq2trt.targets")
    files = sorted((ROOT / "awq2trt" / package).glob("*.py"))
    assert files
    offending = {
        f.name: sorted(m for m in _awq2trt_imports(f) if m.startswith(forbidden))
        for f in files
        if any(m.startswith(forbidden) for m in _awq2trt_imports(f))
    }
    assert offending == {}
