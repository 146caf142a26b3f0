"""QuantWeight: nibble packing and dequantization against straightforward independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awq2trt.errors import Awq2TrtError
from awq2trt.quant_weight import QuantWeight, pack_nibbles, unpack_nibbles

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def random_quant_weight(rng: np.random.Generator, n: int, k: int, g: int, *, zero_point: bool = True) -> QuantWeight:
    groups = k // g
    zeros = rng.integers(0, 16, (n, groups), dtype=np.uint8) if zero_point else np.full((n, groups), 8, np.uint8)
    return QuantWeight(
        rng.integers(0, 16, (n, k), dtype=np.uint8),
        (rng.random((n, groups)) * 0.02 + 1e-4).astype(np.float16),
        zeros,
        g,
    )


def test_pack_nibbles_bit_layout_by_hand() -> None:
    codes = np.arange(8, dtype=np.uint8)[None, :]  # codes 0..7 in positions 0..7
    plain = int(pack_nibbles(codes).view(np.uint32)[0, 0])
    assert plain == 0x76543210  # nibble i holds position i
    awq = int(pack_nibbles(codes, AWQ_ORDER).view(np.uint32)[0, 0])
    assert awq == 0x75316420  # nibble i holds position AWQ_ORDER[i]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 5),
    count=st.integers(1, 40),
    order=st.sampled_from([tuple(range(8)), AWQ_ORDER]),
    seed=st.integers(0, 2**32 - 1),
)
def test_pack_unpack_round_trip(rows: int, count: int, order: tuple[int, ...], seed: int) -> None:
    codes = np.random.default_rng(seed).integers(0, 16, (rows, count), dtype=np.uint8)
    words = pack_nibbles(codes, order)
    assert words.dtype == np.int32 and words.shape == (rows, -(-count // 8))
    np.testing.assert_array_equal(unpack_nibbles(words, count, order), codes)


def test_dequantize_matches_elementwise_formula() -> None:
    rng = np.random.default_rng(0)
    qw = random_quant_weight(rng, 5, 64, 32)
    dense = qw.dequantize()
    for n in range(5):
        for k in (0, 1, 31, 32, 63):
            g = k // 32
            want = (float(qw.qweight[n, k]) - float(qw.zeros[n, g])) * float(qw.scales[n, g])
            assert dense[n, k] == np.float32(want)


def test_symmetric_and_packed_bytes() -> None:
    rng = np.random.default_rng(1)
    sym = random_quant_weight(rng, 8, 128, 64, zero_point=False)
    assert sym.is_symmetric
    assert sym.nbytes_packed == 8 * 128 // 2 + sym.scales.nbytes
    asym = random_quant_weight(rng, 8, 128, 64)
    assert not asym.is_symmetric
    assert asym.nbytes_packed == 8 * 128 // 2 + asym.scales.nbytes + 8


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda q, s, z: (q.astype(np.int32), s, z, 32), "uint8 codes"),
        (lambda q, s, z: (q, s, z, 48), "group size that divides"),
        (lambda q, s, z: (q, s[:, :1], z, 32), "scales"),
        (lambda q, s, z: (q, s, z.astype(np.int8), 32), "zeros"),
        (lambda q, s, z: (q | 16, s, z, 32), "4-bit codes"),
        (lambda q, s, z: (q, np.where(s > 0, np.float16("nan"), s), z, 32), "finite"),
    ],
)
def test_validation_names_the_problem(mutate, fragment: str) -> None:
    base = random_quant_weight(np.random.default_rng(2), 4, 64, 32)
    q, s, z, g = mutate(base.qweight, base.scales, base.zeros)
    with pytest.raises(Awq2TrtError, match=fragment) as info:
        QuantWeight(q, s, z, g).validated("layer.x")
    assert str(info.value).startswith("layer.x")
