"""Property tests: QuantWeight -> every format -> QuantWeight is the identity, through memory and through disk."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from awq2trt.checkpoint import open_checkpoint
from awq2trt.checkpoint.formats.awq_gemm import decode_gemm, encode_gemm
from awq2trt.checkpoint.formats.awq_gemv import decode_gemv, encode_gemv
from awq2trt.checkpoint.formats.compressed_tensors import decode_compressed, encode_compressed
from awq2trt.quant_weight import QuantWeight
from tests.checkpoint_factory import ENCODERS, write_checkpoint
from tests.conftest import fixture_path

GROUP_SIZES = (32, 64, 128)


def make_weight(seed: int, n: int, k: int, g: int, zero_point: bool, scale_dtype: type = np.float16) -> QuantWeight:
    rng = np.random.default_rng(seed)
    groups = k // g
    zeros = rng.integers(0, 16, (n, groups), dtype=np.uint8) if zero_point else np.full((n, groups), 8, np.uint8)
    scales = (rng.standard_normal((n, groups)) * 0.01).astype(scale_dtype)
    return QuantWeight(rng.integers(0, 16, (n, k), dtype=np.uint8), scales, zeros, g)


def _scaled(n: int, k_groups: int, g: int, zero_point: bool, seed: int, scale_dtype: type) -> QuantWeight:
    return make_weight(seed, n, k_groups * g, g, zero_point, scale_dtype)


weight_strategy = st.builds(
    _scaled,
    n=st.integers(1, 40),
    k_groups=st.integers(1, 4),
    g=st.sampled_from(GROUP_SIZES),
    zero_point=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
    scale_dtype=st.sampled_from((np.float16, np.float32)),
)


@settings(max_examples=80, deadline=None)
@given(qw=weight_strategy)
def test_gemm_round_trip(qw: QuantWeight) -> None:
    t = encode_gemm(qw)
    assert t["qweight"].shape == (qw.in_features, -(-qw.out_features // 8))
    back = decode_gemm(t["qweight"], t["qzeros"], t["scales"], group_size=qw.group_size, name="x")
    assert back.equals(qw)


@settings(max_examples=80, deadline=None)
@given(qw=weight_strategy)
def test_gemv_round_trip(qw: QuantWeight) -> None:
    t = encode_gemv(qw)
    back = decode_gemv(
        t["qweight"], t["qzeros"], t["scales"], group_size=qw.group_size, in_features=qw.in_features, name="x"
    )
    assert back.equals(qw)
    # The padding columns the GEMV kernels reserve are zero.
    assert not np.any(t["scales"][:, qw.num_groups :])


@settings(max_examples=80, deadline=None)
@given(qw=weight_strategy)
def test_compressed_tensors_round_trip(qw: QuantWeight) -> None:
    t = encode_compressed(qw)
    assert ("weight_zero_point" in t) == (not qw.is_symmetric)
    back = decode_compressed(
        t["weight_packed"],
        t["weight_scale"],
        t.get("weight_zero_point"),
        t["weight_shape"],
        group_size=qw.group_size,
        name="x",
    )
    assert back.equals(qw)


def test_gemv_padding_rule_matches_fixture_shapes() -> None:
    # Documented in tests/data/peers/README.md: in=256, g64 -> 4 groups -> W=2 words, scales [256, 16].
    t = encode_gemv(make_weight(0, 256, 256, 64, True))
    assert t["qzeros"].shape == (256, 2) and t["scales"].shape == (256, 16)
    t = encode_gemv(make_weight(0, 8, 512, 32, True))  # 16 groups -> 2 words -> padded to 4
    assert t["qzeros"].shape == (8, 4)
    t = encode_gemv(make_weight(0, 8, 1024, 128, True))  # 8 groups -> 1 word, no padding
    assert t["qzeros"].shape == (8, 1)


ENCODERS_BY_FIXTURE = {
    "llama-gemm-g64": encode_gemm,
    "qwen2-gemm-g128": encode_gemm,
    "llama-gemv-g64": encode_gemv,
    "llama-ct-g128": encode_compressed,
    "llama6-gemm-g128": encode_gemm,
}


@pytest.mark.parametrize("fixture", sorted(ENCODERS_BY_FIXTURE))
def test_peer_tensors_round_trip_byte_for_byte(fixture: str) -> None:
    """The tools' own packed tensors, read and written again, come back as the tools wrote them (dtype, shape,
    bytes, padding): a round trip of our own encoder alone cannot show that we read their layout."""
    from safetensors.numpy import load_file

    folder = fixture_path(fixture)
    theirs = load_file(str(folder / "model.safetensors"))
    ckpt = open_checkpoint(folder)
    assert len(ckpt.linears) == 7 * int(ckpt.config["num_hidden_layers"])
    for name in ckpt.linears:
        ours = ENCODERS_BY_FIXTURE[fixture](ckpt.quant_weight(name))
        assert {f"{name}.{k}" for k in ours} == {k for k in theirs if k.startswith(name + ".")} - {f"{name}.bias"}
        for key, value in ours.items():
            peer = theirs[f"{name}.{key}"]
            assert (value.dtype, value.shape) == (peer.dtype, peer.shape), (name, key)
            assert value.tobytes() == peer.tobytes(), (name, key)


def test_compressed_tensors_sign_offset_by_hand() -> None:
    # Signed int4 value v is stored as v + 8: code 8 means 0, so a symmetric weight needs no zero point.
    qw = QuantWeight(
        np.array([[8, 9, 7, 0, 15, 8, 8, 8]], np.uint8), np.ones((1, 1), np.float16), np.full((1, 1), 8, np.uint8), 8
    )
    word = int(encode_compressed(qw)["weight_packed"].view(np.uint32)[0, 0])
    assert word == 0x888F0798
    np.testing.assert_array_equal(qw.dequantize()[0], [0, 1, -1, -8, 7, 0, 0, 0])


LAYER_NAMES = [f"model.layers.{i}.self_attn.{p}_proj" for i in range(2) for p in "qkv"]


@pytest.mark.parametrize(("fmt", "shards"), list(itertools.product(sorted(ENCODERS), (1, 3))))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), g=st.sampled_from(GROUP_SIZES), zero_point=st.booleans(), n=st.integers(1, 24))
def test_checkpoint_round_trip_through_disk(
    tmp_path_factory: pytest.TempPathFactory, fmt: str, shards: int, seed: int, g: int, zero_point: bool, n: int
) -> None:
    # Two groups per row, except that llm-awq v2 interleaves 64 input columns at a time.
    k_groups = 1 if fmt == "llm-awq-v2" and g > 32 else 2
    layers = {name: make_weight(seed + i, n, k_groups * g, g, zero_point) for i, name in enumerate(LAYER_NAMES)}
    folder = write_checkpoint(
        tmp_path_factory.mktemp(fmt), fmt, layers, group_size=g, zero_point=zero_point, shards=shards
    )
    ckpt = open_checkpoint(folder)
    assert ckpt.format == fmt
    assert sorted(ckpt.linears) == sorted(LAYER_NAMES)
    for name, qw in layers.items():
        assert ckpt.quant_weight(name).equals(qw), name


def test_reader_ignores_foreign_safetensors(tmp_path: Path) -> None:
    layers = {LAYER_NAMES[0]: make_weight(0, 16, 128, 64, True)}
    folder = write_checkpoint(tmp_path / "ckpt", "awq-gemm", layers, group_size=64, zero_point=True)
    (folder / "adapter.safetensors").write_bytes(b"not a safetensors file at all")
    (folder / "reference").mkdir()
    (folder / "reference" / "model.safetensors").write_bytes(b"junk")
    ckpt = open_checkpoint(folder)
    assert [p.name for p in ckpt.weights.files] == ["model.safetensors"]
    assert ckpt.quant_weight(LAYER_NAMES[0]).equals(layers[LAYER_NAMES[0]])


@pytest.mark.parametrize("version", ["exllama", "ipex"])
def test_exllama_and_ipex_versions_store_gemm_with_bf16_scales(tmp_path: Path, version: str) -> None:
    import json

    from safetensors.torch import save_file

    qw = make_weight(3, 24, 128, 64, True, np.float32)
    tensors = {f"{LAYER_NAMES[0]}.{k}": torch.from_numpy(v) for k, v in encode_gemm(qw).items()}
    scales_name = f"{LAYER_NAMES[0]}.scales"
    tensors[scales_name] = tensors[scales_name].to(torch.bfloat16)  # what some ipex checkpoints carry
    save_file(tensors, str(tmp_path / "model.safetensors"))
    config = {"model_type": "llama", "quantization_config": {"quant_method": "awq", "version": version.upper()}}
    config["quantization_config"] |= {"bits": 4, "group_size": 64, "zero_point": True}
    (tmp_path / "config.json").write_text(json.dumps(config))
    ckpt = open_checkpoint(tmp_path)
    assert ckpt.format == "awq-gemm" and ckpt.awq_config.version == version
    back = ckpt.quant_weight(LAYER_NAMES[0])
    bf16_scales = torch.from_numpy(qw.scales).to(torch.bfloat16).float().numpy()
    assert back.scales.dtype == np.float32  # bf16 widened exactly, not squeezed into fp16
    np.testing.assert_array_equal(back.scales, bf16_scales)
    np.testing.assert_array_equal(back.qweight, qw.qweight)
