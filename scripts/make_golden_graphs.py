"""Regenerate the small golden graphs in ``graphs/`` that the pass tests rewrite (one per pattern).

Each graph is a standalone ONNX model (opset 21, weights inline, Int4MatMul function bodies attached, so
stock ONNX Runtime runs it) whose tensor names follow the exported graphs' module paths
(``model.layers.0.self_attn.q_proj.qweight``), which is what the fusion mappings match on.

    python scripts/make_golden_graphs.py            # writes graphs/*.onnx
    python scripts/make_golden_graphs.py --check    # exit 1 if a checked-in file differs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from awq2trt.ir import int4_op

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ROOT / "graphs"
OPSET = 21
HIDDEN = 64
ATTN = "model.layers.0.self_attn"
MLP = "model.layers.0.mlp"


class _Builder:
    """Collects nodes and initializers for one tiny graph; weights come from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.overloads: set[tuple[bool, bool]] = set()

    def constant(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def int4_linear(
        self,
        x: str,
        module: str,
        n: int,
        k: int = HIDDEN,
        *,
        group: int = 32,
        zero_points: bool = True,
        bias: bool = False,
    ) -> str:
        """An Int4MatMul with random codes, fp32 scales, optional zero points and bias; returns its output."""
        codes = self.rng.integers(0, 16, size=(n, k), dtype=np.uint8)
        inputs = [x, self.constant(f"{module}.qweight", (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8))]
        scales = self.rng.uniform(0.002, 0.02, size=(n, k // group)).astype(np.float32)
        inputs.append(self.constant(f"{module}.scales", scales))
        zeros = self.rng.integers(0, 16, size=(n, k // group), dtype=np.uint8)
        inputs.append(self.constant(f"{module}.zeros", zeros) if zero_points else "")
        if bias:
            inputs.append(self.constant(f"{module}.bias", self.rng.normal(0, 0.1, size=n).astype(np.float32)))
        while inputs[-1] == "":
            inputs.pop()
        out = f"{module}.out"
        node = helper.make_node(
            int4_op.OP_TYPE, inputs, [out], domain=int4_op.DOMAIN, K=k, N=n, bits=4, block_size=group
        )
        node.overload = int4_op.overload_name(zero_points, bias)
        self.overloads.add((zero_points, bias))
        self.nodes.append(node)
        return out

    def op(self, op_type: str, inputs: list[str], output: str, **attributes: object) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attributes))
        return output

    def model(self, name: str, inputs: list[str], outputs: list[str]) -> onnx.ModelProto:
        """A graph of [batch, seq, HIDDEN] float inputs and [batch, seq, *] float outputs."""
        shape = ["batch", "seq", HIDDEN]
        return self.model_io(
            name,
            [helper.make_tensor_value_info(i, TensorProto.FLOAT, shape) for i in inputs],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["batch", "seq", f"{o}_width"]) for o in outputs],
        )

    def model_io(
        self, name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]
    ) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        opsets = [helper.make_opsetid("", OPSET)]
        functions = [int4_op.make_function(zp, bias) for zp, bias in sorted(self.overloads)]
        if functions:
            opsets.append(helper.make_opsetid(int4_op.DOMAIN, int4_op.DOMAIN_VERSION))
        model = helper.make_model(graph, opset_imports=opsets, functions=functions, producer_name="awq2trt")
        model.ir_version = 10  # function overloads
        # Typed intermediate values, as in an exported graph (the norm fusions check dtypes and ranks).
        return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _qkv(name: str, seed: int, *, zero_points: bool, bias: bool) -> onnx.ModelProto:
    b = _Builder(seed)
    outs = [
        b.op("Neg", [b.int4_linear("x", f"{ATTN}.{p}", n, zero_points=zero_points, bias=bias)], p)
        for p, n in (("q_proj", 64), ("k_proj", 32), ("v_proj", 32))
    ]
    return b.model(name, ["x"], outs)


def _gate_up(name: str, seed: int) -> onnx.ModelProto:
    b = _Builder(seed)
    gate = b.int4_linear("x", f"{MLP}.gate_proj", 128)
    up = b.int4_linear("x", f"{MLP}.up_proj", 128)
    act = b.op("Mul", [gate, b.op("Sigmoid", [gate], "gate_sigmoid")], "silu")
    product = b.op("Mul", [act, up], "product")
    return b.model(name, ["x"], [b.int4_linear(product, f"{MLP}.down_proj", HIDDEN, k=128)])


def _rmsnorm_residual(name: str, seed: int) -> onnx.ModelProto:
    """residual = x + skip; y = weight * residual / sqrt(mean(residual^2) + eps), as torch traces RMSNorm."""
    b = _Builder(seed)
    weight = b.constant(
        "model.layers.0.post_attention_layernorm.weight", b.rng.uniform(0.5, 1.5, HIDDEN).astype(np.float32)
    )
    residual = b.op("Add", ["x", "skip"], "residual")
    square = b.op("Pow", [residual, b.constant("two", np.float32(2.0))], "square")
    mean = b.op(
        "ReduceMean",
        [square, b.constant("last_axis", np.array([-1], np.int64))],
        "mean",
        keepdims=1,
        noop_with_empty_axes=0,
    )
    var = b.op("Add", [mean, b.constant("eps", np.float32(1e-5))], "mean_eps")
    inv = b.op("Reciprocal", [b.op("Sqrt", [var], "rms")], "inv_rms")
    y = b.op("Mul", [weight, b.op("Mul", [residual, inv], "normalized")], "y")
    return b.model(name, ["x", "skip"], [y, residual])


def _qkv_different_inputs(name: str, seed: int) -> onnx.ModelProto:
    """Not fusable: v reads another activation than q and k."""
    b = _Builder(seed)
    outs = [
        b.op("Neg", [b.int4_linear(src, f"{ATTN}.{p}", n)], p)
        for p, n, src in (("q_proj", 64, "x"), ("k_proj", 32, "x"), ("v_proj", 32, "x2"))
    ]
    return b.model(name, ["x", "x2"], outs)


def _qkv_mixed_block_sizes(name: str, seed: int) -> onnx.ModelProto:
    """Not fusable: k uses another group size."""
    b = _Builder(seed)
    outs = [
        b.op("Neg", [b.int4_linear("x", f"{ATTN}.{p}", n, group=g)], p)
        for p, n, g in (("q_proj", 64, 32), ("k_proj", 32, 16), ("v_proj", 32, 32))
    ]
    return b.model(name, ["x"], outs)


# --- rotary and attention, as torch.onnx traces a Llama layer ------------------------------------------------
# Small enough to check in: 2 query heads sharing 1 KV head (grouped-query), head_dim 16 (GroupQueryAttention's
# rotary wants a multiple of 16).  Golden-graph configs for the passes: tests/test_passes.py ATTENTION_CONFIG.
HEADS, KV_HEADS, HEAD_DIM = 2, 1, 16
ATTN_HIDDEN = HEADS * HEAD_DIM
ROPE_THETA = 10000.0


def _value(name: str, dtype: int, shape: list[object]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _cos_sin(b: _Builder, positions: str) -> tuple[str, str]:
    """cos and sin [batch, 1, seq, head_dim] of the positions, as transformers' rotary module computes them."""
    inv_freq = 1.0 / ROPE_THETA ** (np.arange(0, HEAD_DIM, 2, dtype=np.float32) / HEAD_DIM)
    table = b.constant("model.rotary_emb.inv_freq", inv_freq.astype(np.float32))
    unsqueezed = b.op("Unsqueeze", [positions, b.constant("axis_last", np.array([-1], np.int64))], "positions_3d")
    angles = b.op("Mul", [b.op("Cast", [unsqueezed], "positions_float", to=TensorProto.FLOAT), table], "freqs")
    emb = b.op("Concat", [angles, angles], "emb", axis=-1)
    axis_heads = b.constant("axis_heads", np.array([1], np.int64))
    scaling = b.constant("attention_scaling", np.float32(1.0))
    cos = b.op("Unsqueeze", [b.op("Mul", [b.op("Cos", [emb], "cos_raw"), scaling], "cos"), axis_heads], "cos_4d")
    sin = b.op("Unsqueeze", [b.op("Mul", [b.op("Sin", [emb], "sin_raw"), scaling], "sin"), axis_heads], "sin_4d")
    return cos, sin


def _rotate(b: _Builder, x: str, cos: str, sin: str, prefix: str, *, half_first: bool = True) -> str:
    """x * cos + rotate_half(x) * sin on [batch, heads, seq, head_dim]; ``half_first=False`` breaks the pattern."""
    axes, steps = b.constant(f"{prefix}.axes", np.array([3], np.int64)), b.constant(f"{prefix}.steps", np.array([1]))
    half, end = b.constant(f"{prefix}.half", np.array([HEAD_DIM // 2])), b.constant(f"{prefix}.end", np.array([2**62]))
    zero = b.constant(f"{prefix}.zero", np.array([0]))
    x1 = b.op("Slice", [x, zero, half, axes, steps], f"{prefix}.x1")
    x2 = b.op("Slice", [x, half, end, axes, steps], f"{prefix}.x2")
    neg = b.op("Neg", [x2], f"{prefix}.neg_x2")
    pieces = [neg, x1] if half_first else [x1, neg]  # (x1, -x2) is not a rotation of pairs (i, i + d/2)
    rotated = b.op("Concat", pieces, f"{prefix}.rotate_half", axis=-1)
    return b.op(
        "Add",
        [b.op("Mul", [x, cos], f"{prefix}.x_cos"), b.op("Mul", [rotated, sin], f"{prefix}.rot_sin")],
        f"{prefix}.rotated",
    )


def _rotary(name: str, seed: int, *, half_first: bool = True) -> onnx.ModelProto:
    b = _Builder(seed)
    cos, sin = _cos_sin(b, "position_ids")
    out = _rotate(b, "x", cos, sin, "model.layers.0.self_attn.q_rotary", half_first=half_first)
    return b.model_io(
        name,
        [
            _value("x", TensorProto.FLOAT, ["batch", HEADS, "seq", HEAD_DIM]),
            _value("position_ids", TensorProto.INT64, ["batch", "seq"]),
        ],
        [_value(out, TensorProto.FLOAT, ["batch", HEADS, "seq", HEAD_DIM])],
    )


def _heads(b: _Builder, x: str, heads: int, prefix: str) -> str:
    """[batch, seq, heads * head_dim] -> [batch, heads, seq, head_dim]."""
    shape = b.constant(f"{prefix}.shape", np.array([0, 0, heads, HEAD_DIM], np.int64))
    return b.op("Transpose", [b.op("Reshape", [x, shape], f"{prefix}.4d")], f"{prefix}.bnsh", perm=[0, 2, 1, 3])


def _repeat_kv(b: _Builder, x: str, prefix: str) -> str:
    """[batch, kv_heads, T, d] -> [batch, heads, T, d] by Expand, as transformers' repeat_kv traces."""
    unsqueezed = b.op("Unsqueeze", [x, b.constant(f"{prefix}.axis2", np.array([2], np.int64))], f"{prefix}.5d")
    ones = b.constant(f"{prefix}.expand", np.array([1, 1, HEADS // KV_HEADS, 1, 1], np.int64))
    expanded = b.op("Expand", [unsqueezed, ones], f"{prefix}.expanded")
    shape = b.constant(f"{prefix}.shape", np.array([0, HEADS, -1, HEAD_DIM], np.int64))
    return b.op("Reshape", [expanded, shape], f"{prefix}.repeated")


def _additive_mask(b: _Builder, window: int | None) -> str:
    """[batch, 1, seq, total]: 0 where key j is visible to the query at position p (j <= p, attention_mask[j]
    set, and p - j < window when sliding), the float32 minimum elsewhere."""
    total = b.op("Gather", [b.op("Shape", ["attention_mask"], "mask_shape"), b.constant("one", np.array(1))], "total")
    keys = b.op("Range", [b.constant("zero_i64", np.array(0)), total, b.constant("step", np.array(1))], "key_ids")
    queries = b.op("Unsqueeze", ["position_ids", b.constant("axes_13", np.array([1, 3]))], "query_ids")
    visible = b.op("LessOrEqual", [keys, queries], "causal")
    if window is not None:
        near = b.op("Less", [b.op("Sub", [queries, keys], "distance"), b.constant("window", np.array(window))], "near")
        visible = b.op("And", [visible, near], "windowed")
    padding = b.op("Unsqueeze", ["attention_mask", b.constant("axes_12", np.array([1, 2]))], "mask_4d")
    visible = b.op("And", [visible, b.op("Cast", [padding], "mask_bool", to=TensorProto.BOOL)], "visible")
    blocked = b.constant("blocked", np.float32(np.finfo(np.float32).min))
    return b.op("Where", [visible, b.constant("open", np.float32(0.0)), blocked], "additive_mask")


def _attention(name: str, seed: int, *, packed: bool, window: int | None = None, cache: bool = True) -> onnx.ModelProto:
    """One Llama attention layer with a KV cache: projections, rotary, Concat with the past, repeat_kv,
    scaled scores plus an additive causal/padding mask, Softmax, o_proj.  ``packed``: q, k and v are a
    Split of one projection (what fuse_qkv leaves); ``cache=False`` drops past/present (not fusable)."""
    b = _Builder(seed)
    kv_width = KV_HEADS * HEAD_DIM
    widths = {"q": ATTN_HIDDEN, "k": kv_width, "v": kv_width}

    def weight(n: int, module: str) -> str:
        return b.constant(f"{module}.weight", b.rng.normal(0, 0.3, size=(ATTN_HIDDEN, n)).astype(np.float32))

    if packed:
        qkv = b.op("MatMul", ["x", weight(ATTN_HIDDEN + 2 * kv_width, f"{ATTN}.qkv_proj")], f"{ATTN}.qkv_proj.out")
        sizes = b.constant(f"{ATTN}.qkv_proj.split_sizes", np.array(list(widths.values()), np.int64))
        split = helper.make_node("Split", [qkv, sizes], [f"{p}_proj" for p in widths], axis=-1)
        b.nodes.append(split)
        projected = {p: f"{p}_proj" for p in widths}
    else:
        projected = {p: b.op("MatMul", ["x", weight(n, f"{ATTN}.{p}_proj")], f"{p}_proj") for p, n in widths.items()}
    cos, sin = _cos_sin(b, "position_ids")
    q = _rotate(b, _heads(b, projected["q"], HEADS, "q"), cos, sin, "q_rotary")
    k = _rotate(b, _heads(b, projected["k"], KV_HEADS, "k"), cos, sin, "k_rotary")
    v = _heads(b, projected["v"], KV_HEADS, "v")
    if cache:
        k = b.op("Concat", ["past_key_values.0.key", k], "present.0.key", axis=2)
        v = b.op("Concat", ["past_key_values.0.value", v], "present.0.value", axis=2)
    keys = b.op("Transpose", [_repeat_kv(b, k, "k_repeat")], "keys_t", perm=[0, 1, 3, 2])
    root_scale = b.constant("root_scale", np.float32(HEAD_DIM**-0.25))  # sdpa scales both sides by sqrt(scale)
    scores = b.op(
        "MatMul", [b.op("Mul", [q, root_scale], "q_scaled"), b.op("Mul", [keys, root_scale], "k_scaled")], "scores"
    )
    probs = b.op("Softmax", [b.op("Add", [scores, _additive_mask(b, window)], "masked")], "probs", axis=-1)
    context = b.op("MatMul", [probs, _repeat_kv(b, v, "v_repeat")], "context")
    merged = b.op("Transpose", [context], "context_bsnh", perm=[0, 2, 1, 3])
    flat = b.op("Reshape", [merged, b.constant("flat_shape", np.array([0, 0, ATTN_HIDDEN], np.int64))], "attn")
    out = b.op("MatMul", [flat, weight(ATTN_HIDDEN, f"{ATTN}.o_proj")], "attn_out")
    kv_shape = ["batch", KV_HEADS, "past", HEAD_DIM]
    inputs = [
        _value("x", TensorProto.FLOAT, ["batch", "seq", ATTN_HIDDEN]),
        _value("attention_mask", TensorProto.INT64, ["batch", "total"]),
        _value("position_ids", TensorProto.INT64, ["batch", "seq"]),
    ]
    outputs = [_value(out, TensorProto.FLOAT, ["batch", "seq", ATTN_HIDDEN])]
    if cache:
        inputs += [_value(f"past_key_values.0.{kind}", TensorProto.FLOAT, kv_shape) for kind in ("key", "value")]
        present_shape = ["batch", KV_HEADS, "total", HEAD_DIM]
        outputs += [_value(f"present.0.{kind}", TensorProto.FLOAT, present_shape) for kind in ("key", "value")]
    return b.model_io(name, inputs, outputs)


def build_all() -> dict[str, onnx.ModelProto]:
    builders = {
        "qkv_zero_points": lambda n: _qkv(n, 1, zero_points=True, bias=False),
        "qkv_bias_symmetric": lambda n: _qkv(n, 2, zero_points=False, bias=True),
        "gate_up": lambda n: _gate_up(n, 3),
        "rmsnorm_residual": lambda n: _rmsnorm_residual(n, 4),
        "qkv_different_inputs": lambda n: _qkv_different_inputs(n, 5),
        "qkv_mixed_block_sizes": lambda n: _qkv_mixed_block_sizes(n, 6),
        "rotary": lambda n: _rotary(n, 7),
        "rotary_not_rotate_half": lambda n: _rotary(n, 8, half_first=False),
        "attention_packed": lambda n: _attention(n, 9, packed=True),
        "attention_separate_sliding": lambda n: _attention(n, 10, packed=False, window=3),
        "attention_without_cache": lambda n: _attention(n, 11, packed=True, cache=False),
    }
    return {name: make(name) for name, make in builders.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with graphs/ instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for name, model in build_all().items():
        onnx.checker.check_model(model, full_check=True)
        path = GRAPHS / f"{name}.onnx"
        data = model.SerializeToString(deterministic=True)
        if args.check:
            if not path.is_file() or path.read_bytes() != data:
                stale.append(path.name)
        else:
            GRAPHS.mkdir(exist_ok=True)
            path.write_bytes(data)
            print(f"{path.relative_to(ROOT)}: {len(data)} bytes")
    if stale:
        print("stale golden graphs (run scripts/make_golden_graphs.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
