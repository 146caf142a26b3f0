"""The TensorRT engine runtime around the engine: profiles, the Concat cache, logits, the CLI's choice of backend.

TensorRT cannot run here, so the engine is stood in for by the same ``trt`` graph in ONNX Runtime behind the
``EngineRunner`` interface, and that stand-in refuses, as TensorRT does, any input outside the optimization
profile the step asked for (shapes and shape-tensor values, from the profiles ``awq2trt build`` would give the
engine).  What this checks is ours: which profile each step runs in, the shapes it feeds, the cache it keeps,
the logits it hands the generation loop, and that tokens equal ONNX Runtime's own runtime on the same graph.
The engine's numerics are TensorRT's and are checked only where it is installed (tests marked ``tensorrt``).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from awq2trt.errors import Awq2TrtError
from awq2trt.runtime import OrtModel
from awq2trt.runtime.generate import Text, generate_tokens
from awq2trt.runtime.sampling import SamplingConfig
from awq2trt.runtime.trt_model import read_engine_folder
from awq2trt.runtime.trt_step import TrtStepModel
from awq2trt.sidecar import Sidecar
from awq2trt.tensorrt.engine_info import EngineInfo
from tests.conftest import ROOT, engine_info_for

MAX_BATCH, MAX_SEQ, MAX_CONTEXT = 4, 24, 48


class ProfileCheckingRunner:
    """The trt graph in ONNX Runtime, refusing what the engine's optimization profiles would refuse."""

    device = torch.device("cpu")

    def __init__(self, folder: Path, info: EngineInfo) -> None:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.info = info
        self.profiles_run: list[str] = []

    def run(self, profile: int, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        spec = self.info.profiles[profile]
        for name, limits in spec.shapes.items():
            shape = tuple(inputs[name].shape)
            assert limits.contains(shape), f"{spec.name}: {name} {shape} outside {limits}"
        for name, limits in spec.values.items():
            values = tuple(int(v) for v in inputs[name].reshape(-1))
            assert limits.contains(values), f"{spec.name}: {name} = {values} outside {limits}"
        self.profiles_run.append(spec.name)
        names = [o.name for o in self.session.get_outputs()]
        out = self.session.run(names, {k: v.numpy() for k, v in inputs.items()})
        return {name: torch.from_numpy(value) for name, value in zip(names, out, strict=True)}


def _info(sidecar: Sidecar, engine_bytes: int = 0) -> EngineInfo:
    info: EngineInfo = engine_info_for(sidecar, limits=(MAX_BATCH, MAX_SEQ, MAX_CONTEXT), engine_bytes=engine_bytes)
    return info


@pytest.fixture(scope="module")
def trt_folder(shared_export: Any) -> Path:
    return shared_export("llama-gemm-g64", "trt", "fp32").output


def _steps(folder: Path) -> tuple[TrtStepModel, ProfileCheckingRunner]:
    sidecar = Sidecar.read(folder)
    info = _info(sidecar)
    runner = ProfileCheckingRunner(folder, info)
    return TrtStepModel(runner, sidecar, info), runner


def test_generation_equals_onnx_runtime(trt_folder: Path) -> None:
    """Ragged batched prompts, greedy and sampled: the engine path's tokens are ORT's on the same graph, and every
    step stays inside its profile (prefill once, then decode)."""
    steps, runner = _steps(trt_folder)
    ort_model = OrtModel.open(trt_folder)
    text = Text(None, trt_folder / "tokenizer.json")
    prompts = [list(range(3, 3 + n)) for n in (5, 17, 1, 24)]  # 24 = max-seq; 1 = a one-token prompt
    for sampling in (SamplingConfig(), SamplingConfig(temperature=0.8, top_k=20, seed=3)):
        runner.profiles_run.clear()
        ours = generate_tokens(steps, text, prompts, MAX_CONTEXT - MAX_SEQ, sampling=sampling, stop_at_eos=False)
        theirs = ort_model.generate(prompts, MAX_CONTEXT - MAX_SEQ, sampling=sampling, stop_at_eos=False)
        assert ours.ids == theirs.ids
        assert all(len(row) == MAX_CONTEXT - MAX_SEQ for row in ours.ids)  # the context filled exactly
        assert runner.profiles_run == ["prefill"] + ["decode"] * (MAX_CONTEXT - MAX_SEQ - 1)


def test_generation_stops_at_the_engine_context(trt_folder: Path) -> None:
    """Asking for more than the engine's --max-context gives what fits, not a TensorRT shape error."""
    steps, _ = _steps(trt_folder)
    out = generate_tokens(steps, Text(None, trt_folder), [list(range(3, 13))], 500, stop_at_eos=False)
    assert len(out.ids[0]) == MAX_CONTEXT - 10 and out.finish_reasons == ["length"]


def test_window_logits_equal_onnx_runtime(trt_folder: Path) -> None:
    steps, runner = _steps(trt_folder)
    ids = np.arange(3, 3 + 2 * MAX_SEQ, dtype=np.int64).reshape(2, MAX_SEQ)
    ours = steps.window_logits(ids)
    theirs = OrtModel.open(trt_folder).logits(ids)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    assert runner.profiles_run == ["prefill"]


def test_limits_give_one_line(trt_folder: Path) -> None:
    steps, _ = _steps(trt_folder)
    text = Text(None, trt_folder)
    with pytest.raises(Awq2TrtError, match=r"at most 4 rows at once \(the engine's --max-batch"):
        generate_tokens(steps, text, [[3, 4]] * 5, 4)
    with pytest.raises(Awq2TrtError, match=r"prompts of at most 24 tokens \(the engine's --max-seq\)"):
        generate_tokens(steps, text, [list(range(3, 3 + MAX_SEQ + 1))], 4)
    with pytest.raises(Awq2TrtError, match="--max-seq"):
        steps.window_logits(np.zeros((1, MAX_SEQ + 1), np.int64))


def _engine_folder(trt_folder: Path, tmp: Path, **changes: Any) -> Path:
    """The exported folder plus an engine.json and a placeholder engine file (never loaded: no TensorRT here)."""
    import shutil

    folder = tmp / "engine"
    shutil.copytree(trt_folder, folder)
    (folder / "model.plan").write_bytes(b"not an engine")
    info = _info(Sidecar.read(folder), engine_bytes=len(b"not an engine"))
    EngineInfo(**{**vars(info), **changes}).write(folder)
    return folder


def test_engine_folder_checks_before_tensorrt(trt_folder: Path, tmp_path: Path) -> None:
    folder = _engine_folder(trt_folder, tmp_path)
    sidecar, info = read_engine_folder(folder)
    assert sidecar.target == "trt" and info.max_context == MAX_CONTEXT
    other = _engine_folder(trt_folder, tmp_path / "x", dtype="float16")
    with pytest.raises(Awq2TrtError, match=r"engine\.json: expected an engine of the sidecar's float32 graph"):
        read_engine_folder(other)


def test_inspect_shows_the_engine(trt_folder: Path, tmp_path: Path) -> None:
    folder = _engine_folder(trt_folder, tmp_path)
    shown = _cli("inspect", str(folder))
    assert shown.returncode == 0, shown.stderr
    assert "model.plan (TensorRT 10.13.0.35, float32): batch <= 4, prompt <= 24, context <= 48 tokens" in shown.stdout
    as_json = _cli("inspect", str(folder), "--json")
    assert '"max_context": 48' in as_json.stdout


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "awq2trt", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_cli_runs_an_engine_folder_only_with_tensorrt(trt_folder: Path, tmp_path: Path) -> None:
    """`run` on an engine folder picks TensorRT; without it, one line naming the package (and, since the exported
    graph is there, --backend onnxruntime), exit code 4; --backend onnxruntime runs the graph in ONNX Runtime."""
    folder = _engine_folder(trt_folder, tmp_path)
    engine = _cli("run", str(folder), "-p", "hello", "--raw", "--max-new-tokens", "3")
    assert engine.returncode == 4, engine.stderr
    lines = engine.stderr.strip().splitlines()
    assert len(lines) == 1 and "tensorrt" in lines[0] and "awq2trt[trt]" in lines[0], engine.stderr
    assert "--backend onnxruntime" in lines[0]
    asked = ("-p", "hello", "--raw", "--max-new-tokens", "3")
    graph = _cli("run", str(folder), *asked, "--backend", "onnxruntime", "--json")
    assert graph.returncode == 0, graph.stderr
    assert '"backend": "onnxruntime"' in graph.stdout
    refused = _cli("run", str(folder), "-p", "hello", "--backend", "tensorrt", "--threads", "2")
    assert refused.returncode != 0 and "--threads" in refused.stderr and "TensorRT engine" in refused.stderr


@pytest.mark.tensorrt
def test_real_engine_generates_the_onnx_runtime_tokens(trt_folder: Path, tmp_path: Path) -> None:
    """Where TensorRT and a GPU exist: build the fp32 trt graph and compare 32 greedy tokens and the logits."""
    trt = pytest.importorskip("tensorrt", reason="needs TensorRT (pip install tensorrt)")
    if not hasattr(trt, "Builder") or not torch.cuda.is_available():
        pytest.skip("needs TensorRT (pip install tensorrt) and a CUDA GPU")
    from awq2trt.runtime.trt_model import TrtModel
    from awq2trt.tensorrt.builder import build_engine

    engine_path = tmp_path / "engine" / "model.plan"
    build_engine(trt_folder, engine_path, max_batch=2, max_seq=32, max_context=64, progress=False)
    engine = TrtModel.open(tmp_path / "engine")
    prompt = list(range(3, 19))
    ours = engine.generate(prompt, 32, stop_at_eos=False)
    theirs = OrtModel.open(trt_folder).generate(prompt, 32, stop_at_eos=False)
    assert ours.ids == theirs.ids
    ids = np.array([prompt])
    np.testing.assert_allclose(engine.logits(ids), OrtModel.open(trt_folder).logits(ids), atol=1e-3)
