"""Graph passes: each rewrites its golden pattern, leaves non-matching graphs alone, keeps outputs equal;
the pass manager selects by name; end to end on the fixtures the passes keep logits and greedy ids."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from awq2trt.errors import Awq2TrtError
from awq2trt.passes import (
    BUILTIN,
    DEFAULT_PASSES,
    FusionMapping,
    linears_computed,
    parse_pass_list,
    register_ort_schemas,
    resolve_mapping,
    run_passes,
)
from tests.conftest import ROOT, fixture_path, max_abs_rel
from tests.ort_driver import IrSession

GRAPHS = ROOT / "graphs"
LLAMA = FusionMapping(BUILTIN["llama"], source="test")


def _load(name: str) -> Any:
    import onnx_ir as ir

    return ir.load(GRAPHS / f"{name}.onnx")


def _ops(model: Any) -> Counter:
    return Counter(n.op_type for n in model.graph)


def _run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {k: v for k, v in feeds.items() if k in {i.name for i in session.get_inputs()}})


def _feeds(seq: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {name: rng.normal(size=(2, seq, 64)).astype(np.float32) for name in ("x", "x2", "skip")}


def _rewrite_and_compare(
    name: str, tmp_path: Path, target: str, enabled: list[str], tolerance: float
) -> tuple[Any, dict[str, int]]:
    """Run *enabled* passes on golden graph *name*; ORT outputs before and after must agree."""
    import onnx_ir as ir

    model = _load(name)
    counts = run_passes(model, target, enabled=enabled, mapping=LLAMA)
    ir.save(model, tmp_path / f"{name}.onnx")
    before, after = _run(GRAPHS / f"{name}.onnx", _feeds()), _run(tmp_path / f"{name}.onnx", _feeds())
    for expected, actual in zip(before, after, strict=True):
        assert actual.shape == expected.shape
        assert max_abs_rel(actual, expected)[0] <= tolerance
    return model, counts


# --- golden graphs -------------------------------------------------------------------------------------


def test_golden_graphs_are_current_and_tiny() -> None:
    script = ROOT / "scripts" / "make_golden_graphs.py"
    result = subprocess.run([sys.executable, str(script), "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert all(p.stat().st_size < 50_000 for p in GRAPHS.glob("*.onnx"))


def test_int4_schema_types_its_output_under_strict_inference() -> None:
    """Once the schema is registered (as every export does), strict shape inference types Int4MatMul's output
    from A and N instead of failing on an op without an inference function."""
    import onnx

    from awq2trt.ir import int4_op

    int4_op.register_schema()
    model = onnx.shape_inference.infer_shapes(onnx.load(str(GRAPHS / "qkv_zero_points.onnx")), strict_mode=True)
    types = {v.name: v.type.tensor_type for v in model.graph.value_info}
    q = types["model.layers.0.self_attn.q_proj.out"]
    assert q.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in q.shape.dim] == ["batch", "seq", 64]


@pytest.mark.parametrize("name", ["qkv_zero_points", "qkv_bias_symmetric"])
def test_fuse_qkv(name: str, tmp_path: Path) -> None:
    model, counts = _rewrite_and_compare(name, tmp_path, "ir", ["fuse_qkv"], 1e-6)
    assert counts == {"fuse_qkv": 1}
    assert _ops(model)["Int4MatMul"] == 1 and _ops(model)["Split"] == 1
    fused = next(n for n in model.graph if n.op_type == "Int4MatMul")
    assert fused.attributes["N"].as_int() == 128
    assert fused.inputs[1].name == "model.layers.0.self_attn.qkv_proj.qweight"
    assert linears_computed(model) == 3
    assert not [v for v in model.graph.initializers if ".q_proj." in v]  # the unfused weights are gone


def test_fuse_gate_up(tmp_path: Path) -> None:
    model, counts = _rewrite_and_compare("gate_up", tmp_path, "ir", ["fuse_gate_up"], 1e-6)
    assert counts == {"fuse_gate_up": 1}
    assert _ops(model)["Int4MatMul"] == 2 and _ops(model)["Split"] == 1  # gate+up, down
    assert linears_computed(model) == 3


def test_fuse_silu_mul(tmp_path: Path) -> None:
    """The SwiGLU after the fused gate/up becomes the node's epilogue; its function body gives the same outputs."""
    import onnx_ir as ir

    from awq2trt.ir import int4_op

    model = _load("gate_up")
    counts = run_passes(model, "ort-kernels", enabled=["fuse_gate_up", "fuse_silu_mul"], mapping=LLAMA)
    assert counts == {"fuse_gate_up": 1, "fuse_silu_mul": 1}
    int4_op.attach_functions(model)  # the node now names the zp_silu_mul body
    ir.save(model, tmp_path / "gate_up.onnx")
    (before,), (after,) = _run(GRAPHS / "gate_up.onnx", _feeds()), _run(tmp_path / "gate_up.onnx", _feeds())
    assert after.shape == before.shape and max_abs_rel(after, before)[0] <= 1e-6
    assert dict(_ops(model)) == {"Int4MatMul": 2}  # no Split, Sigmoid or Mul left
    fused, down = (n for n in model.graph if n.op_type == "Int4MatMul")
    assert int4_op.node_epilogue(fused) == int4_op.EPILOGUE_SILU_MUL and fused.overload == "zp_silu_mul"
    assert int4_op.node_epilogue(down) == int4_op.EPILOGUE_NONE
    assert fused.attributes["N"].as_int() == 256 and list(fused.outputs[0].shape)[-1] == 128
    assert fused.outputs[0].name == "product" and down.inputs[0] is fused.outputs[0]  # the SwiGLU's name kept
    assert linears_computed(model) == 3


@pytest.mark.parametrize("change", ["silu_is_an_output", "up_read_twice", "not_sigmoid"])
def test_fuse_silu_mul_leaves_other_patterns_alone(change: str) -> None:
    import onnx_ir as ir

    model = _load("gate_up")
    run_passes(model, "ort-kernels", enabled=["fuse_gate_up"], mapping=LLAMA)
    nodes = {n.outputs[0].name: n for n in model.graph}
    if change == "silu_is_an_output":
        model.graph.outputs.append(nodes["silu"].outputs[0])
    elif change == "up_read_twice":
        up = nodes["product"].inputs[1]
        extra = ir.Node("", "Relu", [up], name="extra")
        model.graph.append(extra)
        model.graph.outputs.append(extra.outputs[0])
    else:
        nodes["gate_sigmoid"].op_type = "Tanh"
    before = _ops(model)
    assert run_passes(model, "ort-kernels", enabled=["fuse_silu_mul"], mapping=LLAMA) == {"fuse_silu_mul": 0}
    assert _ops(model) == before


def test_norm_with_residual(tmp_path: Path) -> None:
    register_ort_schemas()
    model, counts = _rewrite_and_compare(
        "rmsnorm_residual", tmp_path, "ort", ["fuse_rmsnorm", "fuse_skip_rmsnorm"], 1e-5
    )
    assert counts == {"fuse_rmsnorm": 1, "fuse_skip_rmsnorm": 1}
    assert dict(_ops(model)) == {"SkipSimplifiedLayerNormalization": 1}


@pytest.mark.parametrize("name", ["qkv_different_inputs", "qkv_mixed_block_sizes"])
def test_non_matching_graphs_are_left_alone(name: str, tmp_path: Path) -> None:
    before = _ops(_load(name))
    model, counts = _rewrite_and_compare(name, tmp_path, "ir", ["fuse_qkv", "fuse_gate_up"], 0.0)
    assert counts == {"fuse_qkv": 0, "fuse_gate_up": 0}
    assert _ops(model) == before


# The config the rotary and attention golden graphs were built for (scripts/make_golden_graphs.py).
ATTENTION_CONFIG = {
    "model_type": "llama",
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "max_position_embeddings": 64,
}


def _rotary_feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    positions = np.array([np.arange(5), np.arange(30, 35)], dtype=np.int64)  # the second row mid-sequence
    return {"x": rng.normal(size=(2, 2, 5, 16)).astype(np.float32), "position_ids": positions}


def test_fuse_rotary(tmp_path: Path) -> None:
    register_ort_schemas()
    model = _load("rotary")
    counts = run_passes(model, "ort", enabled=["fuse_rotary"], config=ATTENTION_CONFIG)
    assert counts == {"fuse_rotary": 1}
    assert dict(_ops(model)) == {"RotaryEmbedding": 1}  # the cos/sin arithmetic became two cache initializers
    rotary = next(iter(model.graph))
    assert rotary.domain == "com.microsoft" and rotary.inputs[1].name == "position_ids"
    assert rotary.inputs[2].const_value.shape == (64, 8)  # [max_position_embeddings, head_dim / 2]
    import onnx_ir as ir

    ir.save(model, tmp_path / "rotary.onnx")
    before, after = _run(GRAPHS / "rotary.onnx", _rotary_feeds()), _run(tmp_path / "rotary.onnx", _rotary_feeds())
    assert max_abs_rel(after[0], before[0])[0] <= 1e-5


def test_rotary_that_is_not_rotate_half_is_left_alone() -> None:
    model = _load("rotary_not_rotate_half")
    before = _ops(model)
    assert run_passes(model, "ort", enabled=["fuse_rotary"], config=ATTENTION_CONFIG) == {"fuse_rotary": 0}
    assert _ops(model) == before


def _attention_cases() -> list[tuple[str, dict[str, np.ndarray], np.ndarray, np.ndarray]]:
    """(what, feeds, valid queries per row, valid keys per row): a ragged right-padded prefill longer than the
    window, and a decode step over a 7-token past."""
    rng = np.random.default_rng(2)
    lengths = np.array([6, 4], dtype=np.int64)
    mask = (np.arange(6)[None, :] < lengths[:, None]).astype(np.int64)
    prefill = {
        "x": rng.normal(size=(2, 6, 32)).astype(np.float32),
        "attention_mask": mask,
        "position_ids": np.clip(np.cumsum(mask, axis=1) - 1, 0, None),
        "past_key_values.0.key": np.zeros((2, 1, 0, 16), np.float32),
        "past_key_values.0.value": np.zeros((2, 1, 0, 16), np.float32),
    }
    decode = {
        "x": rng.normal(size=(2, 1, 32)).astype(np.float32),
        "attention_mask": np.ones((2, 8), np.int64),
        "position_ids": np.full((2, 1), 7, np.int64),
        "past_key_values.0.key": rng.normal(size=(2, 1, 7, 16)).astype(np.float32),
        "past_key_values.0.value": rng.normal(size=(2, 1, 7, 16)).astype(np.float32),
    }
    return [("prefill", prefill, lengths, lengths), ("decode", decode, np.array([1, 1]), np.array([8, 8]))]


@pytest.mark.parametrize(
    ("name", "window", "packed"), [("attention_packed", None, True), ("attention_separate_sliding", 3, False)]
)
def test_fuse_gqa(name: str, window: int | None, packed: bool, tmp_path: Path) -> None:
    """Rotary + attention + KV Concat -> one GroupQueryAttention; ORT outputs before and after agree on every
    valid position (GroupQueryAttention leaves right-padded query rows undefined)."""
    import onnx_ir as ir

    register_ort_schemas()
    config = {**ATTENTION_CONFIG, **({"sliding_window": window} if window else {})}
    model = _load(name)
    counts = run_passes(model, "ort", enabled=["fuse_rotary", "fuse_gqa"], config=config)
    assert counts == {"fuse_rotary": 2, "fuse_gqa": 1}
    ops = _ops(model)
    assert ops["GroupQueryAttention"] == 1 and not ops["Softmax"] and not ops["Concat"] and not ops["Transpose"]
    gqa = next(n for n in model.graph if n.op_type == "GroupQueryAttention")
    attributes = {key: attr.value for key, attr in gqa.attributes.items()}
    assert attributes["num_heads"] == 2 and attributes["kv_num_heads"] == 1
    assert attributes["scale"] == pytest.approx(0.25)
    assert attributes.get("local_window_size") == window
    # Packed: q/k/v stay one tensor and the op rotates them itself; separate: rotary on the 3-D projections.
    assert (attributes.get("do_rotary") == 1) == packed and (ops["RotaryEmbedding"] == (0 if packed else 2))
    ir.save(model, tmp_path / f"{name}.onnx")
    for what, feeds, queries, keys in _attention_cases():
        before, after = _run(GRAPHS / f"{name}.onnx", feeds), _run(tmp_path / f"{name}.onnx", feeds)
        for index, (expected, actual) in enumerate(zip(before, after, strict=True)):
            assert actual.shape == expected.shape, (what, index)
            for row in range(len(queries)):
                # attn_out [b, s, hidden]: the row's real queries; present [b, kv_heads, T, d]: its real keys.
                valid = (slice(None, queries[row]),) if index == 0 else (slice(None), slice(None, keys[row]))
                error = max_abs_rel(actual[row][valid], expected[row][valid])[0]
                assert error <= 1e-5, (what, index, row, error)


@pytest.mark.parametrize(("name", "packed"), [("attention_packed", True), ("attention_separate_sliding", False)])
def test_own_gqa_takes_packed_nodes_and_their_body_is_onnxruntimes_op(name: str, packed: bool, tmp_path: Path) -> None:
    """own_gqa (ort-kernels) moves the packed fp32 GroupQueryAttention into our domain with its attributes; the
    attached function body lets stock ONNX Runtime (no library registered) run the graph to the same outputs.
    Separate q/k/v stay com.microsoft's: our decode kernel reads packed rows only."""
    import onnx_ir as ir

    from awq2trt.ir import attention_op

    register_ort_schemas()
    config = {**ATTENTION_CONFIG, **({} if packed else {"sliding_window": 3})}
    fused = _load(name)
    run_passes(fused, "ort", enabled=["fuse_rotary", "fuse_gqa"], config=config)
    ir.save(fused, tmp_path / "fused.onnx")
    model = _load(name)
    counts = run_passes(model, "ort-kernels", enabled=["fuse_rotary", "fuse_gqa", "own_gqa"], config=config)
    assert counts["own_gqa"] == int(packed)
    gqa = next(n for n in model.graph if n.op_type == "GroupQueryAttention")
    assert gqa.domain == ("awq2trt" if packed else "com.microsoft")
    assert attention_op.attach_functions(model) == int(packed)
    if not packed:
        return
    reference = next(n for n in fused.graph if n.op_type == "GroupQueryAttention")
    assert {k: a.value for k, a in gqa.attributes.items()} == {k: a.value for k, a in reference.attributes.items()}
    assert gqa.overload == "attributes_0" and [f.name for f in model.functions.values()] == ["GroupQueryAttention"]
    ir.save(model, tmp_path / "own.onnx")
    for what, feeds, _, _ in _attention_cases():
        for expected, actual in zip(
            _run(tmp_path / "fused.onnx", feeds), _run(tmp_path / "own.onnx", feeds), strict=True
        ):
            np.testing.assert_array_equal(actual, expected, err_msg=what)


def test_attention_functions_refuse_an_overload_shared_by_other_attributes() -> None:
    from awq2trt.ir import attention_op

    register_ort_schemas()
    model = _load("attention_packed")
    run_passes(model, "ort-kernels", enabled=["fuse_rotary", "fuse_gqa", "own_gqa"], config=ATTENTION_CONFIG)
    import onnx_ir as ir

    # The graph has one layer: a second node naming the first's overload with other attributes makes the clash.
    gqa = next(n for n in model.graph if n.op_type == "GroupQueryAttention")
    clone = ir.Node(
        "awq2trt",
        "GroupQueryAttention",
        list(gqa.inputs),
        attributes=[ir.AttrInt64("num_heads", 4)],
        num_outputs=3,
        overload=gqa.overload,
        name="other",
    )
    model.graph.append(clone)
    with pytest.raises(ValueError, match="overload 'attributes_0' is shared with"):
        attention_op.attach_functions(model)


def test_attention_without_a_cache_is_left_alone() -> None:
    """No past/present Concat: nothing says the runtime keeps a cache, so no GroupQueryAttention."""
    register_ort_schemas()
    model = _load("attention_without_cache")
    counts = run_passes(model, "ort", enabled=["fuse_rotary", "fuse_gqa"], config=ATTENTION_CONFIG)
    assert counts == {"fuse_rotary": 2, "fuse_gqa": 0}
    assert _ops(model)["Softmax"] == 1 and not _ops(model)["GroupQueryAttention"]


def test_no_mapping_means_no_int4_fusion(tmp_path: Path) -> None:
    model = _load("qkv_zero_points")
    with pytest.warns(UserWarning, match="no fusion mapping for model type 'gpt_bigcode'"):
        counts = run_passes(model, "ir", config={"model_type": "gpt_bigcode"})
    assert counts["fuse_qkv"] == 0 and _ops(model)["Int4MatMul"] == 3


def test_passes_keep_weights_lazy(tmp_path: Path) -> None:
    """Fusing reads no weight: the concatenation runs when the model is saved, once per tensor."""
    import onnx_ir as ir

    model = _load("qkv_zero_points")
    reads: Counter = Counter()
    for value in model.graph.initializers.values():
        tensor = value.const_value

        def read(tensor: Any = tensor, name: str = value.name) -> Any:
            reads[name] += 1
            return ir.Tensor(tensor.numpy(), name=name)

        value.const_value = ir.LazyTensor(read, tensor.dtype, tensor.shape, name=value.name)
    run_passes(model, "ir", enabled=["fuse_qkv"], mapping=LLAMA)
    assert not reads
    ir.save(model, tmp_path / "lazy.onnx")
    assert set(reads.values()) == {1} and len(reads) == 9  # q/k/v x codes, scales, zero points
    before, after = _run(GRAPHS / "qkv_zero_points.onnx", _feeds()), _run(tmp_path / "lazy.onnx", _feeds())
    for expected, actual in zip(before, after, strict=True):
        np.testing.assert_array_equal(actual, expected)


# --- mappings ------------------------------------------------------------------------------------------


def test_mapping_sources(tmp_path: Path) -> None:
    assert resolve_mapping({"model_type": "qwen2"}).members("qkv_proj") == ("q_proj", "k_proj", "v_proj")
    modules_to_fuse = {
        "attention": ["wq", "wk", "wv", "wo"],
        "mlp": ["w1", "w3", "w2"],
        "layernorm": ["attention_norm", "ffn_norm", "norm"],
        "use_alibi": False,
    }
    config = {"model_type": "custom", "quantization_config": {"modules_to_fuse": modules_to_fuse}}
    mapping = resolve_mapping(config)
    assert mapping.groups == {"qkv_proj": ("wq", "wk", "wv"), "gate_up_proj": ("w1", "w3")}
    user = tmp_path / "mapping.json"
    user.write_text(json.dumps({"custom": {"qkv_proj": ["a", "b", "c"]}}))
    assert resolve_mapping(config, user).groups == {"qkv_proj": ("a", "b", "c")}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "valid JSON"),
        (json.dumps({"other_type": {"qkv_proj": ["a", "b"]}}), "an entry for model type 'custom'"),
        (json.dumps({"qkv_proj": ["a"]}), "at least 2 module leaf names"),
        (json.dumps({"qkv_proj": ["a", "a"]}), "distinct"),
        (json.dumps({"o_proj": ["a", "b"]}), "groups 'qkv_proj'"),
        (json.dumps(["q_proj"]), "a JSON object"),
    ],
)
def test_bad_mapping_file(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "mapping.json"
    path.write_text(content)
    with pytest.raises(Awq2TrtError, match=match) as error:
        resolve_mapping({"model_type": "custom"}, path)
    assert "\n" not in str(error.value)


# --- the pass manager ----------------------------------------------------------------------------------


def test_manager_lists_in_declared_order() -> None:
    assert DEFAULT_PASSES.names() == [
        "fuse_qkv",
        "fuse_gate_up",
        "fuse_silu_mul",
        "fuse_rmsnorm",
        "fuse_skip_rmsnorm",
        "fuse_rotary",
        "fuse_gqa",
        "own_gqa",
        "cleanup",
    ]
    assert DEFAULT_PASSES.names("ir") == ["fuse_qkv", "fuse_gate_up", "cleanup"]
    ours = ("fuse_silu_mul", "own_gqa")  # only our library computes the epilogue and runs our attention op
    assert DEFAULT_PASSES.names("ort") == [n for n in DEFAULT_PASSES.names() if n not in ours]
    assert DEFAULT_PASSES.names("ort-kernels") == DEFAULT_PASSES.names()
    assert len(DEFAULT_PASSES.describe().splitlines()) == 9


def test_targets_declare_their_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new target is one class plus one registration: the manager, --list-passes and --target follow it."""
    from awq2trt.targets import registry
    from awq2trt.targets.base import ExportOptions, Target

    class NormsOnly(Target):
        name = "norms-only"
        description = "a target that runs only the norm fusions"
        passes = ("fuse_rmsnorm", "fuse_skip_rmsnorm")

        def lower(self, model: Any, options: ExportOptions) -> int:
            return 0

    monkeypatch.setattr(registry, "_TARGETS", dict(registry._TARGETS))
    registry.register(NormsOnly())
    assert registry.target_names() == ("ir", "ort", "ort-kernels", "trt", "trt-plugin", "norms-only")
    assert DEFAULT_PASSES.names("norms-only") == ["fuse_rmsnorm", "fuse_skip_rmsnorm"]
    listing = {line.split()[0]: line.split()[1] for line in DEFAULT_PASSES.describe().splitlines()}
    assert listing["fuse_rmsnorm"] == "[ort,ort-kernels,norms-only]"
    assert listing["fuse_qkv"] == "[ir,ort,ort-kernels,trt,trt-plugin]"
    with pytest.raises(
        Awq2TrtError, match="passes for target norms-only, got fuse_qkv \\(ir,ort,ort-kernels,trt,trt-plugin\\)"
    ):
        DEFAULT_PASSES.select("norms-only", ["fuse_qkv"])

    class Broken(NormsOnly):
        name = "broken"
        passes = ("fuse_everything",)

    registry.register(Broken())
    with pytest.raises(ValueError, match="unknown passes"):
        DEFAULT_PASSES.select("broken")


def test_manager_enables_and_disables() -> None:
    def names(**kwargs: Any) -> list[str]:
        return [p.name for p in DEFAULT_PASSES.select("ort", **kwargs)]

    assert names(enabled=["cleanup", "fuse_qkv"]) == ["fuse_qkv", "cleanup"]  # declared order, not given
    assert names(disabled=["fuse_rotary", "fuse_gqa", "cleanup"]) == [
        "fuse_qkv",
        "fuse_gate_up",
        "fuse_rmsnorm",
        "fuse_skip_rmsnorm",
    ]
    assert names(enabled=[]) == []
    model = _load("gate_up")
    assert run_passes(model, "ir", disabled=["fuse_gate_up"], mapping=LLAMA) == {"fuse_qkv": 0, "cleanup": 0}
    assert parse_pass_list("fuse_qkv, cleanup") == ["fuse_qkv", "cleanup"] and parse_pass_list("") is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"enabled": ["fuse_everything"]}, "--passes: expected one of fuse_qkv"),
        ({"disabled": ["nope"]}, "got nope"),
        ({"enabled": ["fuse_rmsnorm"]}, "passes for target ir, got fuse_rmsnorm \\(ort,ort-kernels\\)"),
    ],
)
def test_manager_bad_names(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(Awq2TrtError, match=match):
        run_passes(_load("gate_up"), "ir", mapping=LLAMA, **kwargs)


def test_bad_target() -> None:
    with pytest.raises(
        Awq2TrtError, match="--target: expected ir or ort or ort-kernels or trt or trt-plugin, got tensorrt"
    ):
        run_passes(_load("gate_up"), "tensorrt")
    with pytest.raises(Awq2TrtError):
        parse_pass_list("a,,b")


# --- end to end on the fixtures ------------------------------------------------------------------------

E2E = ["llama-gemm-g64", "qwen2-gemm-g128", "llama-ct-g128"]  # zero points; q/k/v bias; symmetric


@pytest.fixture(scope="module")
def exported_ir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from awq2trt.frontend.export import export_checkpoint

    base = tmp_path_factory.mktemp("passes-ir")
    return {
        name: export_checkpoint(fixture_path(name), base / name, target="ir", passes=[], progress=False).output
        for name in E2E
    }


def _lowered_copy(
    source: Path, dest: Path, target: str, passes: bool, disabled: tuple[str, ...] = ()
) -> tuple[Path, dict[str, int]]:
    """Load an exported IR folder, optionally run the passes, lower for *target* (exact level), save."""
    import onnx_ir as ir

    from awq2trt.targets.ort import lower_to_ort

    model = ir.load(source / "model.onnx")
    config = json.loads((fixture_path(source.name) / "config.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a built-in architecture needs no warning
        counts = run_passes(model, target, disabled=disabled, config=config) if passes else {}
    if target == "ort":
        lower_to_ort(model, accuracy_level=0)
    dest.mkdir(parents=True)
    ir.save(model, dest / "model.onnx", external_data="model.onnx.data")
    shutil.copyfile(source / "awq2trt.json", dest / "awq2trt.json")
    return dest, counts


@pytest.mark.parametrize("name", E2E)
def test_fixture_logits_and_greedy_ids(name: str, exported_ir: dict[str, Path], tmp_path: Path) -> None:
    import onnx

    register_ort_schemas()
    plain, _ = _lowered_copy(exported_ir[name], tmp_path / "plain", "ort", passes=False)
    fused, counts = _lowered_copy(exported_ir[name], tmp_path / "fused", "ort", passes=True)
    layers = IrSession(plain).layers
    assert counts["fuse_qkv"] == counts["fuse_gate_up"] == layers
    assert counts["fuse_rmsnorm"] == 2 * layers + 1 and counts["fuse_skip_rmsnorm"] == 2 * layers
    assert counts["fuse_rotary"] == 2 * layers and counts["fuse_gqa"] == layers
    onnx.checker.check_model(str(fused / "model.onnx"), full_check=True)
    ids = np.array([[1, 15043, 29892, 590, 1024, 338, 42, 7, 99, 3]], np.int64) % IrSession(plain).sidecar["vocab_size"]
    plain_ids, plain_logits = IrSession(plain).greedy(ids, 16)
    fused_ids, fused_logits = IrSession(fused).greedy(ids, 16)
    np.testing.assert_array_equal(fused_ids, plain_ids)
    # Exact accuracy level: measured at most 6.6e-7 over the 17 steps (fp32 rounding of the fused kernels).
    assert max(max_abs_rel(f, p)[0] for f, p in zip(fused_logits, plain_logits, strict=True)) <= 1e-5
    # The portable graph with its fused Int4MatMuls (function bodies) is bit-for-bit the unfused one.
    if name == E2E[0]:
        ir_fused, _ = _lowered_copy(exported_ir[name], tmp_path / "ir", "ir", passes=True)
        reference_ids, reference_logits = IrSession(exported_ir[name]).greedy(ids, 4)
        ir_ids, ir_logits = IrSession(ir_fused).greedy(ids, 4)
        np.testing.assert_array_equal(ir_ids, reference_ids)
        assert max(max_abs_rel(f, p)[0] for f, p in zip(ir_logits, reference_logits, strict=True)) <= 1e-6


def test_unconverted_rotary_is_inlined_back(exported_ir: dict[str, Path], tmp_path: Path) -> None:
    """If the cos/sin cache step cannot convert a matched rotary, the graph gets the standard ops back."""
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions.rotary_embedding import fuse_rotary_embedding

    from awq2trt.passes.rotary import FUSION_DOMAIN, _inline_leftovers

    source = exported_ir[E2E[0]]
    model = ir.load(source / "model.onnx")
    assert fuse_rotary_embedding(model) > 0
    _inline_leftovers(model)
    assert not [n for n in model.graph if n.domain == FUSION_DOMAIN]
    assert [k for k in model.functions if k[0] == "awq2trt"]  # the Int4MatMul bodies stay
    (tmp_path / "out").mkdir()
    ir.save(model, tmp_path / "out" / "model.onnx", external_data="model.onnx.data")
    shutil.copyfile(source / "awq2trt.json", tmp_path / "out" / "awq2trt.json")
    ids = np.array([[1, 5, 9, 23, 42]], np.int64)
    expected, actual = IrSession(source).prefill(ids)[0], IrSession(tmp_path / "out").prefill(ids)[0]
    assert max_abs_rel(actual, expected)[0] <= 1e-5


@pytest.mark.parametrize(
    ("disabled", "expected_gqa"),
    [(("fuse_qkv",), "unpacked"), (("fuse_rotary",), "none")],
)
def test_gqa_forms(disabled: tuple[str, ...], expected_gqa: str, exported_ir: dict[str, Path], tmp_path: Path) -> None:
    """Without the fused q/k/v, GroupQueryAttention takes q, k, v apart (rotary on the 3-D projections);
    without the rotary fusion the attention pattern is not there and the graph is left as it was."""
    name = E2E[1]  # Qwen2: q/k/v biases, two kv heads
    plain, _ = _lowered_copy(exported_ir[name], tmp_path / "plain", "ort", passes=False)
    fused, counts = _lowered_copy(exported_ir[name], tmp_path / "fused", "ort", passes=True, disabled=disabled)
    layers = IrSession(plain).layers
    gqa = [n for n in _load_folder(fused).graph if n.op_type == "GroupQueryAttention"]
    if expected_gqa == "none":
        assert counts["fuse_gqa"] == 0 and not gqa
    else:
        assert counts["fuse_gqa"] == layers and len(gqa) == layers
        assert all(n.inputs[1] is not None and n.inputs[2] is not None for n in gqa)  # separate q, k, v
        assert sum(n.op_type == "RotaryEmbedding" for n in _load_folder(fused).graph) == 2 * layers
    ids = np.array([[3, 14, 15, 92, 65, 35, 89, 79, 32, 38]], np.int64)
    plain_ids, plain_logits = IrSession(plain).greedy(ids, 12)
    fused_ids, fused_logits = IrSession(fused).greedy(ids, 12)
    np.testing.assert_array_equal(fused_ids, plain_ids)
    # measured at most 6.0e-7 over the 13 steps
    assert max(max_abs_rel(f, p)[0] for f, p in zip(fused_logits, plain_logits, strict=True)) <= 1e-5


def _load_folder(folder: Path) -> Any:
    import onnx_ir as ir

    return ir.load(folder / "model.onnx")
