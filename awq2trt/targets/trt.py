"""The ``trt`` target: each ``awq2trt::Int4MatMul`` becomes standard INT4 ``DequantizeLinear`` + ``MatMul``.

TensorRT turns a blocked INT4 ``DequantizeLinear`` (weights [K, N], axis 0, ``block_size`` = G, scales [K/G, N])
feeding a ``MatMul`` into a weight-only int4 GEMM, but its dequantize layer takes only zero-valued zero points
(``IDequantizeLayer`` in the 10.x and 11.x headers; onnx-tensorrt's operator table), while AWQ checkpoints are
asymmetric.  The rewrite here is exact instead of re-quantizing:

    w[n, k] = s[n, g] * (q[n, k] - z[n, g])            with g = k // G
            = s[n, g] * (q[n, k] - 8) + s[n, g] * (8 - z[n, g])

so ``A @ w.T`` = ``A @ dequant(q - 8)`` (signed codes, zero zero-points) + ``groupsum(A) @ C`` with
``groupsum(A)[..., g]`` = the sum of A over group g's G input channels and ``C[g, n] = s[n, g] * (8 - z[n, g])``,
a dense [K/G, N] matrix (1/G of the dense weight's size).  A symmetric node (no zero points: z = 8) needs no
correction.  Bias and the fused q/k/v and gate/up nodes are kept as they are (only N grows).

Every other op of the graph stays standard: the ``trt`` target runs none of ONNX Runtime's fusions.  The same
graph runs in ONNX Runtime on the CPU, which fuses DequantizeLinear + MatMul into MatMulNBits; at
``session.qdq_matmulnbits_accuracy_level`` 0 it equals the IR graph up to float summation order (tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from awq2trt.errors import Awq2TrtError
from awq2trt.ir import int4_op
from awq2trt.ir.graph import int64_initializer, lazy_initializer, take_over
from awq2trt.quant_weight import SYMMETRIC_ZERO
from awq2trt.targets.base import ExportOptions, Target

MIN_OPSET = 21  # blocked DequantizeLinear (block_size) and INT4 tensors


def _unpack_codes(packed: np.ndarray, k: int) -> np.ndarray:
    """uint8 [N, ceil(K/2)], even k in the low nibble -> codes uint8 [N, K]."""
    codes = np.empty((packed.shape[0], packed.shape[1] * 2), np.uint8)
    codes[:, 0::2] = packed & 0x0F
    codes[:, 1::2] = packed >> 4
    return codes[:, :k]


def signed_codes_kn(packed: np.ndarray, k: int) -> np.ndarray:
    """The IR's codes as TensorRT's weights: signed INT4 q - 8, laid out [K, N] (ml_dtypes.int4)."""
    import ml_dtypes

    signed = _unpack_codes(packed, k).astype(np.int8) - SYMMETRIC_ZERO
    return np.ascontiguousarray(signed.T).astype(ml_dtypes.int4)


def zero_correction(scales: np.ndarray, zeros: np.ndarray) -> np.ndarray:
    """C [K/G, N] = s * (8 - z), computed in fp32 and stored in the scales' dtype."""
    correction = scales.astype(np.float32) * (SYMMETRIC_ZERO - zeros.astype(np.float32))
    return np.ascontiguousarray(correction.T).astype(scales.dtype)


def _constant(graph: Any, cache: dict[str, Any], name: str, values: list[int]) -> Any:
    """A small int64 initializer, one per distinct value across the graph."""
    if name not in cache:
        cache[name] = int64_initializer(graph, name, values)
    return cache[name]


def _module_name(codes_name: str) -> str:
    return codes_name.removeprefix("model.").removesuffix(".qweight")


def lower_to_trt(model: Any) -> int:
    """Rewrite every Int4MatMul into DequantizeLinear(INT4) + MatMul (+ the zero-point correction); in place."""
    import onnx_ir as ir

    graph = model.graph
    constants: dict[str, Any] = {}
    count = 0
    for node in int4_op.int4_nodes(graph):
        a, b, scales, zeros, bias = (list(node.inputs) + [None] * 5)[:5]
        k, n = node.attributes["K"].as_int(), node.attributes["N"].as_int()
        block = node.attributes["block_size"].as_int()
        module = _module_name(b.name)
        for value in (b, scales, zeros):
            if value is not None and (not value.is_initializer() or len(value.uses()) != 1):
                raise Awq2TrtError(value.name, expected="a constant used by one matmul only", got="a shared value")
        if k % block or a.shape is None or a.shape.rank() < 2:
            raise Awq2TrtError(
                node.name or module, expected=f"K={k} divisible by G={block}, A of rank >= 2", got=a.shape
            )
        groups = k // block
        float_type = scales.dtype
        codes_source, scales_source = b.const_value, scales.const_value
        weight = lazy_initializer(
            graph,
            f"{module}.weight_int4",
            ir.DataType.INT4,
            (k, n),
            lambda c=codes_source, k=k: signed_codes_kn(c.numpy(), k),
        )
        scales_kn = lazy_initializer(
            graph,
            f"{module}.scales_kn",
            float_type,
            (groups, n),
            lambda s=scales_source: np.ascontiguousarray(s.numpy().T),
        )
        prefix = f"{module}/"
        dequantize = ir.node(
            "DequantizeLinear",
            [weight, scales_kn],
            attributes={"axis": 0, "block_size": block},
            name=prefix + "DequantizeLinear",
        )
        matmul = ir.node("MatMul", [a, dequantize.outputs[0]], name=prefix + "MatMul")
        new_nodes = [dequantize, matmul]
        out = matmul.outputs[0]
        if zeros is not None:
            zeros_source = zeros.const_value
            correction = lazy_initializer(
                graph,
                f"{module}.zero_correction",
                float_type,
                (groups, n),
                lambda s=scales_source, z=zeros_source: zero_correction(s.numpy(), z.numpy()),
            )
            rank = a.shape.rank()
            grouped_shape = _constant(
                graph, constants, f"trt.grouped_shape.{rank}.{groups}x{block}", [0] * (rank - 1) + [groups, block]
            )
            last_axis = _constant(graph, constants, "trt.last_axis", [-1])
            reshape = ir.node("Reshape", [a, grouped_shape], name=prefix + "group/Reshape")
            group_sums = ir.node(
                "ReduceSum",
                [reshape.outputs[0], last_axis],
                attributes={"keepdims": 0},
                name=prefix + "group/ReduceSum",
            )
            correct = ir.node("MatMul", [group_sums.outputs[0], correction], name=prefix + "zero_correction/MatMul")
            add = ir.node("Add", [out, correct.outputs[0]], name=prefix + "zero_correction/Add")
            new_nodes += [reshape, group_sums, correct, add]
            out = add.outputs[0]
        if bias is not None:
            add_bias = ir.node("Add", [out, bias], name=prefix + "bias/Add")
            new_nodes.append(add_bias)
            out = add_bias.outputs[0]
        old = node.outputs[0]
        out.type, out.shape = old.type, old.shape
        graph.insert_before(node, new_nodes)
        take_over(old, out, suffix="int4", graph_outputs=True)
        graph.remove(node, safe=True)
        for value in (b, scales, zeros):
            if value is not None:
                graph.initializers.pop(value.name)
        count += 1
    int4_op.drop_functions(model)
    if model.opset_imports.get("", 0) < MIN_OPSET:
        model.opset_imports[""] = MIN_OPSET
    return count


class TrtTarget(Target):
    """TensorRT: exact INT4 DequantizeLinear + MatMul, every other op standard."""

    name = "trt"
    description = "TensorRT: exact INT4 DequantizeLinear + MatMul (zero points as a correction term), standard ops"
    passes: ClassVar[tuple[str, ...]] = ("fuse_qkv", "fuse_gate_up", "cleanup")
    # TensorRT's weight-only int4 GEMMs take fp16 (or bf16) activations; fp32 stays selectable for checking.
    default_dtype = "fp16"

    def lower(self, model: Any, options: ExportOptions) -> int:
        return lower_to_trt(model)

    def verify(self, model_path: Path) -> None:
        """The ONNX checks, then the parser table of every TensorRT version we target (an export must load in all)."""
        from awq2trt.targets import trt_support  # imports onnx: not at registry import (serving loads no onnx)

        super().verify(model_path)
        trt_support.check_model_file(model_path)
