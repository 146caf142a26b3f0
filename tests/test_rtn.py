"""RTN quantization against an independent numpy statement of AutoAWQ's rule, and the written checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from awq2trt.checkpoint import open_checkpoint
from awq2trt.errors import Awq2TrtError
from awq2trt.modeling import load_reference_model
from awq2trt.quantize import quantize_checkpoint, rtn_quantize
from tests.conftest import fixture_path, max_abs_rel, reference, source_path


def numpy_rtn(w: np.ndarray, g: int, zero_point: bool) -> np.ndarray:
    """Fake-quantized weight, straight from the formulas (fp16-rounded scale, as stored)."""
    n, k = w.shape
    out = np.empty_like(w)
    for row in range(n):
        for start in range(0, k, g):
            block = w[row, start : start + g].astype(np.float32)
            if zero_point:
                scale = np.float32(np.float16(max(block.max() - block.min(), 1e-5) / 15))
                zero = np.clip(-np.round(block.min() / scale), 0, 15)
                q = np.clip(np.round(block / scale) + zero, 0, 15)
            else:
                scale = np.float32(np.float16(max(np.abs(block).max(), 1e-5) / 7))
                zero = 8
                q = np.clip(np.round(block / scale) + zero, 0, 15)
            out[row, start : start + g] = (q - zero) * scale
    return out


@pytest.mark.parametrize("zero_point", [True, False])
@pytest.mark.parametrize("g", [32, 64])
def test_rtn_matches_formula(zero_point: bool, g: int) -> None:
    w = np.random.default_rng(0).standard_normal((12, 128)).astype(np.float32) * 0.05
    qw = rtn_quantize(w, g, zero_point=zero_point)
    assert qw.is_symmetric == (not zero_point)
    np.testing.assert_allclose(qw.dequantize(), numpy_rtn(w, g, zero_point), rtol=0, atol=1e-7)
    # Each fake-quantized weight is within half a step of the original (clipping aside).
    step = np.repeat(qw.scales.astype(np.float32), g, axis=1)
    assert np.all(np.abs(qw.dequantize() - w) <= step * (0.5 if zero_point else 1.0) + 1e-6)


def test_rtn_rejects_bad_group_and_nan() -> None:
    with pytest.raises(Awq2TrtError, match=r"layer\.x.*divides in_features=100"):
        rtn_quantize(np.zeros((4, 100), np.float32), 64, name="layer.x")
    with pytest.raises(Awq2TrtError, match="finite"):
        rtn_quantize(np.full((4, 64), np.nan, np.float32), 64)


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "mistral"])
def test_quantize_checkpoint_end_to_end(tmp_path: Path, model_type: str) -> None:
    source = source_path(model_type)
    out = quantize_checkpoint(
        source, tmp_path / "q", method="rtn", group_size=64, progress=False, max_shard_bytes=200_000
    )
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"] == {
        "bits": 4,
        "group_size": 64,
        "modules_to_not_convert": None,
        "quant_method": "awq",
        "version": "gemm",
        "zero_point": True,
    }
    assert (out / "model.safetensors.index.json").is_file() and (out / "tokenizer.json").is_file()
    ckpt = open_checkpoint(out)
    assert ckpt.format == "awq-gemm" and len(ckpt.linears) == 7 * config["num_hidden_layers"]
    assert "lm_head" not in ckpt.linears
    dense = open_checkpoint(source)
    for name in list(ckpt.linears)[:3]:
        w = dense.tensor(name + ".weight").astype(np.float32)
        np.testing.assert_allclose(ckpt.quant_weight(name).dequantize(), numpy_rtn(w, 64, True), atol=1e-7)
    ids = torch.from_numpy(reference(source)["input_ids"])
    with torch.inference_mode():
        quantized = load_reference_model(out, progress=False)(ids).logits.numpy()
    source_logits = reference(source)["logits"]
    _, rel = max_abs_rel(quantized, source_logits)
    assert 1e-3 < rel < 0.15  # quantized: close to the source, but not identical


def test_quantize_refuses_quantized_input_and_bad_group(tmp_path: Path) -> None:
    with pytest.raises(Awq2TrtError, match="a dense"):
        quantize_checkpoint(fixture_path("llama-gemm-g64"), tmp_path / "a", method="rtn", progress=False)
    with pytest.raises(Awq2TrtError, match=r"model\.layers\.0\..*group_size=96"):
        quantize_checkpoint(source_path("llama"), tmp_path / "b", method="rtn", group_size=96, progress=False)
    assert not (tmp_path / "b").exists()
    with pytest.raises(Awq2TrtError, match="--method"):
        quantize_checkpoint(source_path("llama"), tmp_path / "c", method="gptq", progress=False)
