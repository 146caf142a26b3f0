"""ONNX Runtime ``MatMulNBits``' packed zero-point layout (checked with ORT 1.32; see targets/ort.py)."""

from __future__ import annotations

import numpy as np


def pack_zero_points(zeros: np.ndarray) -> np.ndarray:
    """uint8 codes [N, G'] -> [N, ceil(G'/2)], column 2j in the low nibble, each row padded on its own."""
    n, groups = zeros.shape
    if groups % 2:
        zeros = np.concatenate([zeros, np.zeros((n, 1), np.uint8)], axis=1)
    return (zeros[:, 0::2] | (zeros[:, 1::2] << 4)).astype(np.uint8)
