"""``awq2trt::int4_matmul``: the one torch operator every `AwqLinear` calls.

Being a registered custom op (not a pile of unpack/sub/mul ops) is what lets the ONNX exporter turn each
quantized Linear into exactly one ``awq2trt::Int4MatMul`` node.  Eagerly it is the plain reference
computation: dequantize in fp32 (exact), then one matmul in the activation dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from awq2trt.quant_weight import SYMMETRIC_ZERO


def unpack_codes_pairs(packed: Tensor, in_features: int) -> Tensor:
    """[N, ceil(K/2)] uint8, even k in the low nibble -> [N, K] uint8 codes."""
    low = packed & 0x0F
    high = packed >> 4
    return torch.stack((low, high), dim=-1).reshape(packed.shape[0], -1)[:, :in_features]


def dequantize(qweight: Tensor, scales: Tensor, zeros: Tensor | None, in_features: int, group_size: int) -> Tensor:
    """The dense [N, K] weight in fp32: (q - z) * s, exact for fp16/bf16/fp32 scales."""
    codes = unpack_codes_pairs(qweight, in_features).float()
    z = zeros.float() if zeros is not None else torch.full_like(scales, SYMMETRIC_ZERO, dtype=torch.float32)
    return (codes - z.repeat_interleave(group_size, dim=1)) * scales.float().repeat_interleave(group_size, dim=1)


@torch.library.custom_op("awq2trt::int4_matmul", mutates_args=())
def int4_matmul(
    x: Tensor,
    qweight: Tensor,
    scales: Tensor,
    zeros: Tensor | None,
    bias: Tensor | None,
    in_features: int,
    group_size: int,
) -> Tensor:
    """y = x @ dequant(qweight, scales, zeros).T + bias; zeros None means symmetric (8)."""
    weight = dequantize(qweight, scales, zeros, in_features, group_size).to(x.dtype)
    return torch.nn.functional.linear(x, weight, None if bias is None else bias.to(x.dtype))


@int4_matmul.register_fake
def _int4_matmul_fake(
    x: Tensor,
    qweight: Tensor,
    scales: Tensor,
    zeros: Tensor | None,
    bias: Tensor | None,
    in_features: int,
    group_size: int,
) -> Tensor:
    return x.new_empty((*x.shape[:-1], qweight.shape[0]))
