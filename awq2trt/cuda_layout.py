"""The CUDA kernels' weight layout (plugins/cuda, the ``trt-plugin`` target): a pair of functions to and from
`QuantWeight`.

The kernels multiply with tensor-core ``mma.m16n8k16`` instructions and dequantize the codes straight into the
instruction's B-operand registers, so the codes are stored in the order each lane of a warp consumes them:

* rows are padded to a multiple of 8 (``N_pad``); a *tile* is 8 rows x 64 input channels (``K % 64 == 0``);
* tiles go row-tile-major: tile (t, j) for rows 8t..8t+7 and channels 64j..64j+63;
* chunks are paired along K so that one lane's data for two chunks is one 128-bit load: the int32 word index
  of lane ``l`` (row ``8t + l // 4``, column class ``c = l % 4``), word ``h`` (0, 1) of chunk ``j`` is
  ``t * K + (j // 2) * 128 + l * 4 + (j % 2) * 2 + h``, except an unpaired last chunk (``K / 64`` odd), which is
  ``t * K + (j // 2) * 128 + l * 2 + h`` (a 64-bit load);
* word ``h`` of a lane holds the 16 channels ``64j + 16s + {2c, 2c+1, 2c+8, 2c+9}`` for the two k16 steps
  ``s = 2h, 2h+1``: half2 pair ``p`` (p = 0..3) is step ``2h + p // 2``, channels ``16s + 2c + 8 (p % 2)`` and
  the one after; the even channel sits in nibble ``p``, the odd one in nibble ``p + 4``.  That is the order in
  which ``(word >> 4p) & 0x000F000F`` puts two codes into the low bits of the two halves of a half2 register;
* scales [K/G, N_pad] and zeros [K/G, N_pad] (uint8 codes) are transposed so that the 8 rows of a tile read one
  group's values from 8 consecutive entries.  Padded rows have zero codes, zero points 0 and scales 0.

A word never spans two groups as long as ``G % 32 == 0`` (a word covers 32 consecutive channels), which with
``K % 64 == 0`` is what the kernels require (`check_shape`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from awq2trt.errors import Awq2TrtError
from awq2trt.quant_weight import QuantWeight

TILE_N = 8
CHUNK_K = 64
WORDS_PER_TILE_ROW = CHUNK_K // 8  # int32 words of codes per row per chunk


def check_shape(n: int, k: int, group_size: int, where: str = "weight") -> None:
    """The kernels' shape contract, with one clear message."""
    if k <= 0 or n <= 0 or k % CHUNK_K:
        raise Awq2TrtError(where, expected=f"in_features divisible by {CHUNK_K} (CUDA kernels)", got=f"K={k}")
    if group_size % 32 or k % group_size:
        raise Awq2TrtError(
            where, expected=f"a group size that is a multiple of 32 and divides K={k} (CUDA kernels)", got=group_size
        )


def padded_rows(n: int) -> int:
    return -(-n // TILE_N) * TILE_N


def _lane_channels() -> np.ndarray:
    """[32 lanes, 2 words, 8 nibbles] -> channel offset within a 64-channel chunk."""
    table = np.empty((32, 2, 8), np.int64)
    for lane in range(32):
        c = lane % 4
        for h in range(2):
            for p in range(4):
                step = 2 * h + p // 2
                even = 16 * step + 2 * c + 8 * (p % 2)
                table[lane, h, p] = even
                table[lane, h, p + 4] = even + 1
    return table


def _word_offsets(k: int) -> np.ndarray:
    """[chunks, 32 lanes, 2 words] -> word offset within one row tile (tile t adds t * K)."""
    chunks = k // CHUNK_K
    offsets = np.empty((chunks, 32, 2), np.int64)
    lanes = np.arange(32)[:, None]
    words = np.arange(2)[None, :]
    for j in range(chunks):
        base = (j // 2) * 128
        paired = j // 2 * 2 + 1 < chunks
        offsets[j] = base + (lanes * 4 + (j % 2) * 2 + words if paired else lanes * 2 + words)
    return offsets


@dataclass(frozen=True, eq=False)
class CudaWeight:
    """The plugin layout of one weight: ``codes`` int32 [N_pad * K / 8], ``scales`` [K/G, N_pad] (the
    weight's scale dtype), ``zeros`` uint8 [K/G, N_pad], and the logical N, K, G."""

    codes: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    n: int
    k: int
    group_size: int


def to_cuda(weight: QuantWeight, where: str = "weight", scale_dtype: np.dtype | type | None = None) -> CudaWeight:
    """The plugin layout of *weight*; scales cast to *scale_dtype* (the activations' dtype: float16 or
    ml_dtypes.bfloat16) when given, else kept as they are."""
    weight.validated(where)
    n, k, g = weight.out_features, weight.in_features, weight.group_size
    check_shape(n, k, g, where)
    n_pad = padded_rows(n)
    q = np.zeros((n_pad, k), np.uint32)
    q[:n] = weight.qweight
    tiles = n_pad // TILE_N
    chunks = k // CHUNK_K
    lane_ch = _lane_channels()  # [32, 2, 8]
    rows = np.arange(32) // 4  # row within a tile, per lane
    # codes[t, j, lane, h, nibble] for every tile and chunk, gathered in one step.
    q4 = q.reshape(tiles, TILE_N, chunks, CHUNK_K)
    gathered = q4[:, rows[:, None, None], :, lane_ch]  # [32, 2, 8, tiles, chunks]... (numpy moves fancy axes)
    gathered = np.moveaxis(gathered, (3, 4), (0, 1))  # [tiles, chunks, 32, 2, 8]
    shifts = (4 * np.arange(8)).astype(np.uint32)
    words = np.bitwise_or.reduce(gathered << shifts, axis=-1).astype(np.uint32)  # [tiles, chunks, 32, 2]
    codes = np.empty(n_pad * k // 8, np.uint32)
    offsets = _word_offsets(k)  # [chunks, 32, 2]
    flat = (np.arange(tiles)[:, None, None, None] * k + offsets[None]).reshape(-1)
    codes[flat] = words.reshape(-1)
    scales = np.zeros((weight.num_groups, n_pad), weight.scales.dtype if scale_dtype is None else scale_dtype)
    scales[:, :n] = weight.scales.T.astype(scales.dtype)
    zeros = np.zeros((weight.num_groups, n_pad), np.uint8)
    zeros[:, :n] = weight.zeros.T
    return CudaWeight(codes.view(np.int32), scales, zeros, n, k, g)


def from_cuda(weight: CudaWeight) -> QuantWeight:
    n, k, g = weight.n, weight.k, weight.group_size
    n_pad = padded_rows(n)
    tiles, chunks = n_pad // TILE_N, k // CHUNK_K
    codes = np.asarray(weight.codes).view(np.uint32)
    if codes.shape != (n_pad * k // 8,):
        raise Awq2TrtError("CUDA codes", expected=f"int32 [{n_pad * k // 8}]", got=list(codes.shape))
    offsets = _word_offsets(k)
    flat = np.arange(tiles)[:, None, None, None] * k + offsets[None]  # [tiles, chunks, 32, 2]
    words = codes[flat]
    nibbles = (words[..., None] >> (4 * np.arange(8)).astype(np.uint32)) & 0xF  # [tiles, chunks, 32, 2, 8]
    q = np.empty((tiles, TILE_N, chunks, CHUNK_K), np.uint8)
    lane_ch = _lane_channels()
    rows = np.arange(32) // 4
    q[:, rows[:, None, None], :, lane_ch] = np.moveaxis(nibbles, (0, 1), (3, 4))
    qweight = q.reshape(n_pad, k)[:n]
    scales = np.ascontiguousarray(weight.scales[:, :n].T)
    if scales.dtype not in (np.float16, np.float32):  # bfloat16 is exact in fp32 (QuantWeight's scale dtypes)
        scales = scales.astype(np.float32)
    zeros = np.ascontiguousarray(weight.zeros[:, :n].T)
    return QuantWeight(np.ascontiguousarray(qweight), scales, zeros, g).validated("CUDA weight")
