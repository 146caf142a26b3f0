"""`AwqLinear`: a Linear whose weight is a `QuantWeight`, computed the simplest exact way.

The codes are kept packed two per byte ([N, ceil(K/2)] uint8, even k in the low nibble) so a loaded model
costs about K*N/2 bytes per Linear, not a dense copy; the dense weight exists only inside `forward`, which
calls the ``awq2trt::int4_matmul`` operator (one ONNX node when exported).  A symmetric weight has no
zero-point buffer (``zeros`` is None, meaning 8 everywhere).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from awq2trt.modeling.int4_op import dequantize, int4_matmul, unpack_codes_pairs
from awq2trt.quant_weight import SYMMETRIC_ZERO, QuantWeight


def pack_codes_pairs(codes: np.ndarray) -> np.ndarray:
    """uint8 codes [N, K] -> [N, ceil(K/2)], code k in the low nibble when k is even."""
    if codes.shape[1] % 2:
        codes = np.pad(codes, ((0, 0), (0, 1)))
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)


class AwqLinear(nn.Module):
    """y = x @ dequant(W).T + b, with W = (q - z) * s per group of ``group_size`` input channels."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        group_size: int,
        *,
        bias: bool = False,
        zero_point: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.group_size = group_size
        groups = in_features // group_size
        self.register_buffer("qweight", torch.zeros(out_features, (in_features + 1) // 2, dtype=torch.uint8))
        self.register_buffer("scales", torch.zeros(out_features, groups, dtype=dtype))
        self.register_buffer("zeros", torch.zeros(out_features, groups, dtype=torch.uint8) if zero_point else None)
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype) if bias else None)
        # Optional dense copy for fast repeated use (eval, generation); never saved, never traced.
        self._dense: torch.Tensor | None = None

    def cache_dense_weight(self, enabled: bool = True) -> None:
        """Keep the dequantized weight between calls (trades memory for speed; same numbers)."""
        self._dense = self.dequantized_weight() if enabled else None

    @classmethod
    def from_quant_weight(
        cls, qw: QuantWeight, bias: np.ndarray | None = None, *, dtype: torch.dtype = torch.float32
    ) -> AwqLinear:
        zero_point = not qw.is_symmetric
        layer = cls(
            qw.in_features, qw.out_features, qw.group_size, bias=bias is not None, zero_point=zero_point, dtype=dtype
        )
        layer.qweight = torch.from_numpy(pack_codes_pairs(qw.qweight))
        # fp16 scales into an fp32 model widen exactly; into fp16 they are kept as stored.
        layer.scales = torch.from_numpy(qw.scales.astype(np.float32)).to(dtype)
        if zero_point:
            layer.zeros = torch.from_numpy(np.ascontiguousarray(qw.zeros))
        if bias is not None:
            layer.bias = torch.from_numpy(bias.astype(np.float32)).to(dtype)
        return layer

    def to_quant_weight(self) -> QuantWeight:
        codes = unpack_codes_pairs(self.qweight, self.in_features).numpy()
        scales = self.scales.float().numpy().astype(np.float16 if self.scales.dtype == torch.float16 else np.float32)
        if self.zeros is None:
            zeros = np.full(scales.shape, SYMMETRIC_ZERO, dtype=np.uint8)
        else:
            zeros = self.zeros.numpy().copy()
        return QuantWeight(codes, scales, zeros, self.group_size)

    def dequantized_weight(self) -> torch.Tensor:
        """The dense [N, K] weight in the layer's dtype; computed in fp32, where (q - z) * s is exact."""
        return dequantize(self.qweight, self.scales, self.zeros, self.in_features, self.group_size).to(
            self.scales.dtype
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dense is not None:
            bias = None if self.bias is None else self.bias.to(x.dtype)
            return nn.functional.linear(x, self._dense.to(x.dtype), bias)
        return int4_matmul(x, self.qweight, self.scales, self.zeros, self.bias, self.in_features, self.group_size)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"group_size={self.group_size}, bias={self.bias is not None}"
        )
