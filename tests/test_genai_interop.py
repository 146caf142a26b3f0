"""An ``ort`` output folder is an ONNX Runtime GenAI model: its runtime loads it and decodes what ours does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from awq2trt.frontend.export import export_checkpoint
from awq2trt.runtime import OrtModel
from awq2trt.targets.genai_config import GENAI_CONFIG_FILE
from tests.conftest import fixture_path, import_peer

PROMPT = [0, 17, 42, 99, 123, 7, 300, 12]
NEW_TOKENS = 64


@pytest.fixture(scope="module")
def og() -> object:
    return import_peer("onnxruntime_genai", "pip install onnxruntime-genai==0.18.0")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("genai")
    return {
        name: export_checkpoint(fixture_path(name), base / name, target="ort", accuracy_level=0, progress=False).output
        for name in ("llama-gemm-g64", "qwen2-gemm-g128")
    }


def genai_greedy(og: object, folder: Path, prompt: list[int], new_tokens: int) -> list[int]:
    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + new_tokens, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(np.array(prompt, dtype=np.int32))
    while not generator.is_done():
        generator.generate_next_token()
    return [int(t) for t in generator.get_sequence(0)][len(prompt) :]


def _until_eos(ids: list[int], eos: set[int]) -> list[int]:
    """GenAI stops at an end-of-sequence token and leaves it out of the sequence; compare up to it."""
    for i, token in enumerate(ids):
        if token in eos:
            return ids[:i]
    return ids


@pytest.mark.parametrize("name", ["llama-gemm-g64", "qwen2-gemm-g128"])
def test_genai_decodes_the_same_greedy_tokens(name: str, og: object, exported: dict[str, Path]) -> None:
    folder = exported[name]
    ours = OrtModel.open(folder, threads=2)
    expected = ours.generate(PROMPT, NEW_TOKENS, stop_at_eos=False).ids[0]
    eos = set(json.loads((folder / "awq2trt.json").read_text())["eos_token_id"])
    theirs = genai_greedy(og, folder, PROMPT, NEW_TOKENS)
    assert len(theirs) >= 16  # a real decode, not an immediate stop
    assert theirs == _until_eos(expected, eos)


def test_config_describes_the_graph(exported: dict[str, Path]) -> None:
    folder = exported["qwen2-gemm-g128"]
    config = json.loads((folder / GENAI_CONFIG_FILE).read_text())
    source = json.loads((fixture_path("qwen2-gemm-g128") / "config.json").read_text())
    decoder = config["model"]["decoder"]
    assert config["model"]["type"] == "qwen2"
    assert decoder["num_hidden_layers"] == source["num_hidden_layers"]
    assert decoder["num_key_value_heads"] == source["num_key_value_heads"]
    assert decoder["head_size"] == source["hidden_size"] // source["num_attention_heads"]
    assert (folder / decoder["filename"]).is_file()
    # GroupQueryAttention appends in place: GenAI binds one max-length buffer as both past and present.
    assert config["search"]["past_present_share_buffer"] is True


def test_unfused_attention_does_not_share_the_buffer(tmp_path: Path) -> None:
    out = export_checkpoint(
        fixture_path("llama-gemm-g64"), tmp_path / "ort", target="ort", disable_passes=["fuse_gqa"], progress=False
    ).output
    config = json.loads((out / GENAI_CONFIG_FILE).read_text())
    assert config["search"]["past_present_share_buffer"] is False  # present = Concat(past, new tokens)


def test_ir_target_has_no_genai_config(tmp_path: Path) -> None:
    out = export_checkpoint(fixture_path("llama-gemm-g64"), tmp_path / "ir", progress=False).output
    assert not (out / GENAI_CONFIG_FILE).exists()  # GenAI cannot run awq2trt::Int4MatMul functions
