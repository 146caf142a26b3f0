"""`awq2trt export`: the IR graph in stock ONNX Runtime against the PyTorch reference and the tools' outputs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from awq2trt.checkpoint import open_checkpoint
from awq2trt.cli import main
from awq2trt.errors import Awq2TrtError
from awq2trt.frontend.export import DATA_FILE, MODEL_FILE, export_checkpoint
from awq2trt.modeling import load_reference_model
from awq2trt.quantize import quantize_checkpoint
from awq2trt.sidecar import SIDECAR_FILE
from tests.conftest import AWQ_FIXTURES, copy_with_config, fixture_path, max_abs_rel, reference, source_path
from tests.ort_driver import IrSession

PROMPT_TOKENS = 16
DECODE_STEPS = 8
GREEDY_TOKENS = 32


def _mistral_sliding_window(tmp: Path) -> Path:
    """The Mistral source with a 6-token sliding window, RTN-quantized (g32, symmetric: no zero points)."""
    source = copy_with_config(source_path("mistral"), tmp / "mistral-sw", sliding_window=6)
    return quantize_checkpoint(
        source, tmp / "mistral-sw-q", method="rtn", group_size=32, zero_point=False, progress=False
    )


CASES = [*sorted(AWQ_FIXTURES), "mistral-sliding-window-symmetric"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, shared_export: Any) -> dict[str, tuple[Path, Path]]:
    """checkpoint and IR export per case (the peer fixtures' exports are shared with other test files)."""
    base = tmp_path_factory.mktemp("export")
    out: dict[str, tuple[Path, Path]] = {}
    for case in CASES:
        if case.startswith("mistral"):
            checkpoint = _mistral_sliding_window(base)
            out[case] = (checkpoint, export_checkpoint(checkpoint, base / f"{case}-ir", progress=False).output)
        else:
            out[case] = (fixture_path(case), shared_export(case).output)
    return out


def torch_greedy(model: torch.nn.Module, ids: np.ndarray, steps: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Greedy decoding with the reference model's own KV cache (no stopping at EOS)."""
    with torch.inference_mode():
        out = model(torch.from_numpy(ids), use_cache=True)
        logits, cache, new = [out.logits[:, -1].numpy()], out.past_key_values, []
        for _ in range(steps):
            token = torch.from_numpy(logits[-1].argmax(-1))[:, None]
            new.append(token.numpy())
            out = model(token, past_key_values=cache, use_cache=True)
            logits.append(out.logits[:, -1].numpy())
            cache = out.past_key_values
    return np.concatenate(new, axis=1), logits


def _prompt(checkpoint: Path) -> np.ndarray:
    ref = checkpoint / "reference" / "reference.safetensors"
    if ref.is_file():
        return reference(checkpoint)["input_ids"]
    return np.arange(3, 3 + PROMPT_TOKENS, dtype=np.int64)[None]


@pytest.mark.parametrize("case", CASES)
def test_prefill_and_decode_match_pytorch(case: str, exported: dict) -> None:
    checkpoint, folder = exported[case]
    ids = _prompt(checkpoint)
    model = load_reference_model(checkpoint, progress=False)
    session = IrSession(folder)
    logits, _, _ = session.prefill(ids)
    with torch.inference_mode():
        torch_logits = model(torch.from_numpy(ids)).logits.numpy()
    assert max_abs_rel(logits, torch_logits)[0] <= 1e-4
    new_ids, step_logits = session.greedy(ids, GREEDY_TOKENS)
    torch_ids, torch_steps = torch_greedy(model, ids, GREEDY_TOKENS)
    # Every decode step through the KV cache, logits against the reference's own cached decoding.
    for step in range(DECODE_STEPS + 1):
        assert max_abs_rel(step_logits[step], torch_steps[step])[0] <= 1e-4, step
    np.testing.assert_array_equal(new_ids, torch_ids)


@pytest.mark.parametrize("case", sorted(AWQ_FIXTURES))
def test_prefill_matches_tool_reference(case: str, exported: dict) -> None:
    checkpoint, folder = exported[case]
    ref = reference(checkpoint)
    logits, _, _ = IrSession(folder).prefill(ref["input_ids"])
    max_abs, rel = max_abs_rel(logits, ref["logits"])
    assert max_abs <= 1.5e-3 and rel <= 1e-3, (max_abs, rel)


@pytest.mark.parametrize("case", ["llama-gemm-g64", "qwen2-gemm-g128", "mistral-sliding-window-symmetric"])
def test_left_padded_batch_equals_single_rows(case: str, exported: dict) -> None:
    _, folder = exported[case]
    session = IrSession(folder)
    long = np.arange(3, 19, dtype=np.int64)
    short = np.arange(40, 50, dtype=np.int64)
    batch = np.stack([np.r_[np.zeros(6, np.int64), short], long])
    mask = np.ones_like(batch)
    mask[0, :6] = 0
    batch_ids, batch_logits = session.greedy(batch, 8, mask)
    for row, single in ((0, short), (1, long)):
        ids, logits = session.greedy(single[None], 8)
        np.testing.assert_array_equal(batch_ids[row], ids[0])
        assert max(max_abs_rel(b[row], s[0])[0] for b, s in zip(batch_logits, logits, strict=True)) <= 1e-4


def assert_every_linear_computed(nodes: list, ckpt: object) -> None:
    """Fused q/k/v and gate/up: 4 int4 nodes per layer whose output channels add up to all the Linears'."""
    channels = sum(next(a.i for a in n.attribute if a.name == "N") for n in nodes)
    assert channels == sum(lay.out_features for lay in ckpt.linears.values())
    assert len(nodes) == 4 * len(ckpt.linears) // 7


FUSED_LINEARS = {  # the fused module each checkpoint Linear ends up in, after fuse_qkv / fuse_gate_up
    "self_attn.qkv_proj": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "self_attn.o_proj": ("self_attn.o_proj",),
    "mlp.gate_up_proj": ("mlp.gate_proj", "mlp.up_proj"),
    "mlp.down_proj": ("mlp.down_proj",),
}


def _assert_int4_inputs(nodes: list, graph: onnx.GraphProto, checkpoint: Path, *, symmetric: bool) -> None:
    """Each Int4MatMul reads exactly: an activation, then its module's qweight and scales, then its zeros unless
    the checkpoint is symmetric, then its bias where the checkpoint's Linears have one (Qwen2 q/k/v); the
    overload names that signature.  Shapes and types follow the op's documented layout."""
    from safetensors import safe_open

    with safe_open(str(checkpoint / "model.safetensors"), "np") as f:
        tensor_names = set(f.keys())
    initializers = {i.name: i for i in graph.initializer}
    prefixes = set()
    layers = {int(n.input[1].split(".layers.")[1].split(".")[0]) for n in nodes}
    for node in nodes:
        attrs = {a.name: a.i for a in node.attribute}
        module = node.input[1].removesuffix(".qweight")
        prefixes.add(module)
        layer, _, fused = module.partition(".layers.")[2].partition(".")
        parts = [f"model.layers.{layer}.{p}" for p in FUSED_LINEARS[fused]]
        has_bias = all(f"{p}.bias" in tensor_names for p in parts)
        assert has_bias or not any(f"{p}.bias" in tensor_names for p in parts), module
        expected = [f"{module}.qweight", f"{module}.scales"]
        expected += [] if symmetric else [f"{module}.zeros"]
        expected += [f"{module}.bias"] if has_bias else []
        assert list(node.input[1:]) == expected, list(node.input)
        assert node.input[0] and node.input[0] not in initializers  # the activation, computed in the graph
        assert node.overload == {(0, 0): "", (1, 0): "zp", (0, 1): "bias", (1, 1): "zp_bias"}[(not symmetric, has_bias)]
        n, k, g = attrs["N"], attrs["K"], attrs["block_size"]
        shapes = {"qweight": [n, k // 2], "scales": [n, k // g], "zeros": [n, k // g], "bias": [n]}
        for name in expected:
            init, kind = initializers[name], name.rpartition(".")[2]
            assert list(init.dims) == shapes[kind], (name, list(init.dims))
            is_codes = kind in ("qweight", "zeros")
            assert (init.data_type == onnx.TensorProto.UINT8) == is_codes, name
    assert len(prefixes) == len(nodes) == 4 * len(layers)  # every node its own module, four per layer


@pytest.mark.parametrize("case", CASES)
def test_graph_structure(case: str, exported: dict) -> None:
    checkpoint, folder = exported[case]
    ckpt = open_checkpoint(checkpoint)
    graph = onnx.load(str(folder / MODEL_FILE), load_external_data=False)
    onnx.checker.check_model(str(folder / MODEL_FILE), full_check=True)
    nodes = [n for n in graph.graph.node if n.domain == "awq2trt"]
    assert {n.op_type for n in nodes} == {"Int4MatMul"}
    assert_every_linear_computed(nodes, ckpt)
    assert {(f.name, f.overload) for f in graph.functions} == {("Int4MatMul", n.overload) for n in nodes}
    _assert_int4_inputs(nodes, graph.graph, checkpoint, symmetric=case.startswith("mistral"))
    # No dense copy of any quantized weight: no float initializer holds N*K values of a quantized Linear.
    dense_sizes = {lay.in_features * lay.out_features for lay in ckpt.linears.values()}
    for init in graph.graph.initializer:
        if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
            module = init.name.removeprefix("model.").rpartition(".")[0]
            assert module not in ckpt.linears or init.name.endswith((".scales", ".bias")), init.name
            if int(np.prod(init.dims)) in dense_sizes:
                assert "embed_tokens" in init.name or "lm_head" in init.name, init.name
    sidecar = json.loads((folder / SIDECAR_FILE).read_text())
    session = IrSession(folder).session
    # Every input is a plain one (no initializer doubling as a default: ORT would warn on every session).
    assert session.get_overridable_initializers() == []
    assert [i.name for i in session.get_inputs()] == list(sidecar["inputs"])
    assert sidecar["inputs"]["num_logits_to_keep"] == {"dtype": "int64", "shape": [1]}
    assert [o.name for o in session.get_outputs()] == list(sidecar["outputs"])
    assert (folder / "tokenizer.json").is_file() and (folder / DATA_FILE).stat().st_size > 0


def test_fp16_export(tmp_path: Path) -> None:
    checkpoint = fixture_path("llama-gemm-g64")
    folder = export_checkpoint(checkpoint, tmp_path / "fp16", dtype="fp16", progress=False).output
    ref = reference(checkpoint)
    logits, _, _ = IrSession(folder).prefill(ref["input_ids"])
    assert logits.dtype == np.float16
    with torch.inference_mode():
        ours = load_reference_model(checkpoint, dtype="fp16", progress=False)(torch.from_numpy(ref["input_ids"]))
    assert max_abs_rel(logits, ours.logits.float().numpy())[0] <= 2e-3  # two fp16 steps at |logits| ~ 1.5
    assert max_abs_rel(logits, ref["logits"])[0] <= 3e-3


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in lines[0], lines
    return lines[0]


def test_bad_inputs_give_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gemm = str(fixture_path("llama-gemm-g64"))
    for flag, value in (("--dtype", "int8"), ("--target", "tensorrt")):  # bad choices are usage errors (exit 2)
        with pytest.raises(SystemExit) as exit_info:
            main(["export", gemm, "-o", str(tmp_path / "a"), flag, value, "-q"])
        assert exit_info.value.code == 2
        assert f"argument {flag}: invalid choice: '{value}'" in capsys.readouterr().err
    with pytest.raises(
        Awq2TrtError, match="--target: expected ir or ort or ort-kernels or trt or trt-plugin, got tensorrt"
    ):
        export_checkpoint(gemm, tmp_path / "a", target="tensorrt")  # the Python API names the registry's targets
    (tmp_path / "file").write_text("x")
    assert main(["export", gemm, "-o", str(tmp_path / "file" / "out"), "-q"]) == 1
    assert "file" in _one_error_line(capsys)
    assert main(["export", str(source_path("llama")), "-o", str(tmp_path / "b"), "-q"]) == 1
    assert "quantized checkpoint" in _one_error_line(capsys)
    gpt2 = copy_with_config(fixture_path("llama-gemm-g64"), tmp_path / "gpt2", model_type="gpt2")
    assert main(["export", str(gpt2), "-o", str(tmp_path / "c"), "-q"]) == 1
    line = _one_error_line(capsys)
    assert "gpt2" in line and "llama, mistral, qwen2" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "gpt2"]


def test_export_refuses_non_empty_output_before_tracing(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    start = time.perf_counter()
    with pytest.raises(Awq2TrtError, match="--force"):
        export_checkpoint(fixture_path("llama-gemm-g64"), tmp_path / "out", progress=False)
    assert time.perf_counter() - start < 5  # refused up front, not after a trace


SLOW_EXPORT = """
import pathlib, sys, time
import awq2trt.frontend.export as export
real = export._quantized_arrays
def slow(*args, **kwargs):
    pathlib.Path(sys.argv[3]).touch()  # tells the test that weights are being written
    time.sleep(0.2)
    return real(*args, **kwargs)
export._quantized_arrays = slow
from awq2trt.cli import main
sys.exit(main(["export", sys.argv[1], "-o", sys.argv[2], "-q"]))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_export_leaves_no_model(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "work" / "out"
    writing = tmp_path / "writing"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_EXPORT, str(fixture_path("qwen2-gemm-g128")), str(out), str(writing)],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not writing.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "export never started writing weights"
        time.sleep(0.05)
    time.sleep(0.5)  # mid-write
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    work = tmp_path / "work"
    assert not out.exists()
    if sig == signal.SIGTERM:
        assert proc.returncode == 130 and err.strip().startswith("error: interrupted")
        assert list(work.iterdir()) == []
    else:
        # A kill cannot be caught: the hidden partial folder and the lock file (its lock died with the process)
        # stay until the next run into that output.
        left = sorted(p.name for p in work.iterdir())
        assert len(left) == 2 and left[0] == ".out.lock" and left[1].startswith(".out.partial-"), left
        export_checkpoint(fixture_path("llama-gemm-g64"), out, progress=False)
        assert [p.name for p in work.iterdir()] == ["out"]


def test_dense_copy_never_materialised_for_quantized_layers() -> None:
    """The exporter traces on the meta device: no tensor data is allocated while tracing."""
    from awq2trt.frontend.export import _meta_model

    model, computed = _meta_model(open_checkpoint(fixture_path("qwen2-gemm-g128")), torch.float32)
    assert all(p.is_meta for p in model.parameters()) and all(b.is_meta for b in model.buffers())
    assert all(name.endswith("inv_freq") for name in computed)


@pytest.mark.parametrize("case", ["llama-gemm-g64", "qwen2-gemm-g128"])
def test_logits_to_keep(case: str, exported: dict) -> None:
    """num_logits_to_keep = k gives the last k rows of the full logits; absent or 0 gives them all."""
    _, folder = exported[case]
    session = IrSession(folder)
    ids = np.array([[3, 14, 15, 92, 65, 35]], np.int64)
    mask, positions = np.ones_like(ids), np.arange(6, dtype=np.int64)[None]
    full, cache = session.step(ids, mask, positions, session.empty_cache(1))
    assert full.shape[1] == 6
    np.testing.assert_array_equal(session.step(ids, mask, positions, session.empty_cache(1), keep=0)[0], full)
    for keep in (1, 2):
        kept, kept_cache = session.step(ids, mask, positions, session.empty_cache(1), keep=keep)
        np.testing.assert_allclose(kept, full[:, -keep:], rtol=0, atol=1e-5)
        for a, b in zip(kept_cache, cache, strict=True):
            np.testing.assert_array_equal(a, b)  # the cache does not depend on how many logits are kept


@pytest.fixture(scope="module")
def exported_ort(exported: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The ort target with every pass (GroupQueryAttention included), exact accuracy level."""
    base = tmp_path_factory.mktemp("export-ort")
    return {
        case: export_checkpoint(checkpoint, base / case, target="ort", accuracy_level=0, progress=False).output
        for case, (checkpoint, _) in exported.items()
    }


@pytest.mark.parametrize("case", CASES)
def test_group_query_attention_matches_pytorch(case: str, exported: dict, exported_ort: dict) -> None:
    """Every pass (GroupQueryAttention with a shared KV buffer included), accuracy level 0, against PyTorch:
    every step's logits of a 64-token greedy continuation within 1e-5, and the same ids from the product runtime.

    The Mistral case has a 6-token window under a 16-token prompt, so the window is exercised in prefill
    and in every decode step."""
    from awq2trt.runtime import OrtModel

    checkpoint, _ = exported[case]
    folder = exported_ort[case]
    sidecar = json.loads((folder / SIDECAR_FILE).read_text())
    config = json.loads((checkpoint / "config.json").read_text())
    assert sidecar["passes"]["fuse_gqa"] == config["num_hidden_layers"]
    assert sidecar["kv_cache"]["shared_buffer"] is True and sidecar["kv_cache"]["padding"] == "right"
    graph = onnx.load(str(folder / MODEL_FILE), load_external_data=False).graph
    # Node counts: one per pass in running order, after the traced input; lowering to MatMulNBits is 1:1.
    assert list(sidecar["pass_nodes"]) == ["input", *sidecar["passes"]]
    assert sidecar["pass_nodes"]["cleanup"] == len(graph.node) < sidecar["pass_nodes"]["input"]
    windows = {a.i for n in graph.node if n.op_type == "GroupQueryAttention" for a in n.attribute}
    assert (6 in windows) == case.startswith("mistral")  # local_window_size = sliding_window
    assert not [n for n in graph.node if n.op_type in ("Softmax", "Concat")]  # no attention left unfused
    ids = _prompt(checkpoint)
    model = load_reference_model(checkpoint, progress=False)
    ours = OrtModel.open(folder, threads=2)
    with torch.inference_mode():
        torch_logits = model(torch.from_numpy(ids)).logits.numpy()
    assert max_abs_rel(ours.logits(ids), torch_logits)[0] <= 1e-5  # measured at most 1.1e-6
    steps = 64
    torch_ids, torch_steps = torch_greedy(model, ids, steps)
    graph_ids, graph_steps = IrSession(folder).greedy(ids, steps)  # past and present as separate tensors
    np.testing.assert_array_equal(graph_ids, torch_ids)
    errors = [max_abs_rel(a, b)[0] for a, b in zip(graph_steps, torch_steps, strict=True)]
    # Measured at most 1.2e-6 over the 65 steps on every case (fp32 rounding); a real regression is far above.
    assert max(errors) <= 1e-5, (int(np.argmax(errors)), max(errors))
    assert ours.generate(ids[0], steps, stop_at_eos=False).ids[0] == torch_ids[0].tolist()


@pytest.mark.parametrize("case", ["llama-gemm-g64", "mistral-sliding-window-symmetric"])
def test_group_query_attention_right_padded_batch(case: str, exported_ort: dict) -> None:
    """Rows of different lengths share one right-padded batch and one buffer; each decodes as it would alone."""
    from awq2trt.runtime import OrtModel

    ours = OrtModel.open(exported_ort[case], threads=2)
    prompts = [list(range(3, 19)), list(range(40, 50)), [7]]
    batch = ours.generate(prompts, 12, stop_at_eos=False)
    for row, prompt in enumerate(prompts):
        assert batch.ids[row] == ours.generate(prompt, 12, stop_at_eos=False).ids[0], row


@pytest.mark.parametrize("case", ["llama-gemm-g64", "mistral-sliding-window-symmetric"])
def test_inputs_bound_once_give_the_growing_mask_logits(case: str, exported_ort: dict) -> None:
    """Decode inputs bound once (a full-capacity mask written in place) against fresh inputs every step.

    GroupQueryAttention should read only the mask's ones; a ragged right-padded batch and the Mistral window
    make every row's length and window matter.  Both caches see the same tokens, so the logits must be equal.
    """
    from awq2trt.runtime import OrtModel
    from awq2trt.runtime.kv_cache import SharedBufferCache, padded_mask

    model = OrtModel.open(exported_ort[case], threads=2)
    prompts = [list(range(3, 19)), list(range(40, 47)), [7]]
    lengths = np.array([len(p) for p in prompts], dtype=np.int64)
    width, steps = int(lengths.max()), 20
    mask = padded_mask(lengths, width, "right")
    ids = np.zeros((len(prompts), width), dtype=np.int64)
    ids[mask.astype(bool)] = np.concatenate(prompts)
    positions = np.clip(np.cumsum(mask, 1) - 1, 0, None)
    every = {"num_logits_to_keep": np.zeros(1, np.int64)}
    feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, **every}
    shape = (len(prompts), model.sidecar.num_kv_heads, width + steps, model.sidecar.head_dim)
    caches = [
        SharedBufferCache(
            model.session,
            model._past,
            model._outputs[1:],
            shape,
            np.float32,
            bind_inputs_once=once,
            constant_inputs=every,
        )
        for once in (True, False)
    ]
    firsts = [cache.prefill(dict(feeds), lengths) for cache in caches]
    np.testing.assert_array_equal(firsts[0], firsts[1])
    tokens = firsts[0][np.arange(len(prompts)), lengths - 1].argmax(-1)
    for step in range(steps - 1):
        bound, fresh = (cache.step(tokens).copy() for cache in caches)
        np.testing.assert_array_equal(bound, fresh, err_msg=f"step {step}")
        tokens = bound.argmax(-1)
    assert caches[0].mask is not None and caches[0].mask.sum(axis=1).tolist() == (lengths + steps - 1).tolist()


def test_verbose_export_logs_each_pass(tmp_path: Path) -> None:
    """--verbose shows awq2trt's own notes: per pass, its rewrites and the node count before and after."""
    gemm = str(fixture_path("llama-gemm-g64"))
    result = subprocess.run(
        [sys.executable, "-m", "awq2trt", "export", gemm, "-o", str(tmp_path / "out"), "--target", "ort", "-v"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    sidecar = json.loads((tmp_path / "out" / SIDECAR_FILE).read_text())
    nodes = sidecar["pass_nodes"]
    for name, before in zip(sidecar["passes"], nodes.values(), strict=False):
        line = f"pass {name}: {sidecar['passes'][name]} rewrites, {before} -> {nodes[name]} nodes"
        assert line in result.stderr, line
    assert "pass fuse_gqa: 2 rewrites" in result.stderr  # both layers of the fixture
