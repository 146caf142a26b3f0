"""``--target ort``: Int4MatMul lowered to ONNX Runtime's MatMulNBits, against the reference and the IR graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from awq2trt.checkpoint import open_checkpoint
from awq2trt.errors import Awq2TrtError
from awq2trt.frontend.export import MODEL_FILE, export_checkpoint
from awq2trt.modeling import load_reference_model
from awq2trt.targets.ort import pack_zero_points
from tests.conftest import AWQ_FIXTURES, fixture_path, max_abs_rel, reference
from tests.ort_driver import IrSession
from tests.test_export import assert_every_linear_computed, torch_greedy


def test_zero_point_packing_by_hand() -> None:
    # Group 2j in the low nibble, each row padded on its own (ORT rejects a contiguous packing).
    zeros = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    np.testing.assert_array_equal(pack_zero_points(zeros), [[0x21, 0x03], [0x54, 0x06]])


@pytest.fixture(scope="module")
def lowered(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], Path]:
    base = tmp_path_factory.mktemp("ort")
    return {
        (name, level): export_checkpoint(
            fixture_path(name), base / f"{name}-{level}", target="ort", accuracy_level=level, progress=False
        ).output
        for name in sorted(AWQ_FIXTURES)
        for level in (0, 4)
    }


@pytest.mark.parametrize("name", sorted(AWQ_FIXTURES))
def test_exact_level_matches_reference(name: str, lowered: dict) -> None:
    checkpoint = fixture_path(name)
    ids = reference(checkpoint)["input_ids"]
    session = IrSession(lowered[(name, 0)])
    new_ids, steps = session.greedy(ids, 32)
    torch_ids, torch_steps = torch_greedy(load_reference_model(checkpoint, progress=False), ids, 32)
    for step in range(9):
        assert max_abs_rel(steps[step], torch_steps[step])[0] <= 1e-4, step
    np.testing.assert_array_equal(new_ids, torch_ids)
    assert max_abs_rel(session.prefill(ids)[0], reference(checkpoint)["logits"])[0] <= 1.5e-3


@pytest.mark.parametrize("name", sorted(AWQ_FIXTURES))
def test_int8_activation_level_is_close(name: str, lowered: dict) -> None:
    checkpoint = fixture_path(name)
    ids = reference(checkpoint)["input_ids"]
    exact, _, _ = IrSession(lowered[(name, 0)]).prefill(ids)
    fast, _, _ = IrSession(lowered[(name, 4)]).prefill(ids)
    _, rel = max_abs_rel(fast, exact)
    assert 0 < rel <= 1e-2  # int8 activations: measurably different, within about half a percent


@pytest.mark.parametrize("name", sorted(AWQ_FIXTURES))
def test_graph_has_only_matmulnbits(name: str, lowered: dict) -> None:
    graph = onnx.load(str(lowered[(name, 0)] / MODEL_FILE), load_external_data=False)
    nodes = [n for n in graph.graph.node if n.op_type == "MatMulNBits"]
    assert_every_linear_computed(nodes, open_checkpoint(fixture_path(name)))
    assert all(n.domain == "com.microsoft" for n in nodes)
    assert not [n for n in graph.graph.node if n.domain == "awq2trt"] and not graph.functions
    # Never a g_idx (input 4): with packed zero points ORT would silently ignore the zero points.
    assert all(len(n.input) <= 4 or not n.input[4] for n in nodes)
    levels = {a.i for n in nodes for a in n.attribute if a.name == "accuracy_level"}
    assert levels == {0}


def test_bad_accuracy_level(tmp_path: Path) -> None:
    with pytest.raises(Awq2TrtError, match="--accuracy-level"):
        export_checkpoint(fixture_path("llama-gemm-g64"), tmp_path / "x", target="ort", accuracy_level=7)
    assert not (tmp_path / "x").exists()
