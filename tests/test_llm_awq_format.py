"""llm-awq checkpoint layouts: round trips, hand-derived packed words, zero-point recovery and bad inputs,
and the two real checkpoints llm-awq itself wrote (tests/data/peers/awq/llama-llmawq-{old,new}-g64).

The expected words below were worked out by hand from llm-awq's ``WQLinear.from_linear`` / ``pack_intweight``
(awq/quantize/qmodule.py) and the v2 GEMV kernel's read order (awq/kernels/csrc/quantization_new/), not by
calling the encoder: in v2, word w (0..7) of each 32-column block holds columns w, w+8, w+16, w+24 in nibbles
0..3, and each 64-word chunk of an int16 row holds 16 words of each of 4 output rows in turn.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awq2trt.checkpoint import open_checkpoint
from awq2trt.checkpoint.formats.llm_awq import (
    decode_llm_awq_v0,
    decode_llm_awq_v1,
    decode_llm_awq_v2,
    detect_llm_awq_layout,
    encode_llm_awq_v0,
    encode_llm_awq_v1,
    encode_llm_awq_v2,
    llm_awq_v2_kernel_weight,
    zeros_width,
)
from awq2trt.errors import Awq2TrtError
from awq2trt.quant_weight import QuantWeight
from tests.conftest import LLM_AWQ_FIXTURES, fixture_path, max_abs_rel, reference

OLD, NEW = "llama-llmawq-old-g64", "llama-llmawq-new-g64"  # llm-awq@559f964 (int32 words), @d6e797a (int16)
REAL_GROUP = 64


def words16(text: str) -> list[int]:
    """Hex words as written by hand (e.g. "8080 F7F7") -> signed int16 values."""
    return [int(np.array(int(w, 16), dtype=np.uint16).view(np.int16)) for w in text.split()]


def words32(text: str) -> list[int]:
    return [int(np.array(int(w, 16), dtype=np.uint32).view(np.int32)) for w in text.split()]


def make_weight(
    seed: int, n: int, k: int, g: int, *, symmetric: bool, dtype: type = np.float16, zero_scale: bool = False
) -> QuantWeight:
    """A random QuantWeight; fp16 scales span subnormals to 2**8 with both signs (-scale*15 stays finite)."""
    rng = np.random.default_rng(seed)
    groups = k // g
    codes = rng.integers(0, 16, (n, k), dtype=np.uint8)
    mant = rng.uniform(0.5, 1.0, (n, groups)) * rng.choice([-1.0, 1.0], (n, groups))
    scales = (mant * np.exp2(rng.integers(-26, 8, (n, groups)))).astype(dtype)
    if not zero_scale:
        scales[scales == 0] = dtype(1.0)
    zeros = np.full((n, groups), 8, np.uint8) if symmetric else rng.integers(0, 16, (n, groups), dtype=np.uint8)
    return QuantWeight(codes, scales, zeros, g).validated("test")


shapes = st.tuples(
    st.integers(0, 2**32 - 1),
    st.integers(1, 13),  # N, odd values included
    st.sampled_from([32, 64, 128]),
    st.integers(1, 5),
    st.booleans(),
)


# ------------------------------------------------------------------------------------------ round trips


@settings(max_examples=60, deadline=None)
@given(shapes)
def test_v0_round_trip(case: tuple[int, int, int, int, bool]) -> None:
    seed, n, g, groups, symmetric = case
    qw = make_weight(seed, n, g * groups, g, symmetric=symmetric)
    t = encode_llm_awq_v0(qw)
    assert t["qweight"].dtype == np.int32 and t["qweight"].shape == (g * groups, math.ceil(n / 8))
    assert t["qzeros"].shape == (groups, math.ceil(n / 8)) and t["scales"].shape == (groups, n)
    back = decode_llm_awq_v0(t["qweight"], t["qzeros"], t["scales"], group_size=g, name="m")
    assert back.equals(qw)


@settings(max_examples=60, deadline=None)
@given(shapes, st.sampled_from([np.float16, np.float32]))
def test_v1_round_trip(case: tuple[int, int, int, int, bool], dtype: type) -> None:
    seed, n, g, groups, symmetric = case
    k = g * groups
    qw = make_weight(seed, n, k, g, symmetric=symmetric, dtype=dtype)
    t = encode_llm_awq_v1(qw)
    w = zeros_width(groups, g)
    assert t["qweight"].dtype == np.int32 and t["qweight"].shape == (n, k // 8)
    assert t["qzeros"].shape == (n, w) and t["scales"].shape == (n, 8 * w)
    assert not t["scales"][:, groups:].any()
    back = decode_llm_awq_v1(t["qweight"], t["qzeros"], t["scales"], group_size=g, in_features=k, name="m")
    assert back.equals(qw)


@settings(max_examples=60, deadline=None)
@given(shapes, st.sampled_from([np.float16, np.float32]))
def test_v2_round_trip(case: tuple[int, int, int, int, bool], dtype: type) -> None:
    seed, n, g, groups, symmetric = case
    k = math.lcm(g, 64) * groups
    qw = make_weight(seed, n, k, g, symmetric=symmetric, dtype=dtype)
    t = encode_llm_awq_v2(qw)
    rows = 8 * zeros_width(k // g, g)
    assert set(t) == {"qweight", "scales", "scaled_zeros"}
    assert t["qweight"].dtype == np.int16 and t["qweight"].shape == (math.ceil(n / 4), k)
    assert t["scales"].shape == t["scaled_zeros"].shape == (rows, n)
    assert t["scales"].dtype == t["scaled_zeros"].dtype == dtype
    back = decode_llm_awq_v2(t["qweight"], t["scales"], t["scaled_zeros"], group_size=g, in_features=k, name="m")
    assert back.equals(qw)


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_v2_kernel_weight_deviation_bound(case: tuple[int, int, int, int, bool]) -> None:
    """The documented bound: |(q*s + sz) - (q - z)*s| <= 15 * 2**-11 * |s| for fp16."""
    seed, n, g, groups, symmetric = case
    k = math.lcm(g, 64) * groups
    qw = make_weight(seed, n, k, g, symmetric=symmetric)
    t = encode_llm_awq_v2(qw)
    kernel = llm_awq_v2_kernel_weight(
        t["qweight"], t["scales"], t["scaled_zeros"], group_size=g, in_features=k, name="m"
    )
    bound = 15 * 2.0**-11 * np.abs(np.repeat(qw.scales.astype(np.float64), g, axis=1))
    assert np.all(np.abs(kernel.astype(np.float64) - qw.dequantize().astype(np.float64)) <= bound)


# --------------------------------------------------------------------------------- hand-built packings


def test_v0_words_by_hand() -> None:
    # N=16, K=32, G=32, code = output index n; zero point = 15 - n.  Packing along N in order 0,2,4,6,1,3,5,7.
    n, k = 16, 32
    codes = np.tile(np.arange(n, dtype=np.uint8)[:, None], (1, k))
    zeros = (15 - np.arange(n, dtype=np.uint8))[:, None]
    qw = QuantWeight(codes, np.ones((n, 1), np.float16), zeros, 32)
    t = encode_llm_awq_v0(qw)
    assert t["qweight"].shape == (32, 2)
    assert (t["qweight"] == np.array(words32("75316420 FDB9ECA8"), dtype=np.int32)).all()
    assert t["qzeros"].tolist() == [words32("8ACE9BDF 02461357")]
    back = decode_llm_awq_v0(t["qweight"], t["qzeros"], t["scales"], group_size=32, name="m")
    assert back.equals(qw)


def test_v1_words_by_hand() -> None:
    # N=3, K=64, G=32: code = (n + k) % 16 packed sequentially along K; W = 4 words of zeros (m = 4).
    n, k = 3, 64
    codes = ((np.arange(n)[:, None] + np.arange(k)[None, :]) % 16).astype(np.uint8)
    zeros = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.uint8)
    scales = np.array([[0.5, 0.25], [1.0, 2.0], [3.0, 4.0]], dtype=np.float16)
    t = encode_llm_awq_v1(QuantWeight(codes, scales, zeros, 32))
    assert t["qweight"].tolist() == [
        words32("76543210 FEDCBA98") * 4,
        words32("87654321 0FEDCBA9") * 4,
        words32("98765432 10FEDCBA") * 4,
    ]
    assert t["qzeros"].tolist() == [words32("21 0 0 0"), words32("43 0 0 0"), words32("65 0 0 0")]
    assert t["scales"].shape == (3, 32)
    assert t["scales"][1, :3].tolist() == [1.0, 2.0, 0.0]


V2_ROW_WORDS = {
    0: "8080 9191 A2A2 B3B3 C4C4 D5D5 E6E6 F7F7",
    1: "9191 A2A2 B3B3 C4C4 D5D5 E6E6 F7F7 0808",
    2: "A2A2 B3B3 C4C4 D5D5 E6E6 F7F7 0808 1919",
    3: "B3B3 C4C4 D5D5 E6E6 F7F7 0808 1919 2A2A",
}


def test_v2_words_by_hand_fine_positions() -> None:
    # N=4, K=64, code = (n + k) % 16.  Word w of a 32-block holds columns w, w+8, w+16, w+24, so for row n it
    # reads nibbles x, x+8, x, x+8 with x = (w + n) % 16.  The int16 row is row 0's 16 words, then row 1's...
    n, k = 4, 64
    codes = ((np.arange(n)[:, None] + np.arange(k)[None, :]) % 16).astype(np.uint8)
    qw = QuantWeight(codes, np.ones((n, 2), np.float16), np.full((n, 2), 8, np.uint8), 32)
    t = encode_llm_awq_v2(qw)
    expected = [word for r in range(4) for word in words16(V2_ROW_WORDS[r]) * 2]
    assert t["qweight"].tolist() == [expected]


def test_v2_words_by_hand_coarse_positions() -> None:
    # code = k // 4 distinguishes columns 16 apart: word w of block b holds 8b + 2i + w // 4 in nibble i.
    codes = np.tile((np.arange(64) // 4).astype(np.uint8), (4, 1))
    qw = QuantWeight(codes, np.ones((4, 1), np.float16), np.full((4, 1), 8, np.uint8), 64)
    row = words16("6420 6420 6420 6420 7531 7531 7531 7531 ECA8 ECA8 ECA8 ECA8 FDB9 FDB9 FDB9 FDB9")
    assert encode_llm_awq_v2(qw)["qweight"].tolist() == [row * 4]


@pytest.mark.parametrize(
    ("n", "k", "row4", "word", "value"),
    [
        (0, 0, 0, 0, 0x000F),
        (0, 1, 0, 1, 0x000F),
        (0, 8, 0, 0, 0x00F0),
        (0, 25, 0, 1, 0xF000),
        (0, 38, 0, 14, 0x000F),  # second 32-block: word 8 + 6
        (2, 63, 0, 47, 0xF000),  # row 2 -> words 32..47 of the first 64-chunk
        (5, 70, 1, 86, 0x000F),  # second row quad, second 64-chunk (words 64..), row 1 in it -> 64 + 16 + 6
        (7, 127, 1, 127, 0xF000),
    ],
)
def test_v2_single_code_lands_in_hand_computed_nibble(n: int, k: int, row4: int, word: int, value: int) -> None:
    codes = np.zeros((8, 128), dtype=np.uint8)
    codes[n, k] = 15
    qw = QuantWeight(codes, np.ones((8, 1), np.float16), np.full((8, 1), 8, np.uint8), 128)
    packed = encode_llm_awq_v2(qw)["qweight"].view(np.uint16)
    expected = np.zeros((2, 128), dtype=np.uint16)
    expected[row4, word] = value
    assert np.array_equal(packed, expected)
    back = decode_llm_awq_v2(*encode_llm_awq_v2(qw).values(), group_size=128, in_features=128, name="m")
    assert back.equals(qw)


def test_v2_scales_zeros_and_row_padding_by_hand() -> None:
    # N=5 (odd): qweight padded to 8 rows, scales/scaled_zeros keep 5 columns; [8W, N] with W = 4 for G=32.
    n, k = 5, 64
    z = np.array([[i + 3 * g for g in range(2)] for i in range(n)], dtype=np.uint8)
    qw = QuantWeight(np.full((n, k), 1, np.uint8), np.full((n, 2), 0.5, np.float16), z, 32)
    t = encode_llm_awq_v2(qw)
    assert t["qweight"].shape == (2, 64) and t["scales"].shape == t["scaled_zeros"].shape == (32, 5)
    assert (t["qweight"][1, :16].view(np.uint16) == 0x1111).all()  # row 4
    assert not t["qweight"][1, 16:].any()  # padded rows 5..7
    assert t["scaled_zeros"][:2].tolist() == [[-0.0, -0.5, -1.0, -1.5, -2.0], [-1.5, -2.0, -2.5, -3.0, -3.5]]
    assert np.signbit(t["scaled_zeros"][0, 0])  # llm-awq writes -(s*0) = -0.0
    assert not t["scales"][2:].any() and not t["scaled_zeros"][2:].any()


def test_v2_fp16_rounding_of_scaled_zero_by_hand() -> None:
    # s = fp16(0.1) = 0.0999755859375, z = 15: s*z = 1.4996337890625 rounds to 1.5 in fp16 (ulp 2**-10).
    s = np.float16(0.1)
    qw = QuantWeight(np.zeros((4, 64), np.uint8), np.full((4, 1), s), np.full((4, 1), 15, np.uint8), 64)
    t = encode_llm_awq_v2(qw)
    assert t["scaled_zeros"][0, 0] == np.float16(-1.5)
    back = decode_llm_awq_v2(*t.values(), group_size=64, in_features=64, name="m")
    assert back.equals(qw)
    kernel = llm_awq_v2_kernel_weight(*t.values(), group_size=64, in_features=64, name="m")
    assert kernel[0, 0] == -1.5 and qw.dequantize()[0, 0] == np.float32(-1.4996337890625)


# ----------------------------------------------------------------------------------- zero-point decoding


def v2_tensors(scale: float, scaled_zero: float, dtype: type = np.float16) -> dict[str, np.ndarray]:
    """One group (G=K=128, W=1 -> 8 scale rows) of 4 outputs with the given scale / scaled_zero in row 0."""
    scales = np.zeros((8, 4), dtype=dtype)
    scaled = np.zeros((8, 4), dtype=dtype)
    scales[0] = scale
    scaled[0] = scaled_zero
    return {"qweight": np.zeros((1, 128), np.int16), "scales": scales, "scaled_zeros": scaled}


def test_v2_zero_scale_gives_symmetric_zero() -> None:
    qw = decode_llm_awq_v2(*v2_tensors(0.0, 0.0).values(), group_size=-1, in_features=128, name="m")
    assert qw.group_size == 128 and (qw.zeros == 8).all() and not qw.dequantize().any()


@pytest.mark.parametrize(
    ("scale", "scaled_zero"),
    [
        (0.5, -1.25),  # z = 2.5, not an integer
        (0.5, 4.0),  # z = -8: zeros stored shifted by -8 (signed codes)
        (0.5, -8.5),  # z = 17 > 15
        (0.0, -1.0),  # scale 0 but a nonzero offset: not (q - z) * s for any z
        (0.5, float("nan")),
    ],
)
def test_v2_bad_scaled_zeros_raise(scale: float, scaled_zero: float) -> None:
    with pytest.raises(Awq2TrtError, match=r"^layers\.0\.mlp\.up_proj\.scaled_zeros: expected"):
        decode_llm_awq_v2(
            *v2_tensors(scale, scaled_zero).values(),
            group_size=128,
            in_features=128,
            name="layers.0.mlp.up_proj",
        )


def test_v2_bf16_sized_error_accepted_for_fp32() -> None:
    # bf16 rounding of -s*z can move z by up to 15 * 2**-8; fp32 arrays (widened bf16) must accept that.
    t = v2_tensors(1.0, -15.05, dtype=np.float32)
    assert (decode_llm_awq_v2(*t.values(), group_size=128, in_features=128, name="m").zeros == 15).all()
    with pytest.raises(Awq2TrtError, match="scaled_zeros"):
        decode_llm_awq_v2(*v2_tensors(1.0, -15.05).values(), group_size=128, in_features=128, name="m")


# ------------------------------------------------------------------------------------------- bad shapes


def test_bad_shapes_and_dtypes_name_the_tensor() -> None:
    qw = make_weight(0, 8, 128, 64, symmetric=False)
    v1 = encode_llm_awq_v1(qw)
    with pytest.raises(Awq2TrtError, match=r"^blk\.qweight: expected int32 of shape \[8, 16\], got int32 \[8, 15\]"):
        decode_llm_awq_v1(v1["qweight"][:, :15], v1["qzeros"], v1["scales"], group_size=64, in_features=128, name="blk")
    with pytest.raises(Awq2TrtError, match=r"^blk\.scales: expected"):
        decode_llm_awq_v1(v1["qweight"], v1["qzeros"], v1["scales"][:, :8], group_size=64, in_features=128, name="blk")
    with pytest.raises(Awq2TrtError, match=r"^blk\.qzeros: expected"):
        decode_llm_awq_v1(v1["qweight"], v1["scales"], v1["scales"], group_size=64, in_features=128, name="blk")
    with pytest.raises(Awq2TrtError, match=r"^blk: expected group size 32, 64 or >= 128"):
        decode_llm_awq_v1(v1["qweight"], v1["qzeros"], v1["scales"], group_size=16, in_features=128, name="blk")
    with pytest.raises(Awq2TrtError, match=r"^blk: expected a group size that divides"):
        decode_llm_awq_v1(v1["qweight"], v1["qzeros"], v1["scales"], group_size=96, in_features=128, name="blk")

    v2 = encode_llm_awq_v2(qw)
    with pytest.raises(Awq2TrtError, match=r"^blk\.qweight: expected int16/uint16 of shape \[2, 128\]"):
        decode_llm_awq_v2(
            v2["qweight"].astype(np.int32),
            v2["scales"],
            v2["scaled_zeros"],
            group_size=64,
            in_features=128,
            name="blk",
        )
    with pytest.raises(Awq2TrtError, match=r"^blk\.scaled_zeros: expected"):
        decode_llm_awq_v2(
            v2["qweight"], v2["scales"], v2["scaled_zeros"][:, :7], group_size=64, in_features=128, name="blk"
        )
    with pytest.raises(Awq2TrtError, match=r"^blk\.qweight: expected in_features divisible by 64"):
        decode_llm_awq_v2(v2["qweight"], v2["scales"], v2["scaled_zeros"], group_size=32, in_features=96, name="blk")
    with pytest.raises(Awq2TrtError, match="in_features divisible by 64"):
        encode_llm_awq_v2(make_weight(0, 4, 96, 32, symmetric=True))

    v0 = encode_llm_awq_v0(qw)
    with pytest.raises(Awq2TrtError, match=r"^blk\.qzeros: expected"):
        decode_llm_awq_v0(v0["qweight"], v0["qzeros"][:1], v0["scales"], group_size=64, name="blk")


def test_v2_encode_overflow_raises() -> None:
    qw = QuantWeight(
        np.zeros((4, 64), np.uint8), np.full((4, 1), 5000.0, np.float16), np.full((4, 1), 15, np.uint8), 64
    )
    with pytest.raises(Awq2TrtError, match="scaled_zeros"):
        encode_llm_awq_v2(qw)


# -------------------------------------------------------------------------------------------- detection


def test_detect_layouts() -> None:
    qw = make_weight(1, 16, 256, 128, symmetric=False)
    assert detect_llm_awq_layout(encode_llm_awq_v0(qw)) == "v0"
    assert detect_llm_awq_layout(encode_llm_awq_v1(qw)) == "v1"
    assert detect_llm_awq_layout(encode_llm_awq_v2(qw)) == "v2"
    prefixed = {f"model.layers.0.self_attn.q_proj.{k}": v for k, v in encode_llm_awq_v1(qw).items()}
    assert detect_llm_awq_layout(prefixed) == "v1"
    # (shape, dtype) pairs in safetensors / torch spellings; AutoAWQ GEMVFast calls scaled_zeros "qzeros".
    v2_meta = {
        "qweight": ((4, 256), "I16"),
        "scales": ((8, 16), "BF16"),
        "qzeros": ((8, 16), "torch.bfloat16"),
    }
    assert detect_llm_awq_layout(v2_meta) == "v2"
    # K = 32 with G = 32: v1 qweight [N, 4] and scales [N, 32] are square-ish but still v1, never v0.
    small = encode_llm_awq_v1(make_weight(2, 32, 32, 32, symmetric=False))
    assert small["qweight"].shape == (32, 4) and detect_llm_awq_layout(small) == "v1"
    with pytest.raises(Awq2TrtError, match="v0/v1/v2"):
        detect_llm_awq_layout({"qweight": ((8, 16), "I32"), "qzeros": ((3, 3), "I32"), "scales": ((5, 5), "F16")})
    with pytest.raises(Awq2TrtError, match="qweight and scales"):
        detect_llm_awq_layout({"weight": ((8, 16), "F16")})


# ------------------------------------------------------------------- the checkpoints llm-awq itself wrote


@pytest.fixture(scope="module")
def real_tensors() -> dict[str, dict[str, np.ndarray]]:
    from safetensors.numpy import load_file

    return {name: load_file(str(fixture_path(name) / "model.safetensors")) for name in (OLD, NEW)}


def _linear_names(tensors: dict[str, np.ndarray]) -> list[str]:
    return sorted(k.removesuffix(".qweight") for k in tensors if k.endswith(".qweight"))


def _of(tensors: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    return {k.removeprefix(name + "."): v for k, v in tensors.items() if k.startswith(name + ".")}


def _decode_real(tensors: dict[str, np.ndarray], name: str) -> QuantWeight:
    t = _of(tensors, name)
    in_features = t["qweight"].shape[1] if "scaled_zeros" in t else 8 * t["qweight"].shape[1]
    if "scaled_zeros" in t:
        return decode_llm_awq_v2(
            t["qweight"], t["scales"], t["scaled_zeros"], group_size=REAL_GROUP, in_features=in_features, name=name
        )
    return decode_llm_awq_v1(
        t["qweight"], t["qzeros"], t["scales"], group_size=REAL_GROUP, in_features=in_features, name=name
    )


def test_real_checkpoints_are_told_apart_by_their_tensors(real_tensors: dict) -> None:
    """Both configs say backend llm-awq, version gemv: only the tensors tell the layouts apart."""
    for fixture, layout in ((OLD, "v1"), (NEW, "v2")):
        names = _linear_names(real_tensors[fixture])
        assert len(names) == 14
        assert {detect_llm_awq_layout(_of(real_tensors[fixture], n)) for n in names} == {layout}
        ckpt = open_checkpoint(fixture_path(fixture))
        assert ckpt.format == f"llm-awq-{layout}" == LLM_AWQ_FIXTURES[fixture][0]
        assert sorted(ckpt.linears) == names


def test_real_checkpoints_decode_to_the_same_weights(real_tensors: dict) -> None:
    """One RTN quantization written in both layouts: int32 qzeros and the zeros recovered from fp16
    scaled_zeros must agree everywhere, and the reader must give what the decoders give."""
    old_ckpt, new_ckpt = open_checkpoint(fixture_path(OLD)), open_checkpoint(fixture_path(NEW))
    for name in _linear_names(real_tensors[OLD]):
        old, new = _decode_real(real_tensors[OLD], name), _decode_real(real_tensors[NEW], name)
        assert old.equals(new), name
        assert old_ckpt.quant_weight(name).equals(old) and new_ckpt.quant_weight(name).equals(new), name
        assert not old.is_symmetric  # llm-awq wrote real zero points, not all 8


@pytest.mark.parametrize("fixture", [OLD, NEW])
def test_real_checkpoints_round_trip_byte_for_byte(fixture: str, real_tensors: dict) -> None:
    """Decoding llm-awq's tensors and encoding them again gives llm-awq's bytes, padding and -0.0 included."""
    encode = encode_llm_awq_v1 if fixture == OLD else encode_llm_awq_v2
    for name in _linear_names(real_tensors[fixture]):
        theirs = _of(real_tensors[fixture], name)
        ours = encode(_decode_real(real_tensors[fixture], name))
        assert set(ours) == set(theirs), name
        for key, value in ours.items():
            assert value.dtype == theirs[key].dtype and value.shape == theirs[key].shape, (name, key)
            assert value.tobytes() == theirs[key].tobytes(), (name, key)


def _numpy_fp16_dequant(qw: QuantWeight) -> np.ndarray:
    """(q - z) * s with the product rounded once to fp16, written out here: what llm-awq's
    pseudo-quantization holds as the weight."""
    scales = np.repeat(qw.scales.astype(np.float16), qw.group_size, axis=1)
    zeros = np.repeat(qw.zeros.astype(np.float16), qw.group_size, axis=1)
    return ((qw.qweight.astype(np.float16) - zeros) * scales).astype(np.float32)


@pytest.mark.parametrize("fixture", [OLD, NEW])
def test_real_q_proj_equals_llm_awq_pseudo_quantized_weight(fixture: str, real_tensors: dict) -> None:
    name = "model.layers.0.self_attn.q_proj"
    tool = reference(fixture_path(fixture))["dequant_layer0_q_proj"]
    np.testing.assert_array_equal(_numpy_fp16_dequant(_decode_real(real_tensors[fixture], name)), tool)
    if fixture == NEW:  # the v2 kernel's q * s + scaled_zero, one fp16 fma: measured 4.6e-5, at most 2**-14
        t = _of(real_tensors[NEW], name)
        kernel = llm_awq_v2_kernel_weight(
            t["qweight"], t["scales"], t["scaled_zeros"], group_size=REAL_GROUP, in_features=256, name=name
        )
        deviation = float(np.abs(kernel.astype(np.float64) - tool).max())
        assert 0 < deviation <= 2.0**-14, deviation


@pytest.mark.parametrize("fixture", [OLD, NEW])
def test_real_checkpoints_give_llm_awq_reference_logits(fixture: str, real_tensors: dict) -> None:
    """llm-awq's reference is an fp32 transformers forward of its fp16 pseudo-quantized weights.  The same
    forward, with our unpacking of the packed tensors in their place, must reproduce it to fp32 rounding;
    awq2trt's own fp32 reference model (exact (q - z) * s, not rounded to fp16) lands within 5e-4."""
    import json

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from awq2trt.modeling import load_reference_model

    folder = fixture_path(fixture)
    ref = reference(folder)
    values = json.loads((folder / "config.json").read_text())
    values.pop("quantization_config")
    config = AutoConfig.for_model(values.pop("model_type"), **values)
    tensors = real_tensors[fixture]
    state = {k: torch.from_numpy(v.astype(np.float32)) for k, v in tensors.items() if k.endswith(".weight")}
    for name in _linear_names(tensors):
        state[f"{name}.weight"] = torch.from_numpy(_numpy_fp16_dequant(_decode_real(tensors, name)))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"} and not config.tie_word_embeddings
    with torch.inference_mode():
        logits = model(torch.from_numpy(ref["input_ids"])).logits.numpy()
        ours = load_reference_model(folder, progress=False)(torch.from_numpy(ref["input_ids"])).logits.numpy()
    # measured 8.3e-7 (transformers 5 here, 4.51 there); weights off by one fp16 rounding would show 2e-4
    assert max_abs_rel(logits, ref["logits"])[0] <= 1e-5
    max_abs, rel = max_abs_rel(ours, ref["logits"])
    assert 0 < max_abs <= 5e-4 and rel <= 5e-4, (max_abs, rel)  # measured 2.0e-4 / 1.1e-4
