"""The ``trt-plugin`` target: each ``awq2trt::Int4MatMul`` becomes one ``AwqGemm`` node that TensorRT's ONNX
parser maps to our plugin (plugins/tensorrt, over the CUDA kernels of plugins/cuda).

The parser imports an op it has no importer for through its plugin fallback: it looks up the plugin creator
named after the node's ``op_type``, at the node's ``plugin_version`` attribute (default "1") and
``plugin_namespace`` attribute (default ""), passes the attributes the creator lists as fields (INT attributes
become int32 fields), and the node's inputs, initializers included, as the plugin's inputs.  A model-local
function of the same name would be inlined instead, so the graph carries none.  The node's domain is ours
(``awq2trt``, with a registered schema so the ONNX checker and strict shape inference type the graph).

Node inputs: A, codes int32 [N_pad * K / 8], scales [K/G, N_pad] (A's dtype), zeros int32 [K/G, N_pad / 4]
(the uint8 zero-point codes, four per int32: TensorRT has no uint8 constants and treats int8 as a quantized
type; present when the Linear has zero points, which stay native: no correction term), bias [N] (when present),
in the layout of `awq2trt.cuda_layout`.  Attributes: K, N, group_size, has_zero_points, has_bias, dtype (0 =
fp16, 1 = bf16), plugin_version "1", plugin_namespace "awq2trt".  TensorRT cannot run here, so the tests check
the node's weights against a numpy dequantization of the IR's (GPU-unverified: the engine itself).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from awq2trt.errors import Awq2TrtError
from awq2trt.ir import int4_op
from awq2trt.ir.graph import lazy_initializer, take_over
from awq2trt.quant_weight import SYMMETRIC_ZERO, QuantWeight
from awq2trt.targets.base import ExportOptions, Target
from awq2trt.targets.trt import MIN_OPSET

if TYPE_CHECKING:
    from awq2trt.cuda_layout import CudaWeight

PLUGIN_OP = "AwqGemm"
PLUGIN_DOMAIN = int4_op.DOMAIN
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "awq2trt"
DTYPE_CODES = {"FLOAT16": 0, "BFLOAT16": 1}


def _unpack(packed: np.ndarray, k: int) -> np.ndarray:
    """The IR's codes uint8 [N, ceil(K/2)], even k in the low nibble -> uint8 [N, K]."""
    codes = np.empty((packed.shape[0], packed.shape[1] * 2), np.uint8)
    codes[:, 0::2] = packed & 0x0F
    codes[:, 1::2] = packed >> 4
    return codes[:, :k]


def ir_quant_weight(packed: np.ndarray, scales: np.ndarray, zeros: np.ndarray | None, k: int, g: int) -> QuantWeight:
    """The IR node's weight as a QuantWeight (bf16 scales widen to fp32, which is exact)."""
    scales = scales if scales.dtype in (np.float16, np.float32) else scales.astype(np.float32)
    if zeros is None:
        zeros = np.full(scales.shape, SYMMETRIC_ZERO, np.uint8)
    return QuantWeight(_unpack(packed, k), scales, zeros.astype(np.uint8), g)


def plugin_weight(node_inputs: dict[str, np.ndarray], n: int, k: int, g: int) -> CudaWeight:
    """The plugin node's constant inputs back as a CudaWeight (tests, tools): codes, scales, zeros (packed)."""
    from awq2trt.cuda_layout import CudaWeight, padded_rows

    zeros = node_inputs.get("zeros")
    if zeros is None:
        zeros = np.full((k // g, padded_rows(n)), SYMMETRIC_ZERO, np.uint8)
    zeros = np.ascontiguousarray(zeros).view(np.uint8).reshape(k // g, padded_rows(n))
    return CudaWeight(node_inputs["codes"], node_inputs["scales"], zeros, n, k, g)


def register_schema() -> None:
    """AwqGemm's ONNX schema (checker, strict shape inference); idempotent."""
    import onnx

    if onnx.defs.has(PLUGIN_OP, PLUGIN_DOMAIN):
        return
    schema = onnx.defs.OpSchema
    formal = schema.FormalParameter
    optional = schema.FormalParameterOption.Optional
    ints = ("K", "N", "group_size", "has_zero_points", "has_bias", "dtype")
    op_schema = schema(
        PLUGIN_OP,
        PLUGIN_DOMAIN,
        1,
        doc="TensorRT plugin awq2trt::AwqGemm (plugins/tensorrt): Y = A @ dequant(W).T (+ bias).",
        inputs=[
            formal("A", "T"),
            formal("codes", "tensor(int32)"),
            formal("scales", "T"),
            formal("zeros_or_bias", "V", param_option=optional),
            formal("bias", "T", param_option=optional),
        ],
        outputs=[formal("Y", "T")],
        type_constraints=[
            ("T", ["tensor(float16)", "tensor(bfloat16)"], "activations, scales, bias"),
            ("V", ["tensor(int32)", "tensor(float16)", "tensor(bfloat16)"], "zeros (int32) or, without them, bias"),
        ],
        attributes=[
            *(schema.Attribute(name, schema.AttrType.INT, name) for name in ints),
            schema.Attribute("plugin_version", schema.AttrType.STRING, "TensorRT plugin version"),
            schema.Attribute("plugin_namespace", schema.AttrType.STRING, "TensorRT plugin namespace"),
        ],
    )
    op_schema.set_type_and_shape_inference_function(int4_op._infer_output)
    onnx.defs.register_schema(op_schema)


class _OneWeight:
    """Computes one Linear's plugin layout once for its three lazy initializers (saved one after another), and
    keeps only the latest, so an export never holds more than one layer's repacked copy."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.value: Any = None

    def get(self, key: str, make: Any) -> Any:
        if self.key != key:
            self.key, self.value = key, make()
        return self.value


def _layout(
    memo: _OneWeight, key: str, b: Any, s: Any, zeros: Any, k: int, g: int, scale_dtype: Any
) -> Callable[[], CudaWeight]:
    """A maker of one Linear's plugin layout from the IR node's constant tensors (run when the model is saved)."""
    from awq2trt.cuda_layout import to_cuda

    def make() -> CudaWeight:
        z = None if zeros is None else zeros.const_value.numpy()
        return to_cuda(ir_quant_weight(b.numpy(), s.numpy(), z, k, g), key, scale_dtype)

    return lambda: memo.get(key, make)


def _module_name(codes_name: str) -> str:
    return codes_name.removeprefix("model.").removesuffix(".qweight")


def lower_to_plugin(model: Any) -> int:
    """Rewrite every Int4MatMul into an AwqGemm plugin node, in place; returns how many."""
    import onnx_ir as ir

    from awq2trt.cuda_layout import check_shape, padded_rows

    graph = model.graph
    memo = _OneWeight()
    count = 0
    for node in int4_op.int4_nodes(graph):
        a, b, scales, zeros, bias = (list(node.inputs) + [None] * 5)[:5]
        k, n = node.attributes["K"].as_int(), node.attributes["N"].as_int()
        g = node.attributes["block_size"].as_int()
        module = _module_name(b.name)
        check_shape(n, k, g, node.name or module)
        for value in (b, scales, zeros):
            if value is not None and (not value.is_initializer() or len(value.uses()) != 1):
                raise Awq2TrtError(value.name, expected="a constant used by one matmul only", got="a shared value")
        float_type = scales.dtype
        if float_type.name not in DTYPE_CODES:
            raise Awq2TrtError(
                "--dtype", expected="fp16 or bf16 with --target trt-plugin (the kernels' types)", got=float_type.name
            )
        scale_np = np.float16 if float_type.name == "FLOAT16" else float_type.numpy()
        groups, n_pad = k // g, padded_rows(n)

        layout = _layout(memo, module, b.const_value, scales.const_value, zeros, k, g, scale_np)
        inputs = [
            a,
            lazy_initializer(
                graph, f"{module}.awq_codes", ir.DataType.INT32, (n_pad * k // 8,), lambda f=layout: f().codes
            ),
            lazy_initializer(graph, f"{module}.awq_scales", float_type, (groups, n_pad), lambda f=layout: f().scales),
        ]
        if zeros is not None:
            inputs.append(
                lazy_initializer(
                    graph, f"{module}.awq_zeros", ir.DataType.INT32, (groups, n_pad // 4),
                    lambda f=layout: f().zeros.view(np.int32),
                )
            )  # fmt: skip
        if bias is not None:
            inputs.append(bias)
        plugin = ir.node(
            PLUGIN_OP,
            inputs,
            attributes={
                "K": k,
                "N": n,
                "group_size": g,
                "has_zero_points": int(zeros is not None),
                "has_bias": int(bias is not None),
                "dtype": DTYPE_CODES[float_type.name],
                "plugin_version": PLUGIN_VERSION,
                "plugin_namespace": PLUGIN_NAMESPACE,
            },
            domain=PLUGIN_DOMAIN,
            name=f"{module}/{PLUGIN_OP}",
        )
        old = node.outputs[0]
        plugin.outputs[0].type, plugin.outputs[0].shape = old.type, old.shape
        graph.insert_before(node, plugin)
        take_over(old, plugin.outputs[0], suffix="int4", graph_outputs=True)
        graph.remove(node, safe=True)
        for value in (b, scales, zeros):
            if value is not None:
                graph.initializers.pop(value.name)
        count += 1
    int4_op.drop_functions(model)  # no function of our domain may remain: the parser would inline it
    model.opset_imports[PLUGIN_DOMAIN] = 1
    if model.opset_imports.get("", 0) < MIN_OPSET:
        model.opset_imports[""] = MIN_OPSET
    return count


class TrtPluginTarget(Target):
    """TensorRT with our CUDA kernels: AwqGemm plugin nodes, every other op standard."""

    name = "trt-plugin"
    description = "TensorRT with awq2trt's CUDA int4 kernels: AwqGemm plugin nodes (build with --plugin-lib)"
    passes: ClassVar[tuple[str, ...]] = ("fuse_qkv", "fuse_gate_up", "cleanup")
    default_dtype = "fp16"  # the kernels take fp16 or bf16 activations

    def lower(self, model: Any, options: ExportOptions) -> int:
        register_schema()
        return lower_to_plugin(model)

    def verify(self, model_path: Path) -> None:
        """The ONNX checks, then the parser tables of every targeted TensorRT with the plugin nodes set aside."""
        import onnx

        from awq2trt.targets import trt_support

        register_schema()
        super().verify(model_path)
        model = onnx.load(str(model_path), load_external_data=False)
        plugin = f"{PLUGIN_DOMAIN}::{PLUGIN_OP}"
        for version in trt_support.versions():
            found = [
                v
                for v in trt_support.violations(model, version, base_dir=model_path.parent)
                if not (v.op_type == PLUGIN_OP and v.got == plugin)
            ]
            if found:
                first = found[0]
                raise Awq2TrtError(
                    f"{model_path.name}: node {first.node!r} ({first.op_type}) for TensorRT {version}",
                    expected=first.expected,
                    got=first.got,
                )
