"""``--target ort-kernels``: the ort graph with our Int4MatMul kernel library, against stock ONNX Runtime's ort graph.

The independent reference is the ``ort`` target at accuracy level 0 (ONNX Runtime's own MatMulNBits, exact fp32
activations) on the same checkpoint: both graphs come from the same passes, so at level 0 they differ only in
the int4 kernel's summation order.  The library's compute counter proves our kernel, not the function body,
ran every Int4MatMul.  The library is built per session from plugins/onnxruntime (conftest.ort_kernels_library).
The ABI check is also tested on tiny libraries compiled here with gcc, which export the symbol with chosen
values (or not at all).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from awq2trt.cli import main
from awq2trt.cpu_layout import untile_codes, untile_groups
from awq2trt.errors import Awq2TrtError
from awq2trt.frontend.export import MODEL_FILE, export_checkpoint
from awq2trt.ir import int4_op
from awq2trt.runtime import OrtModel
from awq2trt.runtime import kernels as kernel_lookup
from awq2trt.sidecar import ORT_KERNELS, SIDECAR_FILE, Sidecar
from tests.conftest import AWQ_FIXTURES, ROOT, fixture_path
from tests.ort_driver import IrSession

CASE = "llama-gemm-g64"
IDS = np.array([[1, 17, 42, 7, 99, 3, 11, 5], [5, 8, 13, 21, 34, 55, 89, 2]], np.int64)
NEW_TOKENS = 16
# Both graphs dequantize to the same fp32 weights and accumulate in fp32; only the order of the sums differs
# (K <= 1024 products per output, eps 6e-8), which stays orders of magnitude below 1e-4 of the logits' peak,
# while a wrong nibble, zero point or scale moves logits by O(1).
LOGITS_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def library(ort_kernels_library: Path) -> ctypes.CDLL:
    handle = ctypes.CDLL(str(ort_kernels_library.resolve()))  # the handle the runtime's dlopen shares
    handle.awq2trt_ort_compute_count.restype = ctypes.c_uint64
    return handle


@pytest.fixture(autouse=True)
def _no_library_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(kernel_lookup.ENV_VAR, raising=False)


@pytest.fixture
def no_package_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As if the install had not built the library (a developer's tree may hold one in awq2trt/native)."""
    monkeypatch.setattr(kernel_lookup, "PACKAGE_COPY", tmp_path / "absent" / kernel_lookup.LIBRARY_FILE)


def _count(library: ctypes.CDLL) -> int:
    return int(library.awq2trt_ort_compute_count())


def _kernels_export(shared_export: Any, case: str = CASE, level: int = 0, weight_layout: str | None = None) -> Any:
    """An ort-kernels export of *case*; weight_layout None: the target's default (rows at level 0, tiles16 at 4)."""
    return shared_export(case, "ort-kernels", accuracy_level=level, weight_layout=weight_layout)


@pytest.mark.parametrize("case", sorted(AWQ_FIXTURES))
def test_same_greedy_tokens_and_logits_as_the_ort_target(
    shared_export: Any, ort_kernels_library: Path, library: ctypes.CDLL, case: str
) -> None:
    ours_export = _kernels_export(shared_export, case)
    reference = OrtModel.open(shared_export(case, "ort", accuracy_level=0).output, threads=2)
    ours = OrtModel.open(ours_export.output, threads=2, kernels=ort_kernels_library)
    assert ours.kernels is not None and ours.kernels.source == "--kernels"

    before = _count(library)
    got = ours.logits(IDS)
    assert _count(library) - before == ours_export.int4_nodes  # one run: our kernel computed every Int4MatMul
    want = reference.logits(IDS)
    peak = float(np.abs(want).max())
    assert float(np.abs(got - want).max()) <= LOGITS_TOLERANCE * max(peak, 1.0)

    before = _count(library)
    mine = ours.generate(IDS.tolist(), NEW_TOKENS, stop_at_eos=False)
    runs = _count(library) - before
    assert runs > 0 and runs % ours_export.int4_nodes == 0
    theirs = reference.generate(IDS.tolist(), NEW_TOKENS, stop_at_eos=False)
    np.testing.assert_array_equal(np.asarray(mine.ids), np.asarray(theirs.ids))


def test_int4_head_runs_in_our_kernel_and_gives_the_ort_targets_int4_head_logits(
    tmp_path: Path, ort_kernels_library: Path, library: ctypes.CDLL
) -> None:
    """--lm-head int4: the head is one more Int4MatMul (tiled like the others) with the ort target's codes, so
    at level 0 the logits are the ort target's MatMulNBits head's, and the counter counts the head too."""
    ours_export = export_checkpoint(fixture_path(CASE), tmp_path / "ours", target="ort-kernels", accuracy_level=0,
                                    lm_head="int4", weight_layout="tiles16", progress=False)  # fmt: skip
    theirs_export = export_checkpoint(fixture_path(CASE), tmp_path / "theirs", target="ort", accuracy_level=0,
                                      lm_head="int4", progress=False)  # fmt: skip
    graph = onnx.load(str(ours_export.output / MODEL_FILE), load_external_data=False).graph
    (head,) = [n for n in graph.node if n.name == "lm_head/Int4MatMul"]
    assert (head.domain, head.overload) == (int4_op.DOMAIN, "tiles16")  # symmetric: no zero points
    assert not [n for n in graph.node if n.op_type == "MatMulNBits"]
    ours = OrtModel.open(ours_export.output, threads=2, kernels=ort_kernels_library)
    before = _count(library)
    got = ours.logits(IDS)
    assert _count(library) - before == ours_export.int4_nodes + 1
    want = OrtModel.open(theirs_export.output, threads=2).logits(IDS)
    assert float(np.abs(got - want).max()) <= LOGITS_TOLERANCE * max(float(np.abs(want).max()), 1.0)


@pytest.mark.parametrize("case", ["llama-gemm-g64", "qwen2-gemm-g128"])
def test_level_4_errs_like_matmulnbits_level_4(
    shared_export: Any, ort_kernels_library: Path, library: ctypes.CDLL, case: str
) -> None:
    """int8 activations: against the exact logits (the ort target at level 0), our level-4 graph errs no more than
    ONNX Runtime's MatMulNBits level 4 does (1.5x, the kernel tests' bound), and decodes the same greedy tokens."""
    exact = OrtModel.open(shared_export(case, "ort", accuracy_level=0).output, threads=2)
    theirs = OrtModel.open(shared_export(case, "ort", accuracy_level=4).output, threads=2)
    ours_export = _kernels_export(shared_export, case, level=4)
    ours = OrtModel.open(ours_export.output, threads=2, kernels=ort_kernels_library)
    before = _count(library)
    got = ours.logits(IDS)
    assert _count(library) - before == ours_export.int4_nodes
    want, matmulnbits = exact.logits(IDS), theirs.logits(IDS)
    ours_error, their_error = float(np.abs(got - want).max()), float(np.abs(matmulnbits - want).max())
    assert their_error > 0, "MatMulNBits level 4 computed exactly: the comparison would prove nothing"
    assert ours_error > 0, "level 4 computed exactly: the int8 path did not run"
    assert ours_error <= 1.5 * their_error + 1e-5, (ours_error, their_error)
    mine = ours.generate(IDS.tolist(), NEW_TOKENS, stop_at_eos=False)
    reference = theirs.generate(IDS.tolist(), NEW_TOKENS, stop_at_eos=False)
    np.testing.assert_array_equal(np.asarray(mine.ids), np.asarray(reference.ids))


def test_graph_keeps_int4_nodes_with_bodies_and_the_sidecar_asks_for_the_library(shared_export: Any) -> None:
    result = _kernels_export(shared_export)
    folder = Path(result.output)
    sidecar = Sidecar.read(folder)
    assert sidecar.target == "ort-kernels" and sidecar.kernels == ORT_KERNELS
    assert json.loads((folder / SIDECAR_FILE).read_text())["kernels"] == {"library": "libawq2trt_ort", "abi_version": 3}
    assert sidecar.target_options == {"accuracy_level": 0, "lm_head": "fp", "weight_layout": "rows"}  # level 0
    graph = onnx.load(str(folder / MODEL_FILE), load_external_data=False)
    int4 = [n for n in graph.graph.node if n.domain == "awq2trt" and n.op_type == "Int4MatMul"]
    assert len(int4) == result.int4_nodes
    # own_gqa: every layer's attention is our op too (its decode steps run in our library)
    ours = {n.op_type for n in graph.graph.node if n.domain == "awq2trt"}
    assert ours == {"Int4MatMul", "GroupQueryAttention"}
    assert {a.i for n in int4 for a in n.attribute if a.name == "accuracy_level"} == {0}
    assert all(any(a.name == "accuracy_level" for a in n.attribute) for n in int4)
    ops = {n.op_type for n in graph.graph.node}
    assert {"GroupQueryAttention", "SkipSimplifiedLayerNormalization"} <= ops and "MatMulNBits" not in ops
    # the bodies stay: still valid, runnable ONNX
    assert {f.name for f in graph.functions} == {"Int4MatMul", "GroupQueryAttention"}
    assert not (folder / "genai_config.json").exists()  # GenAI would not load our library


def test_without_the_library_stock_onnxruntime_runs_the_bodies_to_the_same_logits(
    shared_export: Any, ort_kernels_library: Path
) -> None:
    """The function bodies are a correct fallback: a plain session (no library registered) gives our logits."""
    folder = Path(_kernels_export(shared_export).output)
    body = IrSession(folder)  # registers nothing: ONNX Runtime inlines each Int4MatMul's body
    ours = IrSession(folder)
    ours.session = OrtModel.open(folder, threads=2, kernels=ort_kernels_library).session
    for (got_ids, got), (want_ids, want) in [(ours.greedy(IDS, 4), body.greedy(IDS, 4))]:
        np.testing.assert_array_equal(got_ids, want_ids)
        for a, b in zip(got, want, strict=True):
            assert float(np.abs(a - b).max()) <= LOGITS_TOLERANCE * max(float(np.abs(b).max()), 1.0)


def test_level_4_is_recorded_and_other_levels_are_one_line_errors(
    shared_export: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = _kernels_export(shared_export, level=4)
    graph = onnx.load(str(Path(export.output) / MODEL_FILE), load_external_data=False)
    assert {a.i for n in graph.graph.node for a in n.attribute if a.name == "accuracy_level"} == {4}
    # level 4's default layout is the int8 kernel's tiles16
    assert Sidecar.read(export.output).target_options["weight_layout"] == "tiles16"
    assert {a.s for n in graph.graph.node for a in n.attribute if a.name == int4_op.WEIGHT_LAYOUT} == {b"tiles16"}
    out = tmp_path / "x"
    for level in ("1", "2", "3"):
        code = main(
            ["export", str(fixture_path(CASE)), "-o", str(out), "--target", "ort-kernels", "--accuracy-level", level]
        )
        err = capsys.readouterr().err.strip()
        assert code == 1 and err.startswith("error: --accuracy-level") and "\n" not in err, err
        assert "0 (exact) or 4" in err and not out.exists()


# -- --weight-layout tiles16 ---------------------------------------------------------------------------------------


def _int4_weights(folder: Path) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:
    model = onnx.load(str(folder / MODEL_FILE))  # the fixtures' weights are small: read them all
    arrays = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.domain == int4_op.DOMAIN and n.op_type == int4_op.OP_TYPE]
    return nodes, arrays


@pytest.mark.parametrize("case", ["llama-gemm-g64", "qwen2-gemm-g128"])  # Qwen2: q/k/v biases (tiles16_zp_bias)
def test_tiles16_export_holds_the_tiles_and_stock_onnxruntime_gives_the_rows_logits(
    shared_export: Any, case: str
) -> None:
    """Each Int4MatMul's weights are the rows export's, tiled (same names), the node says so and names its tiles16
    overload; without the library ONNX Runtime runs the tiles16 bodies to the rows graph's logits."""
    rows = _kernels_export(shared_export, case)  # level 0's default layout
    tiles = _kernels_export(shared_export, case, weight_layout="tiles16")
    assert tiles.int4_nodes == rows.int4_nodes
    assert Sidecar.read(tiles.output).target_options == {
        "accuracy_level": 0,
        "lm_head": "fp",
        "weight_layout": "tiles16",
    }
    tile_nodes, tile_arrays = _int4_weights(tiles.output)
    row_nodes, row_arrays = _int4_weights(rows.output)
    assert [n.name for n in tile_nodes] == [n.name for n in row_nodes] and len(tile_nodes) == tiles.int4_nodes
    epilogues = []
    for node, row_node in zip(tile_nodes, row_nodes, strict=True):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs[int4_op.WEIGHT_LAYOUT] == b"tiles16" and attrs["accuracy_level"] == 0
        assert list(node.input) == list(row_node.input)
        has_zp, has_bias = len(node.input) > 3 and bool(node.input[3]), len(node.input) > 4 and bool(node.input[4])
        epilogue = attrs.get(int4_op.EPILOGUE, int4_op.EPILOGUE_NONE.encode()).decode()
        assert node.overload == int4_op.overload_name(has_zp, has_bias, int4_op.LAYOUT_TILES16, epilogue)
        epilogues.append(epilogue)
        n, k, g = attrs["N"], attrs["K"], attrs["block_size"]
        t = -(-n // 16)
        b, scales = tile_arrays[node.input[1]], tile_arrays[node.input[2]]
        assert b.shape == (t, k // 8, 16, 4) and b.dtype == np.uint8 and scales.shape == (t, k // g, 16)
        np.testing.assert_array_equal(untile_codes(b, n), row_arrays[node.input[1]])
        np.testing.assert_array_equal(untile_groups(scales, n), row_arrays[node.input[2]])
        if has_zp:
            zeros = tile_arrays[node.input[3]]
            assert zeros.shape == (t, k // g, 16) and zeros.dtype == np.uint8
            np.testing.assert_array_equal(untile_groups(zeros, n), row_arrays[node.input[3]])
        if has_bias:
            np.testing.assert_array_equal(tile_arrays[node.input[4]], row_arrays[node.input[4]])
    # every layer's gate/up carries the SwiGLU (fuse_silu_mul), so the bodies below run that epilogue too
    assert epilogues.count(int4_op.EPILOGUE_SILU_MUL) == Sidecar.read(tiles.output).passes["fuse_silu_mul"] > 0
    model = onnx.load(str(tiles.output / MODEL_FILE), load_external_data=False)
    attention = [n for n in model.graph.node if n.op_type == "GroupQueryAttention"]
    assert attention and {n.domain for n in attention} == {"awq2trt"}  # own_gqa: each layer's, one body for all
    assert {(f.name, f.overload) for f in model.functions} == {("Int4MatMul", n.overload) for n in tile_nodes} | {
        ("GroupQueryAttention", "attributes_0")
    }
    assert any("bias" in n.overload for n in tile_nodes) == (case.startswith("qwen2"))
    got_ids, got = IrSession(tiles.output).greedy(IDS, 3)  # registers nothing: the bodies run
    want_ids, want = IrSession(rows.output).greedy(IDS, 3)
    np.testing.assert_array_equal(got_ids, want_ids)
    for a, b in zip(got, want, strict=True):
        assert float(np.linalg.norm(a - b) / np.linalg.norm(b)) <= 1e-5


@pytest.mark.parametrize("target", ["ir", "ort", "trt", "trt-plugin"])
def test_weight_layout_is_one_error_on_other_targets(
    target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x"
    argv = ["export", str(fixture_path(CASE)), "-o", str(out), "--target", target, "--weight-layout", "tiles16"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: --weight-layout: expected the default with --target {target} (it is for --target ort-kernels),"
        " got tiles16"
    ), err
    assert not out.exists()
    with pytest.raises(Awq2TrtError, match=f"--weight-layout: expected the default with --target {target} "):
        export_checkpoint(fixture_path(CASE), out, target=target, weight_layout="tiles16", progress=False)
    assert not out.exists()


def test_an_unknown_weight_layout_is_one_error(tmp_path: Path) -> None:
    """The CLI's choices refuse it as a usage error (tests/test_cli.py); the Python API names the two layouts."""
    with pytest.raises(Awq2TrtError, match="--weight-layout: expected rows or tiles16, got tiles8"):
        export_checkpoint(fixture_path(CASE), tmp_path / "x", target="ort-kernels", weight_layout="tiles8")
    assert not (tmp_path / "x").exists()


# -- finding the library ------------------------------------------------------------------------------------------


def test_found_by_env_var_by_option_and_in_the_package(
    shared_export: Any, ort_kernels_library: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = _kernels_export(shared_export).output
    monkeypatch.setattr(kernel_lookup, "PACKAGE_COPY", tmp_path / "absent.so")
    monkeypatch.setenv(kernel_lookup.ENV_VAR, str(ort_kernels_library))
    model = OrtModel.open(folder, threads=1)
    assert model.kernels is not None and model.kernels.source == f"${kernel_lookup.ENV_VAR}"
    # --kernels wins over the variable (which here names a file that is not there)
    monkeypatch.setenv(kernel_lookup.ENV_VAR, str(tmp_path / "nothing.so"))
    model = OrtModel.open(folder, threads=1, kernels=str(ort_kernels_library))
    assert model.kernels is not None and model.kernels.path == ort_kernels_library
    monkeypatch.delenv(kernel_lookup.ENV_VAR)
    monkeypatch.setattr(kernel_lookup, "PACKAGE_COPY", ort_kernels_library)
    model = OrtModel.open(folder, threads=1)
    assert model.kernels is not None and model.kernels.source == "the package"
    assert len(model.generate(IDS[:1].tolist(), 3).ids[0]) == 3


def test_cli_finds_it_through_the_env_var_and_the_option(
    shared_export: Any, ort_kernels_library: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = str(_kernels_export(shared_export).output)
    argv = ["run", folder, "-p", "Hello", "-n", "4", "--raw", "--json", "-q"]
    assert main([*argv, "--kernels", str(ort_kernels_library)]) == 0
    by_option = json.loads(capsys.readouterr().out)
    monkeypatch.setenv(kernel_lookup.ENV_VAR, str(ort_kernels_library))
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["text"] == by_option["text"]
    assert main(["eval", folder, "--text", str(ROOT / "README.md"), "--window", "64", "--stride", "64", "-q"]) == 0
    assert "perplexity" in capsys.readouterr().out


def _user_error(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def _tiny_library(folder: Path, name: str, body: str) -> Path:
    """A shared library with just the symbols *body* defines (gcc), to test the checks with chosen answers."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    source, path = folder / f"{name}.c", folder / f"{name}.so"
    source.write_text(body)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(path), str(source)], check=True, capture_output=True)
    return path


ENTRY = "void* RegisterCustomOps(void* options, const void* api) { (void)options; (void)api; return 0; }\n"


def test_bad_libraries_are_one_line_errors(
    shared_export: Any,
    ort_kernels_library: Path,
    no_package_copy: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = str(_kernels_export(shared_export).output)
    run = ["run", folder, "-p", "hi", "-n", "2", "--raw"]
    _user_error(run, capsys, "libawq2trt_ort.so", "none found", "pip install .", "cmake -S plugins/onnxruntime")
    _user_error([*run, "--kernels", str(tmp_path / "missing.so")], capsys, "missing.so", "no such file")
    _user_error([*run, "--kernels", str(ROOT / "README.md")], capsys, "README.md", "a shared library")
    _user_error([*run, "--kernels", str(tmp_path)], capsys, "a folder")
    monkeypatch.setenv(kernel_lookup.ENV_VAR, str(ROOT / "README.md"))
    _user_error(["eval", folder, "-q"], capsys, f"${kernel_lookup.ENV_VAR}", "a shared library")
    monkeypatch.delenv(kernel_lookup.ENV_VAR)
    not_ort = _tiny_library(tmp_path, "plain", "int awq2trt_ort_abi_version(void) { return 1; }\n")
    _user_error([*run, "--kernels", str(not_ort)], capsys, "RegisterCustomOps")
    other_abi = _tiny_library(tmp_path, "abi1", ENTRY + "int awq2trt_ort_abi_version(void) { return 1; }\n")
    _user_error([*run, "--kernels", str(other_abi)], capsys, "awq2trt_ort_abi_version() = 3", "got 1")
    no_abi = _tiny_library(tmp_path, "noabi", ENTRY)
    _user_error(["bench", folder, "--kernels", str(no_abi)], capsys, "exporting awq2trt_ort_abi_version")


def test_the_abi_check_accepts_a_library_of_abi_3_and_reads_its_build_info(tmp_path: Path) -> None:
    good = _tiny_library(
        tmp_path,
        "good",
        ENTRY + "int awq2trt_ort_abi_version(void) { return 3; }\nconst char* awq2trt_ort_build_info(void) "
        '{ return "test build"; }\n',
    )
    checked = kernel_lookup.check_library(good, "--kernels")
    assert (checked.abi_version, checked.build_info) == (3, "test build")


def test_kernels_on_a_graph_without_int4_nodes_is_refused(
    shared_export: Any, ort_kernels_library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = str(shared_export(CASE, "ort", accuracy_level=0).output)
    _user_error(["run", folder, "-p", "hi", "--kernels", str(ort_kernels_library)], capsys, "--kernels", "ort-kernels")
    checkpoint = str(fixture_path(CASE))
    _user_error(["run", checkpoint, "-p", "hi", "--kernels", str(ort_kernels_library)], capsys, "--kernels")


def test_an_ir_export_runs_our_kernel_when_asked(
    shared_export: Any, ort_kernels_library: Path, library: ctypes.CDLL
) -> None:
    result = shared_export(CASE, "ir")
    assert OrtModel.open(result.output, threads=1).kernels is None  # not asked: the function bodies run
    model = OrtModel.open(result.output, threads=1, kernels=ort_kernels_library)
    before = _count(library)
    model.logits(IDS)
    assert _count(library) - before == result.int4_nodes


def test_a_real_process_exits_1_without_a_traceback(shared_export: Any, tmp_path: Path) -> None:
    folder = str(_kernels_export(shared_export).output)
    env = {k: v for k, v in os.environ.items() if k != kernel_lookup.ENV_VAR}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "awq2trt", "run", folder, "-p", "hi", "--kernels", str(ROOT / "README.md")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "a shared library" in done.stderr


def test_inspect_shows_the_requirement(shared_export: Any, capsys: pytest.CaptureFixture[str]) -> None:
    folder = str(_kernels_export(shared_export).output)
    assert main(["inspect", folder, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kernels"] == {"library": "libawq2trt_ort", "abi_version": 3}
    assert main(["inspect", folder]) == 0
    assert "kernel library libawq2trt_ort (ABI 3)" in capsys.readouterr().out


# -- Triton's generate kind --------------------------------------------------------------------------------------


def test_generate_repository_carries_the_library(shared_export: Any, ort_kernels_library: Path, tmp_path: Path) -> None:
    """The repository holds the checked library and the model's config points at it; the copied modules alone
    (no awq2trt on the path) open it and answer as the runtime does."""
    from awq2trt.triton import config as configs
    from awq2trt.triton.repository import write_repository

    folder = _kernels_export(shared_export).output
    write_repository(folder, tmp_path / "repo", name="m", kernels=ort_kernels_library)
    config = configs.parse_config((tmp_path / "repo" / "m" / "config.pbtxt").read_text())
    relative = config.parameters["kernels"].string_value
    home = tmp_path / "repo" / "m"
    assert (home / relative).resolve() == home / "1" / "model" / ort_kernels_library.name
    # The plain-infer model loads nothing: it forwards to m.
    infer = configs.parse_config((tmp_path / "repo" / "m_infer" / "config.pbtxt").read_text())
    assert "kernels" not in infer.parameters
    code = tmp_path / "repo" / "m" / "1"
    expected = OrtModel.open(folder, threads=1, kernels=ort_kernels_library).generate("Hello", 4).texts[0]
    script = f"""
import json
from awq2trt.triton.serving import TextGenerator
generator = TextGenerator.open({str(code / "model")!r}, kernels={str(code / "model" / ort_kernels_library.name)!r})
outcome = generator.run(generator.parse({{"text_input": [b"Hello"], "max_tokens": [4]}}), lambda piece: None)
print(json.dumps({{"text": outcome.text, "library": str(generator.model.kernels.path)}}))
"""
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["text"] == expected and report["library"].startswith(str(code))


def test_repository_without_a_library_is_one_error(
    shared_export: Any, no_package_copy: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = str(_kernels_export(shared_export).output)
    with pytest.raises(Awq2TrtError, match="none found"):
        from awq2trt.triton.repository import write_repository

        write_repository(folder, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
    _user_error(
        ["triton", folder, "-o", str(tmp_path / "repo"), "--kernels", str(ROOT / "README.md")], capsys, "shared"
    )


def test_a_tampered_kernels_field_is_one_error(shared_export: Any, ort_kernels_library: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(_kernels_export(shared_export).output, tmp_path / "copy")
    original = json.loads((folder / SIDECAR_FILE).read_text())
    cases = [
        ({"library": "../libevil", "abi_version": 3}, "a library base name"),
        ({"library": "libawq2trt_ort", "abi_version": "2"}, "kernels: abi_version"),
        ({"library": "libother", "abi_version": 3}, "the one this awq2trt knows"),
        ({"library": "libawq2trt_ort", "abi_version": 1}, "awq2trt_ort_abi_version() = 1"),
    ]
    for kernels, needle in cases:
        (folder / SIDECAR_FILE).write_text(json.dumps({**original, "kernels": kernels}))
        with pytest.raises(Awq2TrtError, match=re.escape(needle)):
            OrtModel.open(folder, threads=1, kernels=ort_kernels_library)


# -- the install hook (setup.py) ---------------------------------------------------------------------------------


def test_the_install_built_the_package_copy() -> None:
    """CI installs with ONNXRUNTIME_INCLUDE_DIR set (.ci/run, scripts/venv-run), so the copy must be there."""
    if os.environ.get("AWQ2TRT_REQUIRE_PEERS") != "1" or not os.environ.get("ONNXRUNTIME_INCLUDE_DIR"):
        pytest.skip("checks the CI install (AWQ2TRT_REQUIRE_PEERS=1 with ONNXRUNTIME_INCLUDE_DIR set)")
    assert kernel_lookup.PACKAGE_COPY.is_file(), "scripts/venv-run's install did not build the kernel library"
    assert kernel_lookup.check_library(kernel_lookup.PACKAGE_COPY, "the package").abi_version == 3


def _wheel(tmp_path: Path, headers: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ONNXRUNTIME_INCLUDE_DIR"}
    if headers is not None:
        env["ONNXRUNTIME_INCLUDE_DIR"] = headers
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    return subprocess.run([*command, str(ROOT)], capture_output=True, text=True, env=env, timeout=600, check=False)


def test_pip_builds_the_library_into_the_wheel_and_fails_loudly_on_bad_headers(
    ort_kernels_library: Path, tmp_path: Path
) -> None:
    import zipfile

    headers = os.environ.get("ONNXRUNTIME_INCLUDE_DIR") or "/usr/include/onnxruntime"
    done = _wheel(tmp_path / "good", headers)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "good").glob("awq2trt-*.whl")
    assert "linux" in wheel.name  # a compiled library makes the wheel platform-specific
    assert "awq2trt/native/libawq2trt_ort.so" in zipfile.ZipFile(wheel).namelist()
    done = _wheel(tmp_path / "bad", str(tmp_path / "no-headers"))
    assert done.returncode != 0 and "building plugins/onnxruntime failed" in done.stderr + done.stdout
    assert not list((tmp_path / "bad").glob("*.whl"))
