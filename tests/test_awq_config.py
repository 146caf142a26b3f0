"""AwqConfig: transformers' fields, defaults and validation rules, each failure naming its field."""

from __future__ import annotations

import pytest

from awq2trt.checkpoint.awq_config import EXLLAMA_DEFAULTS, AwqConfig
from awq2trt.errors import Awq2TrtError

FULL_FUSE = {
    "hidden_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "mlp": ["gate_proj", "up_proj", "down_proj"],
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "layernorm": ["input_layernorm", "post_attention_layernorm", "norm"],
    "use_alibi": False,
}


def test_defaults_as_in_transformers() -> None:
    c = AwqConfig()
    assert (c.bits, c.group_size, c.zero_point, c.version, c.backend) == (4, 128, True, "gemm", "autoawq")
    assert c.do_fuse is False and c.fuse_max_seq_len is None and c.modules_to_fuse is None
    assert c.not_converted == ("lm_head",)


@pytest.mark.parametrize("version", ["GEMM", "Gemv", "exllama", "IPEX"])
def test_version_is_case_insensitive(version: str) -> None:
    assert AwqConfig(version=version).version == version.lower()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"bits": 3}, "bits"),
        ({"bits": 8}, "bits"),
        ({"version": "marlin"}, "version"),
        ({"backend": "foo"}, "backend"),
        ({"group_size": 0}, "group_size"),
        ({"zero_point": "yes"}, "zero_point"),
        ({"do_fuse": True}, "fuse_max_seq_len"),
        ({"modules_to_fuse": {"hidden_size": 1}, "fuse_max_seq_len": 512}, "modules_to_fuse"),
        ({"backend": "llm-awq", "do_fuse": True, "fuse_max_seq_len": 512}, "do_fuse"),
        ({"version": "exllama", "exllama_config": {"version": 3}}, "exllama_config.version"),
        ({"modules_to_not_convert": "lm_head"}, "modules_to_not_convert"),
    ],
)
def test_invalid_fields_are_named(kwargs: dict, field: str) -> None:
    with pytest.raises(Awq2TrtError) as info:
        AwqConfig(**kwargs)
    assert info.value.where == f"quantization_config.{field}"
    assert "expected" in str(info.value)


def test_do_fuse_follows_modules_to_fuse() -> None:
    c = AwqConfig(modules_to_fuse=FULL_FUSE, fuse_max_seq_len=512)
    assert c.do_fuse is True
    assert c.fused_mapping("anything") == FULL_FUSE


def test_builtin_fused_mappings_and_unknown_type() -> None:
    assert AwqConfig().fused_mapping("mistral")["mlp"] == ["gate_proj", "up_proj", "down_proj"]
    mixtral = AwqConfig().fused_mapping("mixtral")
    assert mixtral["mlp"] == ["w1", "w3", "w2"] and mixtral["rope_theta"] == 1e6
    with pytest.raises(Awq2TrtError, match="modules_to_fuse"):
        AwqConfig().fused_mapping("gpt2")


def test_exllama_defaults_filled() -> None:
    assert AwqConfig(version="exllama").exllama_config == EXLLAMA_DEFAULTS
    assert AwqConfig(version="exllama", exllama_config={"version": 1}).exllama_config["max_input_len"] == 2048


def test_modules_to_not_convert_matches_dotted_substrings() -> None:
    c = AwqConfig(modules_to_not_convert=["mlp.down_proj", "layers.1."])
    assert c.keeps_dense("model.layers.0.mlp.down_proj")
    assert c.keeps_dense("model.layers.1.self_attn.q_proj")
    assert c.keeps_dense("lm_head")
    assert not c.keeps_dense("model.layers.0.self_attn.q_proj")


def test_dict_round_trip_and_autoawq_aliases() -> None:
    written = AwqConfig(group_size=64, zero_point=False, modules_to_not_convert=["gate"]).to_dict()
    assert written == {
        "bits": 4,
        "group_size": 64,
        "modules_to_not_convert": ["gate"],
        "quant_method": "awq",
        "version": "gemm",
        "zero_point": False,
    }
    assert AwqConfig.from_dict(written).to_dict() == written
    legacy = AwqConfig.from_dict({"w_bit": 4, "q_group_size": 32, "zero_point": True, "version": "GEMM"})
    assert (legacy.bits, legacy.group_size, legacy.version) == (4, 32, "gemm")
    with pytest.raises(Awq2TrtError, match="quant_method"):
        AwqConfig.from_dict({"quant_method": "gptq", "bits": 4})
