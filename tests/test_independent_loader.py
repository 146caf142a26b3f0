"""Checkpoints we write load in an independent AutoAWQ-format loader (transformers + gptqmodel) and give
the same logits as our reference model."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from awq2trt.modeling import load_reference_model
from awq2trt.quantize import quantize_checkpoint
from tests.conftest import max_abs_rel, reference, source_path

PEER_SCRIPT = Path(__file__).parent / "peers" / "gptqmodel_logits.py"
# CI installs the peer and sets this, so that a missing peer fails there instead of skipping.
REQUIRED = os.environ.get("AWQ2TRT_REQUIRE_PEERS") == "1"

pytestmark = pytest.mark.slow


def peer_logits(checkpoint: Path, ids: np.ndarray, tmp_path: Path) -> np.ndarray:
    if importlib.util.find_spec("gptqmodel") is None:
        if REQUIRED:
            pytest.fail("gptqmodel is not installed but AWQ2TRT_REQUIRE_PEERS=1")
        pytest.skip("gptqmodel (the independent AWQ loader) is not installed; .ci/run installs it")
    np.save(tmp_path / "ids.npy", ids)
    out = tmp_path / "peer_logits.npy"
    result = subprocess.run(
        [sys.executable, str(PEER_SCRIPT), str(checkpoint), str(tmp_path / "ids.npy"), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(out)


@pytest.mark.parametrize(
    ("model_type", "group_size", "method"),
    [("llama", 64, "rtn"), ("qwen2", 128, "rtn"), ("mistral", 32, "rtn"), ("llama", 64, "awq"), ("qwen2", 64, "awq")],
)
def test_written_checkpoint_loads_in_gptqmodel(tmp_path: Path, model_type: str, group_size: int, method: str) -> None:
    """AWQ folds its scales into the norms and Linears before quantizing: the loader must see the same model."""
    source = source_path(model_type)
    options = {"calib_samples": 6, "calib_seqlen": 64, "allow_worse": True} if method == "awq" else {}
    checkpoint = quantize_checkpoint(
        source, tmp_path / "ckpt", method=method, group_size=group_size, progress=False, **options
    )
    ids = reference(source)["input_ids"]
    theirs = peer_logits(checkpoint, ids, tmp_path)
    for dtype, bound in (("fp16", 2e-3), ("fp32", 2e-3)):
        with torch.inference_mode():
            ours = load_reference_model(checkpoint, dtype=dtype, progress=False)(torch.from_numpy(ids)).logits
        max_abs, rel = max_abs_rel(ours.float().numpy(), theirs)
        assert max_abs <= bound and rel <= bound, (model_type, dtype, max_abs, rel)
        assert np.array_equal(ours.float().numpy().argmax(-1), theirs.argmax(-1))
