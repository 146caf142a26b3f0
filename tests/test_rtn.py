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


def test_one_rounding_rule_for_rtn_awq_and_the_output_head() -> None:
    """RTN, AWQ's fake quantization (torch) and the --lm-head quantizer (numpy) round identically."""
    from awq2trt.quantize.awq.fake_quant import fake_quantize_weight
    from awq2trt.quantize.rtn import round_to_nearest
    from awq2trt.targets.lm_head import rtn_groups

    w = np.random.default_rng(1).standard_normal((16, 128)).astype(np.float32) * 0.05
    w[0, :64] = 0.25  # a constant group: its range is floored by MIN_SCALE
    for zero_point in (True, False):
        written = rtn_quantize(w, 64, zero_point=zero_point).dequantize()
        np.testing.assert_array_equal(fake_quantize_weight(torch.from_numpy(w), 64, zero_point=zero_point), written)
        np.testing.assert_allclose(written, numpy_rtn(w, 64, zero_point), rtol=0, atol=1e-7)
    groups = w.reshape(16, 2, 64)
    for bits in (4, 8):
        codes, scales, zeros = rtn_groups(w, bits, 64)
        ref_codes, ref_scales, ref_zeros = round_to_nearest(torch.from_numpy(groups), bits=bits)
        np.testing.assert_array_equal(codes, ref_codes.numpy().reshape(16, 128))
        np.testing.assert_array_equal(scales, ref_scales.numpy()[..., 0])
        np.testing.assert_array_equal(zeros, ref_zeros.numpy()[..., 0])
    np.testing.assert_array_equal(rtn_groups(w, 4, 64)[0], rtn_quantize(w, 64).qweight)


@pytest.mark.parametrize("bits", [4, 8])
def test_constant_group_keeps_a_nonzero_fp16_scale(bits: int) -> None:
    """The one MIN_SCALE (1e-5) survives fp16 at 8 bits; the head's former 1e-8 stored 0 and NaN codes."""
    from awq2trt.quantize.rtn import MIN_SCALE
    from awq2trt.targets.lm_head import rtn_groups

    assert MIN_SCALE == 1e-5
    w = np.zeros((2, 32), np.float32)
    w[1] = -0.5  # constant and away from zero: the rule's clamped zero point cannot reach it, but stays finite
    codes, scales, zeros = rtn_groups(w, bits, 32)
    expected_scale = np.float32(np.float16(MIN_SCALE / ((1 << bits) - 1)))
    assert expected_scale > 0 and np.all(scales == expected_scale)
    dequantized = (codes.astype(np.float32) - np.repeat(zeros, 32, axis=1)) * np.repeat(scales, 32, axis=1)
    assert np.all(np.isfinite(dequantized)) and np.abs(dequantized[0]).max() == 0
    assert np.all(zeros[1] == (1 << bits) - 1) and np.all(codes[1] == 0)
