"""The frontend's translation of the ``awq2trt::int4_matmul`` torch op into an ``Int4MatMul`` ONNX node."""

from __future__ import annotations

from typing import Any

from awq2trt.ir.int4_op import DOMAIN, DOMAIN_VERSION, overload_name, register_schema


def translate_int4_matmul(
    x: Any,
    qweight: Any,
    scales: Any,
    zeros: Any = None,
    bias: Any = None,
    in_features: int = 0,
    group_size: int = 0,
) -> Any:
    """onnxscript translation of ``torch.ops.awq2trt.int4_matmul`` for the dynamo exporter."""
    import onnxscript

    register_schema()
    op = onnxscript.values.Opset(DOMAIN, DOMAIN_VERSION)
    out_features = int(scales.shape[0])
    y = op.Int4MatMul(x, qweight, scales, zeros, bias, K=in_features, N=out_features, bits=4, block_size=group_size)
    y.producer().overload = overload_name(zeros is not None, bias is not None)
    return y
