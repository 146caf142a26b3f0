"""The CPU kernel library's "tiles16" weight layout (plugins/onnxruntime, the ``ort-kernels`` target's
``--weight-layout tiles16``): a pair of functions to and from `QuantWeight`, and the per-tensor maps between the
Int4MatMul node's "rows" tensors and their tiles.

The rows layout (`awq2trt.ir.int4_op`): B uint8 [N, K/2] (byte i of row n holds k = 2i in the low nibble and
k = 2i + 1 in the high one), scales [N, K/G] (the activations' dtype), zero points uint8 [N, K/G] (one code per
byte; absent means 8 everywhere), bias [N].

tiles16 groups 16 consecutive output rows so that the int8 decode kernel reads one contiguous 64-byte chunk per
8 input channels of 16 rows.  With ``T = ceil(N / 16)``, ``N_pad = 16 T`` and ``C = K / 8``:

* codes uint8 [T, C, 16, 4]: ``codes[t, c, r, i] = B[16t + r, 4c + i]``: chunk [t, c] holds k = 8c .. 8c + 7 of
  rows 16t .. 16t + 15, each row's 4 bytes in B's byte order (read as a little-endian uint32, nibble j is
  k = 8c + j: `awq2trt.quant_weight.pack_nibbles`' sequential word);
* scales [T, K/G, 16]: ``scales[t, g, r] = scales_rows[16t + r, g]``; zero points uint8 [T, K/G, 16] likewise;
* the padded rows ``16t + r >= N`` have codes 0, scales 0 and zero points 0, so they compute 0 and a kernel may
  skip them;
* bias is unchanged ([N]), and so are the node's attributes K, N, bits, block_size (and accuracy_level); the node
  says ``weight_layout = "tiles16"``.

Shapes (`check_shape`): K a multiple of G, G >= 16 and a multiple of 8, so that K % 8 == 0 and a chunk of 8
channels never spans two groups.  Every map here is a pure permutation plus zero padding: values and dtypes
(bfloat16 scales included) pass through untouched.
"""

from __future__ import annotations

import numpy as np

from awq2trt.errors import Awq2TrtError
from awq2trt.quant_weight import SYMMETRIC_ZERO, QuantWeight, pack_nibbles, unpack_nibbles

TILE_N = 16  # output rows per tile
CHUNK_K = 8  # input channels per chunk (one little-endian uint32 of codes per row)
CHUNK_BYTES = CHUNK_K // 2
MIN_GROUP = 16


def tiles(n: int) -> int:
    """T = ceil(N / 16)."""
    return -(-n // TILE_N)


def padded_rows(n: int) -> int:
    """N_pad = 16 T."""
    return tiles(n) * TILE_N


def check_shape(n: int, k: int, group_size: int, where: str = "weight") -> None:
    """The layout's shape contract, with one clear message."""
    if n <= 0 or k <= 0 or k % CHUNK_K:
        raise Awq2TrtError(
            where, expected=f"N > 0 and in_features divisible by {CHUNK_K} (tiles16 layout)", got=f"N={n}, K={k}"
        )
    if group_size < MIN_GROUP or group_size % CHUNK_K or k % group_size:
        raise Awq2TrtError(
            where,
            expected=f"a group size >= {MIN_GROUP}, a multiple of {CHUNK_K}, that divides K={k} (tiles16 layout)",
            got=group_size,
        )


def _tile(rows: np.ndarray, n: int, where: str) -> np.ndarray:
    """[N, X, ...] -> [T, X, 16, ...]: rows padded with zeros to N_pad, then row 16t + r moved to [t, :, r]."""
    if rows.ndim < 2 or rows.shape[0] != n:
        raise Awq2TrtError(where, expected=f"[N={n}, ...] (rows layout)", got=list(rows.shape))
    padded = np.zeros((padded_rows(n), *rows.shape[1:]), rows.dtype)
    padded[:n] = rows
    grouped = padded.reshape(tiles(n), TILE_N, *rows.shape[1:])
    return np.ascontiguousarray(np.swapaxes(grouped, 1, 2))


def _untile(tiled: np.ndarray, n: int) -> np.ndarray:
    """[T, X, 16, ...] -> [N, X, ...], dropping the padded rows."""
    rows = np.swapaxes(tiled, 1, 2).reshape(tiled.shape[0] * TILE_N, tiled.shape[1], *tiled.shape[3:])
    return np.ascontiguousarray(rows[:n])


def tile_codes(packed: np.ndarray, where: str = "codes") -> np.ndarray:
    """The rows layout's B uint8 [N, K/2] -> tiles16 codes uint8 [T, K/8, 16, 4]."""
    packed = np.asarray(packed)
    if packed.ndim != 2 or packed.dtype != np.uint8 or packed.shape[1] % CHUNK_BYTES:
        raise Awq2TrtError(
            where, expected=f"uint8 [N, K/2] with K divisible by {CHUNK_K}", got=f"{packed.dtype} {list(packed.shape)}"
        )
    n, width = packed.shape
    return _tile(packed.reshape(n, width // CHUNK_BYTES, CHUNK_BYTES), n, where)


def untile_codes(codes: np.ndarray, n: int, where: str = "tiles16 codes") -> np.ndarray:
    """tiles16 codes uint8 [T, K/8, 16, 4] -> the rows layout's B uint8 [N, K/2]."""
    codes = np.asarray(codes)
    if codes.ndim != 4 or codes.dtype != np.uint8 or codes.shape[0] != tiles(n) or codes.shape[2:] != (TILE_N, 4):
        raise Awq2TrtError(
            where,
            expected=f"uint8 [T={tiles(n)}, K/8, {TILE_N}, {CHUNK_BYTES}] for N={n}",
            got=f"{codes.dtype} {list(codes.shape)}",
        )
    return _untile(codes, n).reshape(n, codes.shape[1] * CHUNK_BYTES)


def tile_groups(values: np.ndarray, where: str = "scales") -> np.ndarray:
    """Per-group values (scales or zero points) [N, K/G] -> [T, K/G, 16] (any dtype, kept)."""
    values = np.asarray(values)
    if values.ndim != 2:
        raise Awq2TrtError(where, expected="[N, K/G] (rows layout)", got=list(values.shape))
    return _tile(values, values.shape[0], where)


def untile_groups(values: np.ndarray, n: int, where: str = "tiles16 scales") -> np.ndarray:
    """Per-group values [T, K/G, 16] -> [N, K/G] (any dtype, kept)."""
    values = np.asarray(values)
    if values.ndim != 3 or values.shape[0] != tiles(n) or values.shape[2] != TILE_N:
        raise Awq2TrtError(where, expected=f"[T={tiles(n)}, K/G, {TILE_N}] for N={n}", got=list(values.shape))
    return _untile(values, n)


def rows_codes(weight: QuantWeight) -> np.ndarray:
    """The weight's codes in the rows layout's B bytes (uint8 [N, K/2], even k in the low nibble)."""
    words = pack_nibbles(weight.qweight)  # [N, K/8] int32, code 8w + j in nibble j
    return np.ascontiguousarray(words, dtype="<i4").view(np.uint8)


def to_tiles16(
    weight: QuantWeight,
    where: str = "weight",
    scale_dtype: np.dtype | type | None = None,
    with_zero_points: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(codes [T, K/8, 16, 4], scales [T, K/G, 16], zero points [T, K/G, 16] or None) of *weight*.

    Scales are cast to *scale_dtype* (the activations' dtype) when given, else kept.  Zero points are returned
    when *with_zero_points* says so; by default unless the weight is symmetric (the node then omits them, which
    means 8).
    """
    weight.validated(where)
    n, k, g = weight.out_features, weight.in_features, weight.group_size
    check_shape(n, k, g, where)
    if with_zero_points is None:
        with_zero_points = not weight.is_symmetric
    scales = weight.scales if scale_dtype is None else weight.scales.astype(scale_dtype)
    codes = tile_codes(rows_codes(weight), where)
    zeros = tile_groups(weight.zeros, f"{where} zeros") if with_zero_points else None
    return codes, tile_groups(scales, f"{where} scales"), zeros


def from_tiles16(
    codes: np.ndarray, scales: np.ndarray, zeros: np.ndarray | None, n: int, where: str = "tiles16 weight"
) -> QuantWeight:
    """The `QuantWeight` of tiles16 tensors for *n* output rows (K and G follow from the shapes; zeros None
    means symmetric).  The padded rows are not read; bfloat16 scales widen to fp32, which is exact."""
    codes, scales = np.asarray(codes), np.asarray(scales)
    if n <= 0:
        raise Awq2TrtError(where, expected="N > 0", got=n)
    packed = untile_codes(codes, n, f"{where} codes")
    k = packed.shape[1] * 2
    rows_scales = untile_groups(scales, n, f"{where} scales")
    groups = rows_scales.shape[1]
    if groups <= 0 or k % groups:
        raise Awq2TrtError(f"{where} scales", expected=f"a group count that divides K={k}", got=groups)
    g = k // groups
    check_shape(n, k, g, where)
    if zeros is None:
        rows_zeros = np.full((n, groups), SYMMETRIC_ZERO, np.uint8)
    else:
        zeros = np.asarray(zeros)
        if zeros.dtype != np.uint8 or zeros.shape != scales.shape:
            raise Awq2TrtError(
                f"{where} zeros", expected=f"uint8 {list(scales.shape)}", got=f"{zeros.dtype} {list(zeros.shape)}"
            )
        rows_zeros = untile_groups(zeros, n, f"{where} zeros")
    if rows_scales.dtype.name == "bfloat16":  # exact in fp32 (QuantWeight's scale dtypes are fp16 and fp32)
        rows_scales = rows_scales.astype(np.float32)
    words = np.ascontiguousarray(packed).view("<i4").astype(np.int32)  # [N, K/8], as pack_nibbles wrote them
    qweight = unpack_nibbles(words, k)
    return QuantWeight(np.ascontiguousarray(qweight), rows_scales, rows_zeros, g).validated(where)
