"""The same runtime on ONNX Runtime's CUDA provider (runs where a GPU is lent; skipped elsewhere, with why)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from awq2trt.frontend.export import export_checkpoint
from awq2trt.runtime import OrtModel
from awq2trt.runtime.providers import execution_providers
from tests.conftest import fixture_path, max_abs_rel, reference

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        "CUDAExecutionProvider" not in ort.get_available_providers(),
        reason="this onnxruntime build has no CUDAExecutionProvider (needs onnxruntime-gpu and a CUDA GPU)",
    ),
]


@pytest.fixture(scope="module", params=["fp32", "fp16"])
def folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cuda") / request.param
    return export_checkpoint(
        fixture_path("llama-gemm-g64"), out, dtype=request.param, target="ort", accuracy_level=0, progress=False
    ).output


def test_cuda_session_really_uses_the_gpu(folder: Path) -> None:
    model = OrtModel.open(folder, providers=execution_providers("cuda"))
    assert model.session.get_providers()[0] == "CUDAExecutionProvider"


def test_cuda_greedy_equals_cpu(folder: Path) -> None:
    prompt = [0, 17, 42, 99, 123, 7, 300, 12]
    cpu = OrtModel.open(folder).generate(prompt, 32, stop_at_eos=False)
    cuda = OrtModel.open(folder, providers=execution_providers("cuda")).generate(prompt, 32, stop_at_eos=False)
    assert cuda.ids == cpu.ids


def test_cuda_logits_match_the_tool(folder: Path) -> None:
    checkpoint = fixture_path("llama-gemm-g64")
    ids = reference(checkpoint)["input_ids"]
    logits = OrtModel.open(folder, providers=execution_providers("cuda")).logits(ids)
    max_abs, _ = max_abs_rel(logits.astype(np.float32), reference(checkpoint)["logits"])
    assert max_abs <= 5e-3  # the tool computed in fp16; CPU fp32 lands within 1.5e-3
