"""The ONNX Runtime runtime (awq2trt.runtime) against the naive reference driver, plus its user errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from awq2trt.errors import Awq2TrtError
from awq2trt.runtime import IncrementalDecoder, OrtModel, SamplingConfig
from tests.ort_driver import IrSession

PROMPT = [0, 17, 42, 99, 123, 7, 300, 12]


@pytest.fixture(scope="module")
def llama_dir(shared_export: Any) -> Path:
    return shared_export("llama-gemm-g64").output


@pytest.fixture(scope="module")
def qwen_dir(shared_export: Any) -> Path:
    return shared_export("qwen2-gemm-g128").output


@pytest.fixture(scope="module")
def llama(llama_dir: Path) -> OrtModel:
    return OrtModel.open(llama_dir, threads=2)


def _copy(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest)
    return dest


@pytest.mark.parametrize("which", ["llama_dir", "qwen_dir"])
def test_greedy_matches_naive_driver(which: str, request: pytest.FixtureRequest) -> None:
    folder = request.getfixturevalue(which)
    expected, _ = IrSession(folder).greedy(np.array([PROMPT], dtype=np.int64), 32)
    result = OrtModel.open(folder, threads=2).generate(PROMPT, 32, stop_at_eos=False)
    assert result.ids == expected.tolist()
    assert result.finish_reasons == ["length"]
    assert result.timing.prefill_s > 0 and result.timing.ttft_s >= result.timing.prefill_s
    assert result.timing.decode_tokens == 31 and result.timing.decode_tokens_per_s > 0


def test_left_padded_batch_equals_each_prompt_alone(llama: OrtModel) -> None:
    short = PROMPT[:3]
    batch = llama.generate([PROMPT, short], 16, stop_at_eos=False)
    assert batch.ids[0] == llama.generate(PROMPT, 16, stop_at_eos=False).ids[0]
    assert batch.ids[1] == llama.generate(short, 16, stop_at_eos=False).ids[0]


def test_batch_matches_naive_driver_with_mask(llama: OrtModel, llama_dir: Path) -> None:
    ids = np.array([PROMPT, [llama.pad_id] * 5 + PROMPT[:3]], dtype=np.int64)
    mask = np.array([[1] * 8, [0] * 5 + [1] * 3], dtype=np.int64)
    expected, _ = IrSession(llama_dir).greedy(ids, 12, mask)
    assert llama.generate([PROMPT, PROMPT[:3]], 12, stop_at_eos=False).ids == expected.tolist()


def test_sampling_is_seeded_and_top_k_1_is_greedy(llama: OrtModel) -> None:
    hot = SamplingConfig(temperature=1.5, top_k=50, top_p=0.9, seed=7)
    first = llama.generate([PROMPT, PROMPT[:4]], 20, sampling=hot, stop_at_eos=False).ids
    assert first == llama.generate([PROMPT, PROMPT[:4]], 20, sampling=hot, stop_at_eos=False).ids
    greedy = llama.generate(PROMPT, 20, stop_at_eos=False).ids
    assert first[0] != greedy[0]  # a hot sampler on 512 tokens does not follow argmax for 20 steps
    top1 = SamplingConfig(temperature=0.8, top_k=1, seed=3)
    assert llama.generate(PROMPT, 20, sampling=top1, stop_at_eos=False).ids == greedy


def test_stops_at_eos(llama: OrtModel) -> None:
    greedy = llama.generate(PROMPT, 8, stop_at_eos=False).ids[0]
    eos = greedy[2]
    sidecar = dataclasses.replace(llama.sidecar, eos_token_ids=(eos,))
    model = OrtModel(llama.folder, sidecar, llama.session, llama.tokenizer)
    result = model.generate(PROMPT, 8)
    assert result.ids == [greedy[: greedy.index(eos) + 1]]
    assert result.finish_reasons == ["eos"]


def test_text_prompt_and_streaming(llama: OrtModel) -> None:
    pieces: dict[int, list[str]] = {0: [], 1: []}
    result = llama.generate(["hello world", "hi"], 24, stop_at_eos=False, on_text=lambda r, p: pieces[r].append(p))
    assert result.prompt_ids[0] == llama.encode("hello world")
    assert ["".join(pieces[r]) for r in (0, 1)] == result.texts
    assert result.texts[0] == llama.decode(result.ids[0])


def test_incremental_decoder_never_splits_characters(llama: OrtModel) -> None:
    text = "héllo € 😀 wörld ✓"
    ids = llama.encode(text)
    decoder = IncrementalDecoder(llama.tokenizer)
    pieces = [decoder.push(i) for i in ids]
    pieces.append(decoder.finish())
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)
    assert len([p for p in pieces if p]) > 1  # it really streams


def test_logits_feed_perplexity(llama: OrtModel, llama_dir: Path) -> None:
    from awq2trt.evaluate.perplexity import perplexity

    ids = np.array(PROMPT * 4, dtype=np.int64)
    expected, _, _ = IrSession(llama_dir).prefill(ids[None])
    np.testing.assert_allclose(llama.logits(ids), expected, rtol=1e-5, atol=1e-5)
    result = perplexity(ids, llama.logits, window=16, stride=8)
    assert np.isfinite(result.perplexity) and result.tokens_scored == len(ids) - 1


def test_chat_template(llama_dir: Path, tmp_path: Path) -> None:
    folder = _copy(llama_dir, tmp_path / "chat")
    with pytest.raises(Awq2TrtError, match="chat template"):
        OrtModel.open(folder).apply_chat_template([{"role": "user", "content": "hi"}])
    (folder / "chat_template.jinja").write_text(
        "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    text = OrtModel.open(folder).apply_chat_template([{"role": "user", "content": "hi"}])
    assert text == "<s><user>hi\n<assistant>"


def test_open_prints_nothing(llama_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """ONNX Runtime logs from C++ straight to the process's stderr: nothing may reach it when a folder opens."""
    capfd.readouterr()
    OrtModel.open(llama_dir).generate(PROMPT, 2)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_users_own_session_is_silent(llama_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A plain session at ONNX Runtime's default log level prints nothing on an exported graph.

    (With num_logits_to_keep as an initializer doubling as an input's default, ORT warned on every session.)
    """
    import onnxruntime as ort

    capfd.readouterr()
    session = ort.InferenceSession(str(llama_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert capfd.readouterr().err == ""
    assert "num_logits_to_keep" in {i.name for i in session.get_inputs()}
    assert session.get_overridable_initializers() == []


def test_runtime_imports_no_torch() -> None:
    code = (
        "import sys, awq2trt.runtime; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers') "
        "or m.startswith(('awq2trt.frontend', 'awq2trt.modeling', 'awq2trt.quantize', 'awq2trt.checkpoint'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stdout + done.stderr


# -- user errors ------------------------------------------------------------------------------------------------


def test_missing_sidecar(llama_dir: Path, tmp_path: Path) -> None:
    folder = _copy(llama_dir, tmp_path / "m")
    (folder / "awq2trt.json").unlink()
    with pytest.raises(Awq2TrtError, match=r"awq2trt\.json: expected the sidecar .* got no such file"):
        OrtModel.open(folder)


def test_missing_external_data(llama_dir: Path, tmp_path: Path) -> None:
    folder = _copy(llama_dir, tmp_path / "m")
    (folder / "model.onnx.data").unlink()
    with pytest.raises(Awq2TrtError, match=r"model\.onnx\.data: expected the external weight file") as caught:
        OrtModel.open(folder)
    assert "\n" not in str(caught.value)


def test_truncated_external_data_is_one_line(llama_dir: Path, tmp_path: Path) -> None:
    folder = _copy(llama_dir, tmp_path / "m")
    (folder / "model.onnx.data").write_bytes(b"\0" * 16)
    # Found before ONNX Runtime maps the file (graph_file), naming the file and the tensor that ends past it.
    with pytest.raises(Awq2TrtError, match=r"model\.onnx\.data: expected at least \d+ bytes .* got 16 bytes") as caught:
        OrtModel.open(folder)
    assert "\n" not in str(caught.value)


def test_mismatched_sidecar_input_name(llama_dir: Path, tmp_path: Path) -> None:
    folder = _copy(llama_dir, tmp_path / "m")
    sidecar = json.loads((folder / "awq2trt.json").read_text())
    sidecar["inputs"]["token_ids"] = sidecar["inputs"].pop("input_ids")
    (folder / "awq2trt.json").write_text(json.dumps(sidecar))
    with pytest.raises(Awq2TrtError, match=r"awq2trt\.json: expected inputs .* unknown token_ids; missing input_ids"):
        OrtModel.open(folder)


def test_sidecar_layers_disagree_with_graph(llama_dir: Path, tmp_path: Path) -> None:
    folder = _copy(llama_dir, tmp_path / "m")
    sidecar = json.loads((folder / "awq2trt.json").read_text())
    for side, prefix in (("inputs", "past_key_values"), ("outputs", "present")):
        for kind in ("key", "value"):
            sidecar[side][f"{prefix}.2.{kind}"] = sidecar[side][f"{prefix}.0.{kind}"]
    sidecar["num_layers"] = 3
    (folder / "awq2trt.json").write_text(json.dumps(sidecar))
    with pytest.raises(Awq2TrtError, match=r"expected the inputs of model\.onnx, got unknown past_key_values\.2"):
        OrtModel.open(folder)


def test_sidecar_is_the_typed_one(llama: OrtModel) -> None:
    from awq2trt.sidecar import FORMAT_VERSION, Sidecar

    assert isinstance(llama.sidecar, Sidecar) and llama.sidecar.format_version == FORMAT_VERSION
    assert llama.sidecar.keeps_logits and not llama.sidecar.kv_cache.shared_buffer  # the ir graph: Concat
    assert (
        llama._past
        == llama.sidecar.past_names()
        == [f"past_key_values.{i}.{k}" for i in (0, 1) for k in ("key", "value")]
    )


def test_older_sidecar_format_is_refused(llama_dir: Path, tmp_path: Path) -> None:
    folder = _copy(llama_dir, tmp_path / "m")
    sidecar = json.loads((folder / "awq2trt.json").read_text())
    sidecar["format_version"] = 1
    (folder / "awq2trt.json").write_text(json.dumps(sidecar))
    with pytest.raises(Awq2TrtError, match=r"awq2trt\.json: expected format_version 2 .* got 1"):
        OrtModel.open(folder)


def test_sidecar_dtype_disagrees_with_graph(llama_dir: Path, tmp_path: Path) -> None:
    folder = _copy(llama_dir, tmp_path / "m")
    sidecar = json.loads((folder / "awq2trt.json").read_text())
    sidecar["inputs"]["position_ids"]["dtype"] = "int32"
    (folder / "awq2trt.json").write_text(json.dumps(sidecar))
    with pytest.raises(Awq2TrtError, match=r"expected position_ids of model\.onnx as int32, got int64"):
        OrtModel.open(folder)


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        ([], "prompt 0: expected at least one token"),  # [] reads as one empty id list
        ("", "prompt 0: expected at least one token, got an empty prompt"),
        ([PROMPT, []], "prompt 1: expected at least one token"),
        ([5] * 513, "prompt 0: expected at most max_position_embeddings = 512 tokens, got 513"),
        ([5, 9999], r"prompt 0: expected token ids in \[0, 512\), got 9999"),
    ],
)
def test_bad_prompts(llama: OrtModel, prompts: object, message: str) -> None:
    with pytest.raises(Awq2TrtError, match=message):
        llama.generate(prompts, 4)


def test_generation_stops_at_max_positions(llama: OrtModel) -> None:
    result = llama.generate([5] * 510, 10, stop_at_eos=False)
    assert len(result.ids[0]) == 2 and result.finish_reasons == ["length"]


def test_bad_sampling_config() -> None:
    with pytest.raises(Awq2TrtError, match="top_p"):
        SamplingConfig(temperature=1.0, top_p=0.0)
    with pytest.raises(Awq2TrtError, match="temperature"):
        SamplingConfig(temperature=-1.0)
