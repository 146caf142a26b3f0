"""Checkpoint layouts written by MIT's llm-awq (``awq/quantize/qmodule.py`` ``WQLinear``) over its history.

llm-awq saves a plain state dict; which layout it holds depends on the llm-awq version that wrote it.
Verified against github.com/mit-han-lab/llm-awq (history up to d6e797a, 2025-07):

* **v0** (first commit 2023-05-31 until 1480555, 2023-09-06): the AutoAWQ *GEMM* layout.  ``qweight`` int32
  [K, N/8] and ``qzeros`` int32 [K/G, N/8], packed along N with nibble i holding column ``V0_ORDER[i]`` of
  each run of 8; ``scales`` fp16 [K/G, N].
* **v1** (2023-09-06 until 5f06dbb, 2024-02-23): the AutoAWQ *GEMV* layout.  ``qweight`` int32 [N, K/8] with
  nibble i of word c holding input column 8c + i; ``qzeros`` int32 [N, W] packed the same way; ``scales`` fp16
  [N, 8W]; W = ceil(ceil((K/G)/8)/m)*m with m = 1 for G >= 128, 2 for G = 64, 4 for G = 32 (padding is 0).
* **v2** (since 5f06dbb, 2024-02-23; bf16 allowed since e65873f): ``qweight`` int16 [N/4, K] (see `_v2_pack`),
  ``scales`` and ``scaled_zeros`` [8W, N] in the model dtype (fp16 or bf16), ``scaled_zeros = -scale * z``
  rounded to that dtype, and the kernel computes ``w = q * scale + scaled_zero`` with q in 0..15.  No qzeros.
  AutoAWQ's ``WQLinear_GEMVFast`` stores the same tensors, but names ``scaled_zeros`` "qzeros".

All three dequantize as ``(q - z) * scale`` with unsigned codes, so each maps onto `QuantWeight` losslessly
(v2 up to the fp16 rounding of ``scaled_zeros``, see `decode_llm_awq_v2`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

from awq2trt.checkpoint.formats._checks import expect_array
from awq2trt.checkpoint.formats.awq_gemm import decode_gemm, encode_gemm
from awq2trt.checkpoint.formats.awq_gemv import decode_gemv, encode_gemv, padded_group_words
from awq2trt.errors import Awq2TrtError
from awq2trt.quant_weight import MAX_CODE, SYMMETRIC_ZERO, QuantWeight

LlmAwqLayout = Literal["v0", "v1", "v2"]

# v2: output rows interleaved in fours, input columns in chunks of 64 (one chunk = 64 int16 words).
V2_INTERLEAVE = 4
V2_KSTRIDE = 64
# Largest |z_recovered - round(z_recovered)| accepted when decoding v2 zero points.  fp16 rounding of
# -scale*z moves z by at most 15 * 2**-11 ~ 0.0073; fp32 arrays may be widened bf16 (15 * 2**-8 ~ 0.059).
V2_ZERO_TOLERANCE = {np.dtype(np.float16): 1 / 64, np.dtype(np.float32): 1 / 16}


def zeros_width(groups: int, group_size: int, *, where: str = "group_size") -> int:
    """W, the padded word count per row that llm-awq's GEMV kernels want (the AutoAWQ GEMV rule)."""
    return padded_group_words(groups, group_size, where=where)


def _group_size(group_size: int, in_features: int, name: str) -> tuple[int, int]:
    """(G, K/G), with llm-awq's ``-1`` meaning one group per row; raises unless G divides K."""
    if not isinstance(in_features, (int, np.integer)) or in_features <= 0:
        raise Awq2TrtError(name, expected="a positive in_features", got=in_features)
    g = in_features if group_size == -1 else group_size
    if not isinstance(g, (int, np.integer)) or g <= 0 or in_features % g != 0:
        raise Awq2TrtError(
            name,
            expected=f"a group size that divides in_features={in_features}",
            got=f"group_size={group_size}",
        )
    return int(g), in_features // int(g)


# --------------------------------------------------------------------------------------------------- v0


def decode_llm_awq_v0(
    qweight: np.ndarray,
    qzeros: np.ndarray,
    scales: np.ndarray,
    *,
    group_size: int,
    in_features: int | None = None,
    name: str,
) -> QuantWeight:
    """Decode the 2023-05..09 layout, which is AutoAWQ GEMM's (K from ``qweight``'s rows unless given)."""
    expect_array(f"{name}.qweight", qweight, dtypes=(np.int32,))
    k = qweight.shape[0] if in_features is None else in_features
    g, _ = _group_size(group_size, k, name)
    if qweight.shape[0] != k:
        expect_array(f"{name}.qweight", qweight, dtypes=(np.int32,), shape=(k, qweight.shape[1]))
    return decode_gemm(qweight, qzeros, scales, group_size=g, name=name)


def encode_llm_awq_v0(qw: QuantWeight) -> dict[str, np.ndarray]:
    """Inverse of `decode_llm_awq_v0`; an N not divisible by 8 gets a zero-padded last word."""
    return encode_gemm(qw)


# --------------------------------------------------------------------------------------------------- v1


def decode_llm_awq_v1(
    qweight: np.ndarray,
    qzeros: np.ndarray,
    scales: np.ndarray,
    *,
    group_size: int,
    in_features: int,
    name: str,
) -> QuantWeight:
    """Decode the 2023-09..2024-02 layout, which is AutoAWQ GEMV's; padding columns are ignored."""
    g, _ = _group_size(group_size, in_features, name)
    return decode_gemv(qweight, qzeros, scales, group_size=g, in_features=in_features, name=name)


def encode_llm_awq_v1(qw: QuantWeight) -> dict[str, np.ndarray]:
    """Inverse of `decode_llm_awq_v1`.  Scales keep their dtype (llm-awq wrote fp16): exact round trips."""
    return encode_gemv(qw)


# --------------------------------------------------------------------------------------------------- v2


def _v2_column_source(k: int) -> np.ndarray:
    """For each position j of a row's packed stream, the input column it holds.

    Inside every 32-wide K block, stream slot ``8c + r`` holds column ``8 * (r % 4) + 2c + r // 4``: the
    kernel's dequantizer reads nibbles in the order 0,4,1,5,2,6,3,7 and its shuffle then restores 0..31.
    """
    slot = np.arange(k)
    c, r = (slot % 32) // 8, slot % 8
    return (slot - slot % 32) + 8 * (r % 4) + 2 * c + r // 4


def _v2_pack(codes: np.ndarray) -> np.ndarray:
    """uint8 codes [N, K] (N % 4 == 0, K % 64 == 0) -> int16 [N/4, K].

    Word ``qweight[n4, 64t + m]`` holds, in nibbles 0..3 (low first), stream slots ``4 (m % 16) + 0..3`` of
    row ``4 n4 + m // 16`` in K chunk t: each 64-word chunk is 16 words of each of the 4 rows in turn.
    """
    n, k = codes.shape
    stream = codes[:, _v2_column_source(k)].astype(np.uint16)
    chunks = stream.reshape(n // V2_INTERLEAVE, V2_INTERLEAVE, k // V2_KSTRIDE, V2_KSTRIDE).transpose(0, 2, 1, 3)
    nibbles = chunks.reshape(n // V2_INTERLEAVE, k // V2_KSTRIDE, V2_KSTRIDE, 4)
    words = nibbles[..., 0] | (nibbles[..., 1] << 4) | (nibbles[..., 2] << 8) | (nibbles[..., 3] << 12)
    return np.ascontiguousarray(words.reshape(n // V2_INTERLEAVE, k)).view(np.int16)


def _v2_unpack(qweight: np.ndarray) -> np.ndarray:
    """Inverse of `_v2_pack`: int16 [N4/4, K] -> uint8 codes [N4, K]."""
    rows4, k = qweight.shape
    words = np.ascontiguousarray(qweight).view(np.uint16).reshape(rows4, k // V2_KSTRIDE, V2_KSTRIDE)
    nibbles = np.stack([(words >> np.uint16(4 * i)) & 0xF for i in range(4)], axis=-1).astype(np.uint8)
    chunks = nibbles.reshape(rows4, k // V2_KSTRIDE, V2_INTERLEAVE, V2_KSTRIDE).transpose(0, 2, 1, 3)
    stream = chunks.reshape(rows4 * V2_INTERLEAVE, k)
    codes = np.empty_like(stream)
    codes[:, _v2_column_source(k)] = stream
    return codes


def _check_v2_tensors(
    qweight: np.ndarray,
    scales: np.ndarray,
    scaled_zeros: np.ndarray,
    group_size: int,
    in_features: int,
    name: str,
) -> tuple[int, int, int]:
    """Validate v2 shapes/dtypes; returns (N, G, K/G).  N comes from ``scales`` (qweight may be padded)."""
    g, groups = _group_size(group_size, in_features, name)
    if in_features % V2_KSTRIDE != 0:
        raise Awq2TrtError(
            f"{name}.qweight",
            expected=f"in_features divisible by {V2_KSTRIDE} (llm-awq's v2 packing)",
            got=in_features,
        )
    rows = 8 * zeros_width(groups, g, where=name)
    expect_array(f"{name}.scales", scales, dtypes=(np.float16, np.float32))
    n = scales.shape[1]
    expect_array(f"{name}.scales", scales, dtypes=(np.float16, np.float32), shape=(rows, n))
    expect_array(f"{name}.scaled_zeros", scaled_zeros, dtypes=(np.float16, np.float32), shape=(rows, n))
    expect_array(f"{name}.qweight", qweight, dtypes=(np.int16, np.uint16), shape=(-(-n // V2_INTERLEAVE), in_features))
    return n, g, groups


def decode_llm_awq_v2(
    qweight: np.ndarray,
    scales: np.ndarray,
    scaled_zeros: np.ndarray,
    *,
    group_size: int,
    in_features: int,
    name: str,
) -> QuantWeight:
    """Decode the 2024-02+ layout, recovering integer zero points ``z = round(-scaled_zero / scale)``.

    Why integer zeros: `QuantWeight` is the canonical form.  The llm-awq kernel computes ``q*s + sz`` (one
    fp16 or bf16 fma) where ``sz`` is ``-s*z`` rounded to the scale dtype, so it differs from
    ``(q - z) * s`` by ``|sz + z*s| <= 15 * 2**-11 * |s|`` (~0.0073 |s|, under 1% of a quantization step)
    for fp16 and ``15 * 2**-8 * |s|`` (~0.059 |s|) for bf16 (arriving widened to fp32); the kernel's own
    final rounding of the fma to fp16 comes on top, as for any fp16 weight.  `llm_awq_v2_kernel_weight` gives
    the kernel's values exactly when they are needed.

    A group whose scale is 0 dequantizes to 0 whatever z is; it gets ``z = 8`` (`SYMMETRIC_ZERO`) so that an
    otherwise symmetric weight stays symmetric.  Such a group must have ``scaled_zero == 0``.
    Raises `Awq2TrtError` naming ``<name>.scaled_zeros`` when a recovered z is not within
    `V2_ZERO_TOLERANCE` of an integer 0..15 (e.g. a checkpoint written with signed, ``z - 8``, zeros).
    """
    n, g, groups = _check_v2_tensors(qweight, scales, scaled_zeros, group_size, in_features, name)
    s = np.ascontiguousarray(scales[:groups].T)
    s64 = s.astype(np.float64)
    sz64 = scaled_zeros[:groups].T.astype(np.float64)
    degenerate = s64 == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(degenerate, float(SYMMETRIC_ZERO), -sz64 / np.where(degenerate, 1.0, s64))
    z = np.rint(ratio)
    tolerance = V2_ZERO_TOLERANCE[scaled_zeros.dtype]
    bad = ~np.isfinite(ratio) | (np.abs(ratio - z) > tolerance) | (z < 0) | (z > MAX_CODE)
    bad |= degenerate & (sz64 != 0)
    if bad.any():
        row, group = (int(i) for i in np.argwhere(bad)[0])
        raise Awq2TrtError(
            f"{name}.scaled_zeros",
            expected=f"-scale * z with an integer z in 0..{MAX_CODE} (within {tolerance})",
            got=f"scaled_zero={sz64[row, group]!r}, scale={s64[row, group]!r} "
            f"at output {row}, group {group} ({int(bad.sum())} such groups)",
        )
    codes = _v2_unpack(qweight)[:n]
    return QuantWeight(np.ascontiguousarray(codes), s, z.astype(np.uint8), g).validated(name)


def encode_llm_awq_v2(qw: QuantWeight) -> dict[str, np.ndarray]:
    """Inverse of `decode_llm_awq_v2`, computing ``scaled_zeros`` as llm-awq does (``-(s*z)``, one rounding).

    N is padded to a multiple of 4 in ``qweight`` only (zero codes); ``scales``/``scaled_zeros`` keep N
    columns, which is how the decoder recovers N.  llm-awq itself only ever wrote N % 8 == 0.  fp32 scales
    (bf16 sources) give exact fp32 ``scaled_zeros``; a bf16 writer must round them as llm-awq would.
    """
    n, k = qw.qweight.shape
    if k % V2_KSTRIDE != 0:
        raise Awq2TrtError(
            "llm-awq v2 qweight", expected=f"in_features divisible by {V2_KSTRIDE}", got=f"in_features={k}"
        )
    groups = qw.num_groups
    rows = 8 * zeros_width(groups, qw.group_size)
    dtype = qw.scales.dtype
    scales = np.zeros((rows, n), dtype=dtype)
    scales[:groups] = qw.scales.T
    # fp16 * (integer <= 15) is exact in fp32, so this is a single rounding, as in llm-awq's from_linear.
    product = (qw.scales.astype(np.float64) * qw.zeros.astype(np.float64)).astype(np.float32)
    with np.errstate(over="ignore"):
        scaled = (-product).astype(dtype)
    if not np.all(np.isfinite(scaled)):
        raise Awq2TrtError("llm-awq v2 scaled_zeros", expected=f"scale * zero within {dtype} range", got="an overflow")
    scaled_zeros = np.zeros((rows, n), dtype=dtype)
    scaled_zeros[:groups] = scaled.T
    padded_n = -(-n // V2_INTERLEAVE) * V2_INTERLEAVE
    codes = np.zeros((padded_n, k), dtype=np.uint8)
    codes[:n] = qw.qweight
    return {"qweight": _v2_pack(codes), "scales": scales, "scaled_zeros": scaled_zeros}


def llm_awq_v2_kernel_weight(
    qweight: np.ndarray,
    scales: np.ndarray,
    scaled_zeros: np.ndarray,
    *,
    group_size: int,
    in_features: int,
    name: str,
) -> np.ndarray:
    """The fp32 weight [N, K] ``q * scale + scaled_zero`` that llm-awq's v2 kernels compute before their own
    final fp16/bf16 rounding; for checking how far the canonical ``(q - z) * scale`` is from it."""
    n, g, groups = _check_v2_tensors(qweight, scales, scaled_zeros, group_size, in_features, name)
    codes = _v2_unpack(qweight)[:n].astype(np.float64)
    s = np.repeat(scales[:groups].T.astype(np.float64), g, axis=1)
    sz = np.repeat(scaled_zeros[:groups].T.astype(np.float64), g, axis=1)
    return (codes * s + sz).astype(np.float32)


# --------------------------------------------------------------------------------------------- detection


# dtype spellings other loaders use (safetensors header strings, torch reprs); bf16 only needs its kind here.
_DTYPE_NAMES = {"I16": "int16", "U16": "uint16", "I32": "int32", "F16": "float16", "F32": "float32"}
_DTYPE_NAMES |= {"BF16": "float32", "bfloat16": "float32"}


def _shape_dtype(value: object) -> tuple[tuple[int, ...], np.dtype]:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        shape, dtype = value.shape, value.dtype
    else:
        shape, dtype = value  # type: ignore[misc]
    if not isinstance(dtype, np.dtype):
        text = str(dtype).removeprefix("torch.")
        dtype = np.dtype(_DTYPE_NAMES.get(text, text))
    return tuple(int(d) for d in shape), dtype


def detect_llm_awq_layout(tensors: Mapping[str, object], *, name: str = "llm-awq layer") -> LlmAwqLayout:
    """Which llm-awq layout one Linear's tensors are in, from names, dtypes and shapes alone.

    *tensors* maps ``qweight``/``qzeros``/``scales``/``scaled_zeros`` (or keys ending in ``.qweight`` ...) to
    arrays or ``(shape, dtype)`` pairs.  int16 ``qweight`` -> v2 (also with a float ``qzeros``, AutoAWQ's
    GEMVFast name).  int32 ``qweight``: v1 when its rows equal ``scales``' rows (N), v0 when its words times
    8 cover ``scales``' columns (N) instead; the two cannot both hold because v0 would need K/G == K.
    """
    info = {key.rsplit(".", 1)[-1]: _shape_dtype(value) for key, value in tensors.items()}
    if "qweight" not in info or "scales" not in info:
        raise Awq2TrtError(name, expected="qweight and scales tensors", got=sorted(info))
    (q_shape, q_dtype), (s_shape, _) = info["qweight"], info["scales"]
    zeros = info.get("scaled_zeros") or info.get("qzeros")
    if zeros is None or len(q_shape) != 2 or len(s_shape) != 2:
        raise Awq2TrtError(name, expected="2-D qweight, scales and a qzeros or scaled_zeros", got=sorted(info))
    z_shape, z_dtype = zeros
    if q_dtype in (np.dtype(np.int16), np.dtype(np.uint16)) and z_dtype.kind == "f":
        return "v2"
    if q_dtype == np.dtype(np.int32) and z_dtype == np.dtype(np.int32) and "scaled_zeros" not in info:
        if q_shape[0] == s_shape[0] and z_shape[0] == s_shape[0]:
            return "v1"
        if q_shape[1] == -(-s_shape[1] // 8) and z_shape == (s_shape[0], q_shape[1]):
            return "v0"
    shapes = {key: f"{dtype} {list(shape)}" for key, (shape, dtype) in sorted(info.items())}
    raise Awq2TrtError(name, expected="one of llm-awq's v0/v1/v2 tensor layouts", got=shapes)
