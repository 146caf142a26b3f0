"""Exporting from a traced three-layer template gives the graph a full trace gives, and falls back when it must."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from awq2trt.checkpoint.reader import open_checkpoint
from awq2trt.frontend import layer_stamp
from awq2trt.frontend.export import export_checkpoint
from awq2trt.modeling.loader import hf_config, load_reference_model
from awq2trt.quantize.api import quantize_checkpoint
from tests.conftest import fixture_path, max_abs_rel, reference, source_path

LAYERS = 5
PROMPT = np.array([[5, 17, 3, 99, 42, 8, 250, 61, 7, 33, 12]], dtype=np.int64)


def _deep_model(name: str, folder: Path, **changes: object) -> Path:
    """The fixture source's architecture with LAYERS random layers, RTN-quantized (g64)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    values = json.loads((source_path(name) / "config.json").read_text())
    values.update(num_hidden_layers=LAYERS, **changes)
    config = AutoConfig.for_model(values.pop("model_type"), **values)
    torch.manual_seed(11)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # default init is tiny; larger weights make every layer matter to the logits
        for param in model.parameters():
            param.mul_(3.0)
    source = folder / f"{name}-src"
    model.save_pretrained(source)
    for file in source_path(name).iterdir():
        if file.name.startswith(("tokenizer", "special_tokens")):
            shutil.copyfile(file, source / file.name)
    return quantize_checkpoint(source, folder / f"{name}-q", method="rtn", group_size=64, progress=False)


def _run(folder: Path) -> list[np.ndarray]:
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    past, seq = 4, PROMPT.shape[1]
    rng = np.random.default_rng(3)
    feeds: dict[str, np.ndarray] = {
        "input_ids": PROMPT,
        "attention_mask": np.ones((1, past + seq), dtype=np.int64),
        "position_ids": np.arange(past, past + seq, dtype=np.int64)[None],
        "num_logits_to_keep": np.zeros(1, np.int64),  # every position
    }
    for item in session.get_inputs():
        if item.name.startswith("past_key_values."):
            shape = [1, item.shape[1], past, item.shape[3]]
            feeds[item.name] = rng.standard_normal(shape).astype(np.float32)
    return session.run(None, feeds)


def _assert_prompt_logits_match_reference(checkpoint: Path, folder: Path) -> None:
    """The exported graph's logits over PROMPT (empty past) against the reference model's."""
    reference = load_reference_model(checkpoint, progress=False)
    with torch.inference_mode():
        expected = reference(torch.from_numpy(PROMPT)).logits.numpy()
    logits = _prompt_logits(folder, PROMPT)
    assert np.abs(logits - expected).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))


def _assert_stamped_equals_full(stamped: object, full: object, layers: int) -> None:
    """Same passes, same op sequence, same IO and weights, and bit-identical outputs on PROMPT after a past."""
    assert stamped.passes == full.passes and stamped.passes["fuse_gqa"] == layers
    graphs = [onnx.load(str(f.output / "model.onnx"), load_external_data=False).graph for f in (stamped, full)]
    assert [n.op_type for n in graphs[0].node] == [n.op_type for n in graphs[1].node]
    for kind in ("input", "output"):
        assert [v.name for v in getattr(graphs[0], kind)] == [v.name for v in getattr(graphs[1], kind)]
    weights = [{t.name for t in g.initializer if not t.name.startswith("val_")} for g in graphs]  # val_*: constants
    assert weights[0] == weights[1] and len(graphs[0].initializer) == len(graphs[1].initializer)
    outputs = [_run(f.output) for f in (stamped, full)]
    assert len(outputs[0]) == 1 + 2 * layers
    for a, b in zip(*outputs, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["llama", "qwen2", "mistral"])
def test_stamped_export_equals_full_trace(name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    checkpoint = _deep_model(name, tmp_path)
    assert layer_stamp.template_reason(open_checkpoint(checkpoint), None) is None
    options = {"target": "ort", "accuracy_level": 0, "progress": False}
    with caplog.at_level(logging.INFO, logger="awq2trt.frontend.export"):
        stamped = export_checkpoint(checkpoint, tmp_path / "stamped", **options)
    assert "tracing every layer" not in caplog.text  # the template path ran, it did not fall back
    full = export_checkpoint(checkpoint, tmp_path / "full", full_trace=True, **options)
    _assert_stamped_equals_full(stamped, full, LAYERS)
    _assert_prompt_logits_match_reference(checkpoint, stamped.output)  # prompt only: no past


def _prompt_logits(folder: Path, ids: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "position_ids": np.arange(ids.shape[1], dtype=np.int64)[None],
        "num_logits_to_keep": np.zeros(1, np.int64),
    }
    for item in session.get_inputs():
        if item.name.startswith("past_key_values."):
            feeds[item.name] = np.zeros((1, item.shape[1], 0, item.shape[3]), dtype=np.float32)
    return session.run(["logits"], feeds)[0]


def test_stamped_peer_checkpoint_with_six_layers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """AutoAWQ's own six-layer checkpoint (twice the template's depth): the stamped export is the full trace,
    and both give AutoAWQ's reference logits (fp16 activations there: 1.2e-3 measured for an exact fp32
    forward, tests/data/peers/README.md) and awq2trt's fp32 reference model's to float rounding."""
    checkpoint = fixture_path("llama6-gemm-g128")
    ckpt = open_checkpoint(checkpoint)
    layers = int(ckpt.config["num_hidden_layers"])
    assert layers == 6 > layer_stamp.TEMPLATE_LAYERS
    assert layer_stamp.template_reason(ckpt, None) is None
    options = {"target": "ort", "accuracy_level": 0, "progress": False}
    with caplog.at_level(logging.INFO, logger="awq2trt.frontend.export"):
        stamped = export_checkpoint(checkpoint, tmp_path / "stamped", **options)
    assert "tracing every layer" not in caplog.text
    full = export_checkpoint(checkpoint, tmp_path / "full", full_trace=True, **options)
    _assert_stamped_equals_full(stamped, full, layers)

    ref = reference(checkpoint)
    with torch.inference_mode():
        ours = load_reference_model(checkpoint, progress=False)(torch.from_numpy(ref["input_ids"])).logits.numpy()
    for result in (stamped, full):
        logits = _prompt_logits(result.output, ref["input_ids"])
        max_abs, rel = max_abs_rel(logits, ref["logits"])
        assert max_abs <= 1.5e-3 and rel <= 1e-3, (max_abs, rel)
        assert max_abs_rel(logits, ours)[0] <= 1e-5
        np.testing.assert_array_equal(logits.argmax(-1), ref["logits"].argmax(-1))


@pytest.mark.parametrize("written", ["with layer_types", "without layer_types"])
def test_layers_of_different_kinds_are_traced_whole(
    written: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Qwen2 with sliding windows from layer 2 on: layers 0-1 full, 2-4 windowed; no template fits all.

    A config.json written before ``layer_types`` existed says only ``max_window_layers``; read raw it would make
    every layer slide.  Either way the windows must be where transformers puts them, checked on the graph and
    on logits over a prompt longer than the window.
    """
    checkpoint = _deep_model("qwen2", tmp_path, use_sliding_window=True, sliding_window=4, max_window_layers=2)
    if written == "without layer_types":
        config_path = checkpoint / "config.json"
        config = json.loads(config_path.read_text())
        del config["layer_types"]
        config_path.write_text(json.dumps(config))
    ckpt = open_checkpoint(checkpoint)
    types = hf_config(ckpt).layer_types
    assert types == ["full_attention"] * 2 + ["sliding_attention"] * 3
    assert "different attention types" in (layer_stamp.template_reason(ckpt, types) or "")
    with caplog.at_level(logging.INFO, logger="awq2trt.frontend.export"):
        result = export_checkpoint(checkpoint, tmp_path / "out", target="ort", accuracy_level=0, progress=False)
    assert "tracing every layer: layers of different attention types" in caplog.text
    assert result.passes["fuse_gqa"] == LAYERS
    graph = onnx.load(str(result.output / "model.onnx"), load_external_data=False).graph
    windows = [
        next((a.i for a in node.attribute if a.name == "local_window_size"), None)
        for node in graph.node
        if node.op_type == "GroupQueryAttention"
    ]
    assert windows == [None, None, 4, 4, 4]
    assert json.loads((result.output / "awq2trt.json").read_text())["sliding_layers"] == [2, 3, 4]

    _assert_prompt_logits_match_reference(checkpoint, result.output)


def test_a_template_that_does_not_repeat_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever the stamper cannot prove repeats (here: a forced mismatch), the whole model is traced instead."""
    checkpoint = _deep_model("llama", tmp_path)
    expected = _run(export_checkpoint(checkpoint, tmp_path / "stamped", progress=False).output)

    def refuse(model: object, num_layers: int) -> int:
        raise layer_stamp.StampMismatch("layers 1 and 2 differ at node 0: Mul vs Add")

    monkeypatch.setattr("awq2trt.frontend.export.stamp_layers", refuse)
    with caplog.at_level(logging.INFO, logger="awq2trt.frontend.export"):
        result = export_checkpoint(checkpoint, tmp_path / "fallback", progress=False)
    assert "tracing every layer: layers 1 and 2 differ" in caplog.text
    for a, b in zip(_run(result.output), expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_template_reason_names_what_differs(tmp_path: Path) -> None:
    checkpoint = open_checkpoint(_deep_model("llama", tmp_path))
    shallow = layer_stamp.template_checkpoint(checkpoint, None)
    assert shallow.config["num_hidden_layers"] == layer_stamp.TEMPLATE_LAYERS
    assert all(".layers.3." not in name and ".layers.4." not in name for name in shallow.linears)
    # A model whose layer 3 has another intermediate size cannot be stamped from layer 2.
    layout = checkpoint.linears["model.layers.3.mlp.down_proj"]
    checkpoint.linears["model.layers.3.mlp.down_proj"] = dataclasses.replace(layout, in_features=layout.in_features * 2)
    assert "layer 3 differs from layer 0 (mlp.down_proj#layout)" in (
        layer_stamp.template_reason(checkpoint, None) or ""
    )
