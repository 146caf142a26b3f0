"""Shape and dtype checks shared by the format codecs, raising errors that name the tensor."""

from __future__ import annotations

import numpy as np

from awq2trt.errors import Awq2TrtError


def expect_array(
    where: str, array: np.ndarray, *, dtypes: tuple[type, ...], shape: tuple[int, ...] | None = None, ndim: int = 2
) -> None:
    """Raise naming *where* unless *array* has one of *dtypes* and the given shape (or rank)."""
    allowed = tuple(np.dtype(d) for d in dtypes)
    if array.dtype not in allowed or array.ndim != ndim or (shape is not None and tuple(array.shape) != shape):
        want_dtype = "/".join(str(d) for d in allowed)
        want = f"{want_dtype} of shape {list(shape)}" if shape is not None else f"a {ndim}-D {want_dtype} tensor"
        raise Awq2TrtError(where, expected=want, got=f"{array.dtype} {list(array.shape)}")


def float_scales(where: str, scales: np.ndarray) -> np.ndarray:
    """Scales as fp16 (kept) or fp32 (fp32 kept; bf16 sources already arrive widened to fp32)."""
    if scales.dtype == np.float16 or scales.dtype == np.float32:
        if not np.all(np.isfinite(scales)):
            bad = int(np.count_nonzero(~np.isfinite(scales)))
            raise Awq2TrtError(where, expected="finite scales", got=f"{bad} NaN/inf values")
        return scales
    raise Awq2TrtError(where, expected="float16, bfloat16 or float32 scales", got=str(scales.dtype))


def groups_of(where: str, in_features: int, group_size: int) -> int:
    if group_size <= 0 or in_features % group_size != 0:
        raise Awq2TrtError(
            where, expected=f"a group size that divides in_features={in_features}", got=f"group_size={group_size}"
        )
    return in_features // group_size
