"""`QuantWeight`: the one canonical form of a group-wise int4 weight.

Every on-disk or in-graph format is a pair of functions to and from this type; no format is ever converted
straight into another.  For a Linear with ``in_features = K``, ``out_features = N`` and group size ``G``:

* ``qweight`` uint8 [N, K], unsigned 4-bit codes 0..15 (one code per byte: cheap to index, easy to check),
* ``scales``  float16 or float32 [N, K // G],
* ``zeros``   uint8 [N, K // G], codes 0..15 (8 everywhere for a symmetric weight),

and the weight is ``w[n, k] = (qweight[n, k] - zeros[n, k // G]) * scales[n, k // G]``.

Scales keep their source precision: fp16 for AutoAWQ and compressed-tensors, fp32 when the source was bf16
(bf16 -> fp32 is exact, bf16 -> fp16 is not).  The product ``(q - z) * s`` is exact in fp32 for fp16 or bf16
scales, which is why `dequantize` computes in fp32 unless asked otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from awq2trt.errors import Awq2TrtError

BITS = 4
MAX_CODE = (1 << BITS) - 1
SYMMETRIC_ZERO = 1 << (BITS - 1)
SCALE_DTYPES = (np.dtype(np.float16), np.dtype(np.float32))


@dataclass(frozen=True, eq=False)
class QuantWeight:
    qweight: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    group_size: int

    @property
    def out_features(self) -> int:
        return int(self.qweight.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.qweight.shape[1])

    @property
    def num_groups(self) -> int:
        return self.in_features // self.group_size

    @property
    def is_symmetric(self) -> bool:
        return bool(np.all(self.zeros == SYMMETRIC_ZERO))

    def validated(self, where: str = "weight") -> QuantWeight:
        """Check shapes, dtypes and value ranges; raise `Awq2TrtError` naming *where* on the first problem."""
        q, s, z, g = self.qweight, self.scales, self.zeros, self.group_size
        if q.ndim != 2 or q.dtype != np.uint8:
            raise Awq2TrtError(where, expected="uint8 codes of shape [N, K]", got=f"{q.dtype} {list(q.shape)}")
        n, k = q.shape
        if not isinstance(g, (int, np.integer)) or g <= 0 or k % g != 0:
            raise Awq2TrtError(where, expected=f"a group size that divides in_features={k}", got=f"group_size={g}")
        groups = k // g
        if s.dtype not in SCALE_DTYPES or s.shape != (n, groups):
            raise Awq2TrtError(
                f"{where} scales",
                expected=f"float16/float32 of shape {[n, groups]}",
                got=f"{s.dtype} {list(s.shape)}",
            )
        if z.dtype != np.uint8 or z.shape != (n, groups):
            raise Awq2TrtError(
                f"{where} zeros", expected=f"uint8 of shape {[n, groups]}", got=f"{z.dtype} {list(z.shape)}"
            )
        if q.size and int(q.max()) > MAX_CODE:
            raise Awq2TrtError(where, expected=f"4-bit codes 0..{MAX_CODE}", got=f"a code {int(q.max())}")
        if z.size and int(z.max()) > MAX_CODE:
            raise Awq2TrtError(f"{where} zeros", expected=f"4-bit codes 0..{MAX_CODE}", got=f"{int(z.max())}")
        if not np.all(np.isfinite(s)):
            bad = int(np.count_nonzero(~np.isfinite(s)))
            raise Awq2TrtError(f"{where} scales", expected="finite values", got=f"{bad} NaN/inf entries")
        return self

    def dequantize(self, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """The dense [N, K] weight, computed in fp32 (exact) and then cast to *dtype*."""
        g = self.group_size
        codes = self.qweight.astype(np.float32)
        zeros = np.repeat(self.zeros.astype(np.float32), g, axis=1)
        scales = np.repeat(self.scales.astype(np.float32), g, axis=1)
        return ((codes - zeros) * scales).astype(dtype, copy=False)

    def equals(self, other: QuantWeight) -> bool:
        """Bit-exact equality of codes, zeros, scales (values and dtype) and group size."""
        return (
            self.group_size == other.group_size
            and self.scales.dtype == other.scales.dtype
            and np.array_equal(self.qweight, other.qweight)
            and np.array_equal(self.zeros, other.zeros)
            and np.array_equal(self.scales.view(np.uint8), other.scales.view(np.uint8))
        )

    @property
    def nbytes_packed(self) -> int:
        """Bytes this weight takes when stored at 4 bits with its scales and zeros (how users count it)."""
        n, k = self.qweight.shape
        zero_bytes = 0 if self.is_symmetric else (self.zeros.size + 1) // 2
        return (n * k + 1) // 2 + self.scales.nbytes + zero_bytes


def pack_nibbles(codes: np.ndarray, order: tuple[int, ...] = tuple(range(8))) -> np.ndarray:
    """Pack 4-bit codes along the last axis into int32 words, 8 per word.

    ``order[i]`` is the position (within each run of 8 codes) that goes into nibble ``i`` (bits 4i..4i+3).
    The last axis is padded with zero codes up to a multiple of 8.
    """
    codes = np.asarray(codes, dtype=np.uint32)
    pad = (-codes.shape[-1]) % 8
    if pad:
        codes = np.concatenate([codes, np.zeros((*codes.shape[:-1], pad), dtype=np.uint32)], axis=-1)
    runs = codes.reshape((*codes.shape[:-1], -1, 8))
    words = np.zeros(runs.shape[:-1], dtype=np.uint32)
    for nibble, position in enumerate(order):
        words |= (runs[..., position] & 0xF) << np.uint32(4 * nibble)
    return words.view(np.int32)


def unpack_nibbles(words: np.ndarray, count: int, order: tuple[int, ...] = tuple(range(8))) -> np.ndarray:
    """Inverse of `pack_nibbles`: int32 words [..., W] -> uint8 codes [..., count] (count <= 8 W)."""
    w = np.asarray(words).view(np.uint32)
    runs = np.empty((*w.shape, 8), dtype=np.uint8)
    for nibble, position in enumerate(order):
        runs[..., position] = (w >> np.uint32(4 * nibble)) & 0xF
    return runs.reshape((*w.shape[:-1], -1))[..., :count]
