"""The one architecture table: every stage reads it, and one mapping file adds a Llama-like model type to all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from awq2trt.architectures import (
    ARCHITECTURES,
    CONFIG_KEY,
    GATE_UP,
    QKV,
    load_mapping_file,
    resolve_architecture,
)
from awq2trt.checkpoint import open_checkpoint
from awq2trt.checkpoint.awq_config import FUSED_MAPPINGS
from awq2trt.errors import Awq2TrtError
from awq2trt.frontend.export import export_checkpoint
from awq2trt.modeling import SUPPORTED_MODEL_TYPES, load_reference_model
from awq2trt.passes import BUILTIN, resolve_mapping
from awq2trt.quantize import quantize_checkpoint
from awq2trt.quantize.awq import BUILTIN_MAPPINGS, awq_quantize_checkpoint
from tests.conftest import copy_with_config, fixture_path, reference, source_path

NEW_TYPE = "tiny_llama"  # transformers has never heard of it
LLAMA_LINEARS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


def _renamed(source: Path, dest: Path) -> Path:
    return copy_with_config(source, dest, model_type=NEW_TYPE, architectures=["TinyLlamaForCausalLM"])


def _mapping_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_llama.json"
    path.write_text(json.dumps({"model_type": NEW_TYPE, "transformers_model_type": "llama"}))
    return path


def _logits(model: torch.nn.Module, ids: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(ids)).logits.numpy()


# --- the table and its views ----------------------------------------------------------------------------


def test_every_stage_reads_the_same_table() -> None:
    compiled = ("llama", "mistral", "qwen2")
    assert compiled == SUPPORTED_MODEL_TYPES
    assert tuple(sorted(BUILTIN)) == compiled and tuple(sorted(BUILTIN_MAPPINGS)) == compiled
    assert set(FUSED_MAPPINGS) == set(ARCHITECTURES) == {*compiled, "llava", "mixtral"}
    for name in compiled:
        arch = ARCHITECTURES[name]
        assert arch.linears == LLAMA_LINEARS
        assert BUILTIN[name] == {QKV: ("q_proj", "k_proj", "v_proj"), GATE_UP: ("gate_proj", "up_proj")}
        awq = BUILTIN_MAPPINGS[name]
        assert [(g.prev_op, g.linears, g.inspect) for g in awq.groups] == [
            ("input_layernorm", LLAMA_LINEARS[:3], "self_attn"),
            ("self_attn.v_proj", ("self_attn.o_proj",), None),
            ("post_attention_layernorm", LLAMA_LINEARS[4:6], "mlp"),
            ("mlp.up_proj", ("mlp.down_proj",), None),
        ]
        assert awq.skip_clip == LLAMA_LINEARS[:2] and awq.blocks == "model.layers"
    assert FUSED_MAPPINGS["mixtral"]["mlp"] == ["w1", "w3", "w2"] and FUSED_MAPPINGS["mixtral"]["rope_theta"] == 1e6


def test_table_and_its_readers_import_without_torch() -> None:
    modules = "awq2trt.architectures, awq2trt.passes.mappings, awq2trt.checkpoint.awq_config, awq2trt.targets.lm_head"
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_mapping_file_forms(tmp_path: Path) -> None:
    file = tmp_path / "m.json"
    # Ours, minimal: a Llama-like type built by transformers' Llama classes.
    file.write_text(json.dumps({"model_type": ["a", "b"], "transformers_model_type": "llama"}))
    table = load_mapping_file(file)
    assert set(table) == {"a", "b"} and table["a"].awq == BUILTIN_MAPPINGS["llama"]
    assert table["b"].fusion_groups == BUILTIN["llama"] and table["b"].transformers_model_type == "llama"
    # transformers' modules_to_fuse keys rename the projections everywhere at once.
    file.write_text(json.dumps({"attention": ["wq", "wk", "wv", "wo"], "mlp": ["w1", "w3", "w2"], "hidden_size": 8}))
    custom = load_mapping_file(file, "custom")["custom"]
    assert custom.fusion_groups == {QKV: ("wq", "wk", "wv"), GATE_UP: ("w1", "w3")}
    assert custom.linears[:2] == ("self_attn.wq", "self_attn.wk") and custom.awq.groups[1].prev_op == "self_attn.wv"
    # The older fusion-only form keeps only the groups it names; the older AWQ form sets the groups.
    file.write_text(json.dumps({"custom": {QKV: ["a", "b", "c"]}}))
    assert load_mapping_file(file, "custom")["custom"].fusion_groups == {QKV: ("a", "b", "c")}
    groups = [{"prev_op": "input_layernorm", "linears": list(LLAMA_LINEARS[:3]), "inspect": "self_attn"}]
    file.write_text(json.dumps([{"model_type": "g", "groups": groups, "skip_clip": []}]))
    awq = load_mapping_file(file)["g"].awq
    assert len(awq.groups) == 1 and awq.skip_clip == ()


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"model_type": "x", "attention": ["q", "k", "v"]}, r"attention: expected a list of exactly 4"),
        ({"model_type": "x", "mlp_module": ""}, r"mlp_module: expected a non-empty name"),
        ({"model_type": "x", "o_proj": ["a", "b"]}, r"fusion groups 'qkv_proj'"),
        ({"model_type": 3}, r"model_type: expected a model type name"),
        ({"model_type": "x", "groups": []}, r"groups: expected a non-empty list"),
    ],
)
def test_bad_mapping_entries_name_the_key(tmp_path: Path, entry: dict, match: str) -> None:
    file = tmp_path / "m.json"
    file.write_text(json.dumps(entry))
    with pytest.raises(Awq2TrtError, match=match) as error:
        load_mapping_file(file)
    assert str(error.value).startswith(str(file)) and "\n" not in str(error.value)


# --- one refusal --------------------------------------------------------------------------------------


def test_unknown_type_is_refused_by_quantize_export_and_load_alike(tmp_path: Path) -> None:
    folder = _renamed(source_path("llama"), tmp_path / "dense")
    expected = (
        f"{folder / 'config.json'}: model_type: expected a model_type with an AWQ mapping (llama, mistral, qwen2), "
        f"got '{NEW_TYPE}'; describe it in a mapping file"
    )
    attempts = {
        "quantize rtn": lambda: quantize_checkpoint(folder, tmp_path / "q", method="rtn", progress=False),
        "quantize awq": lambda: awq_quantize_checkpoint(folder, tmp_path / "a", progress=False),
        "export": lambda: export_checkpoint(folder, tmp_path / "e", progress=False),
        "load": lambda: load_reference_model(folder, progress=False),
    }
    messages = {}
    for stage, attempt in attempts.items():
        with pytest.raises(Awq2TrtError) as error:
            attempt()
        messages[stage] = str(error.value)
    assert len(set(messages.values())) == 1, messages
    assert messages["load"].startswith(expected) and "--mapping FILE" in messages["load"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dense"]  # nothing written


# --- one mapping file makes all three work ------------------------------------------------------------


def test_mapping_file_makes_a_new_type_quantize_export_and_load_like_llama(tmp_path: Path) -> None:
    llama = source_path("llama")
    mapping = _mapping_file(tmp_path)
    renamed = _renamed(llama, tmp_path / "src")
    options = {"method": "rtn", "group_size": 64, "progress": False}
    q_llama = quantize_checkpoint(llama, tmp_path / "q-llama", **options)
    q_new = quantize_checkpoint(renamed, tmp_path / "q-new", mapping_files=[mapping], **options)
    # Same int4 weights, and the description travels in config.json (not for a built-in type).
    llama_tensors, new_tensors = load_file(q_llama / "model.safetensors"), load_file(q_new / "model.safetensors")
    assert llama_tensors.keys() == new_tensors.keys() and len(open_checkpoint(q_new).linears) == 14
    for name, array in llama_tensors.items():
        np.testing.assert_array_equal(new_tensors[name], array, err_msg=name)
    config = json.loads((q_new / "config.json").read_text())
    assert config[CONFIG_KEY]["transformers_model_type"] == "llama" and config["model_type"] == NEW_TYPE
    assert CONFIG_KEY not in json.loads((q_llama / "config.json").read_text())

    # Loads (from the recorded description) to exactly llama's logits.
    ids = reference(llama)["input_ids"]
    expected = _logits(load_reference_model(q_llama, progress=False), ids)
    np.testing.assert_array_equal(_logits(load_reference_model(q_new, progress=False), ids), expected)

    # Exports to llama's graph with no file (the recorded description also picks the fusion groups): the same
    # passes fire (q/k/v and gate/up fused) and the same weights are written.
    e_llama = export_checkpoint(q_llama, tmp_path / "e-llama", progress=False)
    e_new = export_checkpoint(q_new, tmp_path / "e-new", progress=False)
    assert e_new.passes == e_llama.passes and e_new.passes["fuse_qkv"] == 2 and e_new.passes["fuse_gate_up"] == 2
    assert e_new.int4_nodes == e_llama.int4_nodes
    assert (e_new.output / "model.onnx.data").read_bytes() == (e_llama.output / "model.onnx.data").read_bytes()


def test_mapping_file_loads_a_foreign_checkpoint_of_a_new_type(tmp_path: Path) -> None:
    """An AutoAWQ checkpoint carries no description: the same file, given to the loader, is enough."""
    fixture = fixture_path("llama-gemm-g64")
    renamed = _renamed(fixture, tmp_path / "ckpt")
    with pytest.raises(Awq2TrtError, match="with an AWQ mapping"):
        load_reference_model(renamed, progress=False)
    ids = reference(fixture)["input_ids"]
    expected = _logits(load_reference_model(fixture, progress=False), ids)
    model = load_reference_model(renamed, progress=False, mapping_file=_mapping_file(tmp_path))
    np.testing.assert_array_equal(_logits(model, ids), expected)
    # The passes read the same file for the same fusion groups as llama's.
    config = json.loads((renamed / "config.json").read_text())
    assert resolve_mapping(config, _mapping_file(tmp_path)).groups == BUILTIN["llama"]
    # Export takes the same file (--fuse-mapping) to build the model and fuse it: ONNX Runtime then gives
    # the reference model's logits.
    from awq2trt.frontend.export import export_checkpoint
    from awq2trt.runtime import OrtModel

    with pytest.raises(Awq2TrtError, match="with an AWQ mapping"):
        export_checkpoint(renamed, tmp_path / "refused", progress=False)
    result = export_checkpoint(renamed, tmp_path / "onnx", fuse_mapping=_mapping_file(tmp_path), progress=False)
    assert result.passes["fuse_qkv"] == result.passes["fuse_gate_up"] == config["num_hidden_layers"]
    exported = OrtModel.open(result.output).logits(ids)
    np.testing.assert_allclose(exported, expected, atol=1e-4, rtol=0)


def test_python_awq_mapping_describes_the_type_too(tmp_path: Path) -> None:
    config = {"model_type": NEW_TYPE}
    arch = resolve_architecture(config, "config.json", extra={NEW_TYPE: BUILTIN_MAPPINGS["llama"]})
    assert arch.awq == BUILTIN_MAPPINGS["llama"] and arch.linears == LLAMA_LINEARS


@pytest.mark.parametrize("model_type", [{"a": 1}, ["llama"], 3])
def test_a_model_type_that_is_not_a_string_is_one_error(model_type: object) -> None:
    """Also for a config that did not come through read_config (which refuses it first)."""
    with pytest.raises(Awq2TrtError, match=r"^c/config.json: model_type: expected a string, got "):
        resolve_architecture({"model_type": model_type}, "c/config.json")
