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

from awq2trt.frontend import int4_onnx

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
            int4_onnx.OP_TYPE, inputs, [out], domain=int4_onnx.DOMAIN, K=k, N=n, bits=4, block_size=group
        )
        node.overload = int4_onnx.overload_name(zero_points, bias)
        self.overloads.add((zero_points, bias))
        self.nodes.append(node)
        return out

    def op(self, op_type: str, inputs: list[str], output: str, **attributes: object) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attributes))
        return output

    def model(self, name: str, inputs: list[str], outputs: list[str]) -> onnx.ModelProto:
        shape = ["batch", "seq", HIDDEN]
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info(i, TensorProto.FLOAT, shape) for i in inputs],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["batch", "seq", f"{o}_width"]) for o in outputs],
            self.initializers,
        )
        opsets = [helper.make_opsetid("", OPSET)]
        functions = [int4_onnx.make_function(zp, bias) for zp, bias in sorted(self.overloads)]
        if functions:
            opsets.append(helper.make_opsetid(int4_onnx.DOMAIN, int4_onnx.DOMAIN_VERSION))
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


def build_all() -> dict[str, onnx.ModelProto]:
    builders = {
        "qkv_zero_points": lambda n: _qkv(n, 1, zero_points=True, bias=False),
        "qkv_bias_symmetric": lambda n: _qkv(n, 2, zero_points=False, bias=True),
        "gate_up": lambda n: _gate_up(n, 3),
        "rmsnorm_residual": lambda n: _rmsnorm_residual(n, 4),
        "qkv_different_inputs": lambda n: _qkv_different_inputs(n, 5),
        "qkv_mixed_block_sizes": lambda n: _qkv_mixed_block_sizes(n, 6),
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
