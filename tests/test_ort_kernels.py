"""plugins/onnxruntime: our Int4MatMul kernel library, built here with CMake and loaded into the pip onnxruntime.

The library is built once per test session (conftest's ``ort_kernels_library``) into a temporary folder from ONNX
Runtime's headers, found at ``$ONNXRUNTIME_INCLUDE_DIR`` or Debian's ``/usr/include/onnxruntime``.  Without headers
or CMake the tests skip with the reason, and CI (AWQ2TRT_REQUIRE_PEERS=1) turns that skip into a failure, so
.ci/run provides the headers (scripts/ort-headers).  Every compute path the CPU runs is forced in turn and checked
against a numpy dequantize-then-matmul; whole exports must give the IR graph's logits with our kernel counted.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from awq2trt.cpu_layout import tile_codes, tile_groups
from awq2trt.targets.matmul_nbits import pack_zero_points
from tests.conftest import ROOT, ort_headers
from tests.ort_driver import IrSession

PATHS = ("scalar", "avx512", "avx2")  # the library's path numbers, in order (plugins/onnxruntime/src/dispatch.h)


@dataclass
class Library:
    path: Path
    handle: ctypes.CDLL

    def compute_count(self) -> int:
        return int(self.handle.awq2trt_ort_compute_count())

    def force(self, path: str | None) -> bool:
        return bool(self.handle.awq2trt_ort_force_path(-1 if path is None else PATHS.index(path)))

    def active_path(self) -> str:
        return self.handle.awq2trt_ort_active_path().decode()

    def last_path(self) -> str:
        return self.handle.awq2trt_ort_last_path().decode()

    def session(self, model: str | bytes, threads: int = 2) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.register_custom_ops_library(str(self.path))
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def library(ort_kernels_library: Path) -> Library:
    path = ort_kernels_library
    handle = ctypes.CDLL(str(path))  # the same dlopen handle ONNX Runtime gets: one set of counters
    handle.awq2trt_ort_compute_count.restype = ctypes.c_uint64
    handle.awq2trt_ort_force_path.argtypes = [ctypes.c_int]
    handle.awq2trt_ort_active_path.restype = ctypes.c_char_p
    handle.awq2trt_ort_last_path.restype = ctypes.c_char_p
    handle.awq2trt_ort_build_info.restype = ctypes.c_char_p
    return Library(path, handle)


def _cpu_flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def _runnable_paths(library: Library) -> list[str]:
    try:
        paths = [path for path in PATHS if library.force(path)]
    finally:
        library.force(None)
    assert paths[0] == "scalar", "the scalar reference must run everywhere"
    return paths


def test_dispatch_picks_the_best_path_this_cpu_has(library: Library) -> None:
    """CPUID's choice is the widest path the CPU runs (read independently from /proc/cpuinfo)."""
    flags, runnable = _cpu_flags(), _runnable_paths(library)
    assert ("avx512" in runnable) == ("avx512f" in flags)
    assert ("avx2" in runnable) == ({"avx2", "fma"} <= flags)
    best = "avx512" if "avx512" in runnable else "avx2" if "avx2" in runnable else "scalar"
    assert library.active_path() == best


def _int4_node_model(
    k: int,
    n: int,
    group: int,
    zero_points: bool,
    bias: bool,
    dtype: type,
    rank: int,
    accuracy_level: int | None = None,
    matmul_nbits: bool = False,
    tiles16: bool = False,
    epilogue: str | None = None,
) -> tuple:
    """One Int4MatMul node (or, on the same data, MatMulNBits) over random codes, and the numpy float64 reference
    weight and bias.  *tiles16*: the node's weights in that layout (weight_layout attribute), tiled by
    awq2trt.cpu_layout (checked against the layout's definition in tests/test_cpu_layout.py)."""
    rng = np.random.default_rng(k * 7919 + n * 31 + group)
    groups = k // group
    codes = rng.integers(0, 16, size=(n, k), dtype=np.uint8)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    scales = (rng.random((n, groups)) * 0.05 + 0.001).astype(dtype)
    zeros = rng.integers(0, 16, size=(n, groups), dtype=np.uint8)
    bias_values = rng.standard_normal(n).astype(dtype)
    initializers = [numpy_helper.from_array(packed, "B"), numpy_helper.from_array(scales, "scales")]
    inputs = ["A", "B", "scales", "", "", ""]
    if matmul_nbits:  # ORT's layout (awq2trt/targets/ort.py): B blocked per group, zero points two per byte
        initializers[0] = numpy_helper.from_array(packed.reshape(n, groups, group // 2), "B")
    if tiles16:
        initializers[0] = numpy_helper.from_array(tile_codes(packed), "B")
        initializers[1] = numpy_helper.from_array(tile_groups(scales), "scales")
    if zero_points:
        zero_values = pack_zero_points(zeros) if matmul_nbits else tile_groups(zeros) if tiles16 else zeros
        initializers.append(numpy_helper.from_array(zero_values, "zeros"))
        inputs[3] = "zeros"
    if bias:
        initializers.append(numpy_helper.from_array(bias_values, "bias"))
        inputs[5 if matmul_nbits else 4] = "bias"
    while inputs[-1] == "":
        inputs.pop()
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.FLOAT16
    lead = ["batch", "seq"] if rank == 3 else ["m"]
    attributes = {"K": k, "N": n, "bits": 4, "block_size": group}
    if accuracy_level is not None:
        attributes["accuracy_level"] = accuracy_level
    if tiles16:
        attributes["weight_layout"] = "tiles16"
    if epilogue is not None:
        attributes["epilogue"] = epilogue
    columns = n // 2 if epilogue == "silu_mul" else n
    op, domain = ("MatMulNBits", "com.microsoft") if matmul_nbits else ("Int4MatMul", "awq2trt")
    node = helper.make_node(op, inputs, ["Y"], name="the_node", domain=domain, **attributes)
    graph = helper.make_graph(
        [node],
        "one_node",
        [helper.make_tensor_value_info("A", elem, [*lead, k])],
        [helper.make_tensor_value_info("Y", elem, [*lead, columns])],
        initializers,
    )
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("awq2trt", 1), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    used_zeros = zeros if zero_points else np.full((n, groups), 8)
    weight = (codes.astype(np.float64) - np.repeat(used_zeros, group, axis=1)) * np.repeat(
        scales.astype(np.float64), group, axis=1
    )
    return model.SerializeToString(), weight, bias_values.astype(np.float64) if bias else 0.0


SHAPES = [  # (K, N, G): one group; an odd number of groups (K not a multiple of 2G); odd N across several tasks
    (48, 5, 16),  # groups shorter than the SIMD paths' 32-code chunk: handed to the scalar path
    (64, 1, 64),
    (96, 37, 32),
    (192, 65, 64),
    (384, 33, 128),
    (640, 48, 128),
    (2560, 37, 128),  # more than one 1024-k panel block of the AVX-512 GEMM
]


@pytest.mark.parametrize(("k", "n", "group"), SHAPES)
@pytest.mark.parametrize(("zero_points", "bias"), [(True, True), (True, False), (False, True), (False, False)])
def test_node_matches_numpy_fp32(library: Library, k: int, n: int, group: int, zero_points: bool, bias: bool) -> None:
    """Exact mode: every runnable path within 1e-5 relative of the float64 dequantize-then-matmul."""
    model, weight, bias_values = _int4_node_model(k, n, group, zero_points, bias, np.float32, rank=2)
    session = library.session(model)
    rng = np.random.default_rng(3)
    try:
        for path in _runnable_paths(library):
            assert library.force(path)
            for m in (1, 7, 19, 64):  # 19 and 64: the AVX-512 GEMM (M >= 16), with and without a row tail
                a = rng.standard_normal((m, k)).astype(np.float32)
                got = session.run(None, {"A": a})[0]
                want = a.astype(np.float64) @ weight.T + bias_values
                assert got.shape == (m, n) and got.dtype == np.float32
                assert library.last_path() == (path if group % 32 == 0 else "scalar")
                error = np.linalg.norm(got - want) / np.linalg.norm(want)
                assert error <= 1e-5, f"{path} path, M={m}: relative error {error:.2e}"
    finally:
        library.force(None)


@pytest.mark.parametrize("zero_points", [True, False])
def test_node_matches_numpy_fp16_rank3(library: Library, zero_points: bool) -> None:
    """fp16 activations, scales and bias on a [batch, seq, K] input: fp32 inside, one fp16 rounding at the end."""
    k, n, group = 192, 37, 64
    model, weight, bias_values = _int4_node_model(k, n, group, zero_points, True, np.float16, rank=3)
    session = library.session(model)
    a = np.random.default_rng(5).standard_normal((2, 5, k)).astype(np.float16)
    want = a.astype(np.float64) @ weight.T + bias_values
    try:
        for path in _runnable_paths(library):
            assert library.force(path)
            got = session.run(None, {"A": a})[0]
            assert got.shape == (2, 5, n) and got.dtype == np.float16
            np.testing.assert_allclose(got.astype(np.float64), want, rtol=2e-3, atol=2e-3, err_msg=path)
    finally:
        library.force(None)


def test_bad_shape_at_run_time_is_an_error_not_a_crash(library: Library) -> None:
    import onnx

    model, _, _ = _int4_node_model(192, 37, 64, True, False, np.float32, rank=2)
    proto = onnx.load_from_string(model)
    proto.graph.input[0].type.tensor_type.shape.dim[-1].dim_param = "k"  # so the wrong K reaches our kernel
    with pytest.raises(Exception, match=r"'the_node': A has shape \[3, 100\], expected \[\.\.\., K\]"):
        library.session(proto.SerializeToString()).run(None, {"A": np.zeros((3, 100), np.float32)})


def test_weights_fed_at_run_time_are_shape_checked_every_call(library: Library) -> None:
    """Constant initializers are shape-checked once at session creation; B fed as a graph input is not constant,
    so a wrong shape in a run is still one error naming the node, never a read past the buffer."""
    import onnx

    model, _, _ = _int4_node_model(192, 37, 64, True, False, np.float32, rank=2)
    proto = onnx.load_from_string(model)
    codes = next(t for t in proto.graph.initializer if t.name == proto.graph.node[0].input[1])
    good = numpy_helper.to_array(codes)
    proto.graph.initializer.remove(codes)
    proto.graph.input.append(helper.make_tensor_value_info(codes.name, TensorProto.UINT8, ["n", "row_bytes"]))
    session = library.session(proto.SerializeToString())
    a = np.zeros((2, 192), np.float32)
    assert session.run(None, {"A": a, codes.name: good})[0].shape == (2, 37)
    with pytest.raises(Exception, match=r"'the_node': B has shape \[37, 48\], expected \[37, 96\]"):
        session.run(None, {"A": a, codes.name: good[:, :48].copy()})


@pytest.mark.parametrize(
    ("attribute", "value", "message"),
    [
        ("bits", 3, r"bits=3 is not supported \(only 4\)"),
        ("bits", 8, r"bits=8 is not supported"),
        ("block_size", 48, r"block_size=48 is not supported \(a power of two >= 16\)"),
        ("block_size", 8, r"block_size=8 is not supported"),
        ("accuracy_level", 2, r"accuracy_level=2 is not supported \(0: fp32 activations, 4: int8"),
        ("accuracy_level", -1, r"accuracy_level=-1 is not supported"),
        ("K", 256, r"A has shape \[-1, 192\], expected \[\.\.\., 256\] for K=256"),
        ("N", 40, r"B has shape \[37, 96\], expected \[40, 96\] for K=192, N=40"),
        ("block_size", 32, r"scales has shape \[37, 3\], expected \[37, 6\]"),
    ],
)
def test_unsupported_attributes_fail_at_session_creation(
    library: Library, attribute: str, value: int, message: str
) -> None:
    """One ONNX Runtime error naming the node and what is wrong, raised when the session is made, not a crash."""
    import onnx

    model, _, _ = _int4_node_model(192, 37, 64, True, False, np.float32, rank=2, accuracy_level=0)
    proto = onnx.load_from_string(model)
    next(a for a in proto.graph.node[0].attribute if a.name == attribute).i = value
    with pytest.raises(Exception, match=f"awq2trt::Int4MatMul node 'the_node': {message}"):
        library.session(proto.SerializeToString())


def test_abi_hooks(library: Library) -> None:
    """The runtime's contract: ABI version 3, and build info naming the version, the API and the paths."""
    assert library.handle.awq2trt_ort_abi_version() == 3
    info = library.handle.awq2trt_ort_build_info().decode()
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = next(line for line in pyproject.splitlines() if line.startswith("version")).split('"')[1]
    header = ((ort_headers() or Path()) / "onnxruntime_c_api.h").read_text()
    api = next(line.split()[2] for line in header.splitlines() if line.startswith("#define ORT_API_VERSION"))
    assert info.startswith(f"awq2trt_ort {version}; ONNX Runtime API {api}; paths scalar"), info
    for path in _runnable_paths(library):
        assert path in info.split("paths", 1)[1].split()


INT8_SHAPES = [  # (K, N, G): odd N; block 16 (scalar only), 32 with an odd block count, 64, 128; K % 128 != 0
    (48, 5, 16),
    (96, 37, 32),
    (160, 21, 32),  # one 128-k step of four blocks, then a 32-k rest
    (320, 33, 64),
    (384, 65, 128),
    (2560, 19, 128),  # more than one 2048-k panel block of the int8 GEMM
]


@pytest.mark.parametrize(("k", "n", "group"), INT8_SHAPES)
@pytest.mark.parametrize(("zero_points", "bias"), [(True, True), (False, False)])
def test_int8_mode_is_within_matmulnbits_level4_error(
    library: Library, k: int, n: int, group: int, zero_points: bool, bias: bool
) -> None:
    """accuracy_level 4: against the float64 reference, every path's max error is at most 1.5x that of ORT's own
    MatMulNBits at level 4 on the same data (measured here), M = 1..16 and 64."""
    ours_model, weight, bias_values = _int4_node_model(k, n, group, zero_points, bias, np.float32, 2, 4)
    theirs_model, _, _ = _int4_node_model(k, n, group, zero_points, bias, np.float32, 2, 4, matmul_nbits=True)
    ours, theirs = library.session(ours_model), library.session(theirs_model)
    exact, _, _ = _int4_node_model(k, n, group, zero_points, bias, np.float32, 2, 0)
    exact_session = library.session(exact)
    rng = np.random.default_rng(11)
    inputs = [rng.standard_normal((m, k)).astype(np.float32) for m in [*range(1, 17), 64]]
    try:
        for path in _runnable_paths(library):
            assert library.force(path)
            for a in inputs:
                want = a.astype(np.float64) @ weight.T + bias_values
                got = ours.run(None, {"A": a})[0]
                assert library.last_path() == (path if group % 32 == 0 else "scalar")
                their_error = float(np.abs(theirs.run(None, {"A": a})[0] - want).max())
                error = float(np.abs(got - want).max())
                scale = float(np.abs(want).max())
                assert error <= 1.5 * their_error + 1e-6 * scale, (
                    f"{path}, M={len(a)}: {error:.3e} vs {their_error:.3e}"
                )
                # and it is the int8 mode, not the exact one: level 0 is far closer to the reference
                exact_error = float(np.abs(exact_session.run(None, {"A": a})[0] - want).max())
                assert exact_error < 0.1 * error, f"{path}, M={len(a)}: level 4 looks exact ({error:.2e})"
    finally:
        library.force(None)


@pytest.mark.parametrize(("k", "n", "group"), INT8_SHAPES)
@pytest.mark.parametrize("accuracy_level", [0, 4])
@pytest.mark.parametrize(("zero_points", "bias"), [(True, True), (False, False)])
def test_tiles16_node_computes_what_the_rows_node_does(
    library: Library, k: int, n: int, group: int, accuracy_level: int, zero_points: bool, bias: bool
) -> None:
    """The same weights in the tiles16 layout give the rows node's output on every path and M (rows is checked
    against numpy above): bit for bit where the path untiles into rows, and within fp32 summation order where the
    int8 tiles kernel (AVX-512 VNNI) runs, since both quantize A into the same int8 blocks."""
    rows_model, _, _ = _int4_node_model(k, n, group, zero_points, bias, np.float32, 2, accuracy_level)
    tiles_model, _, _ = _int4_node_model(k, n, group, zero_points, bias, np.float32, 2, accuracy_level, tiles16=True)
    rows, tiles = library.session(rows_model), library.session(tiles_model)
    vnni = "avx512_vnni" in _cpu_flags()
    rng = np.random.default_rng(17)
    try:
        for path in _runnable_paths(library):
            assert library.force(path)
            tiles_kernel = path == "avx512" and accuracy_level == 4 and vnni
            for m in (1, 3, 4, 5, 8, 19, 64):
                a = rng.standard_normal((m, k)).astype(np.float32)
                want = rows.run(None, {"A": a})[0]
                got = tiles.run(None, {"A": a})[0]
                assert library.last_path() == (path if group % 32 == 0 or tiles_kernel else "scalar")
                if tiles_kernel:
                    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.abs(want).max()))
                else:
                    np.testing.assert_array_equal(got, want, err_msg=f"{path}, M={m}")
    finally:
        library.force(None)


def test_tiles16_int8_rows_do_not_depend_on_the_batch(library: Library) -> None:
    """A row's output is the same bits alone and inside M = 2..9, 12, 13 and 17 (the batched decode of Triton's
    slots; row tiles of 8, 4 and 1): its activation blocks are quantized on their own, and every row tile forms
    the same integer dot products per block and scales them with the same operations."""
    model, _, _ = _int4_node_model(320, 37, 64, True, True, np.float32, 2, 4, tiles16=True)
    session = library.session(model)
    a = np.random.default_rng(23).standard_normal((17, 320)).astype(np.float32)
    alone = np.concatenate([session.run(None, {"A": a[i : i + 1]})[0] for i in range(17)])
    for m in [*range(2, 10), 12, 13, 17]:
        np.testing.assert_array_equal(session.run(None, {"A": a[:m]})[0], alone[:m], err_msg=f"M={m}")


def test_tiles16_fp16_node_matches_numpy(library: Library) -> None:
    """fp16 scales in the tiles16 layout are widened over the padded rows too (N = 37: three tiles)."""
    k, n, group = 192, 37, 64
    model, weight, bias_values = _int4_node_model(k, n, group, True, True, np.float16, 3, 4, tiles16=True)
    a = np.random.default_rng(5).standard_normal((2, 5, k)).astype(np.float16)
    got = library.session(model).run(None, {"A": a})[0]
    want = a.astype(np.float64) @ weight.T + bias_values
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=0, atol=0.02 * float(np.abs(want).max()))


def test_unknown_weight_layout_fails_at_session_creation(library: Library) -> None:
    import onnx

    model, _, _ = _int4_node_model(192, 37, 64, True, False, np.float32, 2, 4, tiles16=True)
    proto = onnx.load_from_string(model)
    next(a for a in proto.graph.node[0].attribute if a.name == "weight_layout").s = b"columns"
    message = 'weight_layout=\'columns\' is not supported \\("rows" or "tiles16"\\)'
    with pytest.raises(Exception, match=f"awq2trt::Int4MatMul node 'the_node': {message}"):
        library.session(proto.SerializeToString())


def test_tiles16_node_with_rows_shaped_weights_fails_at_session_creation(library: Library) -> None:
    import onnx

    model, _, _ = _int4_node_model(192, 37, 64, True, False, np.float32, 2, 4)
    proto = onnx.load_from_string(model)
    proto.graph.node[0].attribute.append(helper.make_attribute("weight_layout", "tiles16"))
    message = r"B has shape \[37, 96\], expected \[3, 24, 16, 4\] for K=192, N=37, block_size=64, weight_layout=tiles16"
    with pytest.raises(Exception, match=f"awq2trt::Int4MatMul node 'the_node': {message}"):
        library.session(proto.SerializeToString())


def _silu_mul(product: np.ndarray) -> np.ndarray:
    """silu(gate) * up in float64, gate and up the halves of *product*'s last axis."""
    gate, up = np.split(product.astype(np.float64), 2, axis=-1)
    return gate / (1.0 + np.exp(-gate)) * up


SILU_MUL_SHAPES = [  # (K, N, G), N a multiple of 32: one task; several tasks with a half-task tail; group 128
    (192, 64, 64),
    (576, 352, 64),
    (384, 96, 128),
]


@pytest.mark.parametrize(("k", "n", "group"), SILU_MUL_SHAPES)
@pytest.mark.parametrize("tiles16", [False, True])
@pytest.mark.parametrize("accuracy_level", [0, 4])
def test_silu_mul_epilogue_applies_swiglu_to_the_nodes_own_product(
    library: Library, k: int, n: int, group: int, tiles16: bool, accuracy_level: int
) -> None:
    """epilogue=silu_mul gives silu(gate) * up of the product the same node computes without it, on every path,
    layout, level and M, to fp32 rounding of the activation; at level 0 that product is checked against numpy."""
    plain_model, weight, bias_values = _int4_node_model(
        k, n, group, True, True, np.float32, 2, accuracy_level, tiles16=tiles16
    )
    fused_model, _, _ = _int4_node_model(
        k, n, group, True, True, np.float32, 2, accuracy_level, tiles16=tiles16, epilogue="silu_mul"
    )
    plain, fused = library.session(plain_model), library.session(fused_model)
    rng = np.random.default_rng(29)
    try:
        for path in _runnable_paths(library):
            assert library.force(path)
            for m in (1, 4, 5, 19):
                a = (3 * rng.standard_normal((m, k))).astype(np.float32)  # gates well into both tails of silu
                product = plain.run(None, {"A": a})[0]
                got = fused.run(None, {"A": a})[0]
                assert got.shape == (m, n // 2) and got.dtype == np.float32
                want = _silu_mul(product)
                scale = float(np.abs(want).max())
                np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6 * scale, err_msg=f"{path}, M={m}")
                if accuracy_level == 0:
                    exact = _silu_mul(a.astype(np.float64) @ weight.T + bias_values)
                    assert np.linalg.norm(got - exact) / np.linalg.norm(exact) <= 1e-5, f"{path}, M={m}"
    finally:
        library.force(None)


def test_silu_mul_epilogue_saturates_cleanly(library: Library) -> None:
    """Gates far beyond e^x's fp32 range: silu(x) is x for large x and 0 (not NaN) for very negative x."""
    k, n, group = 64, 32, 64
    model, weight, bias_values = _int4_node_model(k, n, group, True, True, np.float32, 2, 0, epilogue="silu_mul")
    a = np.random.default_rng(31).standard_normal((3, k)).astype(np.float32) * np.float32(400)
    try:
        for path in _runnable_paths(library):
            assert library.force(path)
            got = library.session(model).run(None, {"A": a})[0]
            assert np.isfinite(got).all(), path
            want = _silu_mul(a.astype(np.float64) @ weight.T + bias_values)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3, err_msg=path)
    finally:
        library.force(None)


def test_silu_mul_epilogue_in_fp16(library: Library) -> None:
    k, n, group = 192, 64, 64
    model, weight, bias_values = _int4_node_model(k, n, group, False, True, np.float16, 3, 4, epilogue="silu_mul")
    a = np.random.default_rng(37).standard_normal((2, 3, k)).astype(np.float16)
    got = library.session(model).run(None, {"A": a})[0]
    assert got.shape == (2, 3, n // 2) and got.dtype == np.float16
    want = _silu_mul(a.astype(np.float64) @ weight.T + bias_values)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=0, atol=0.02 * float(np.abs(want).max()))


@pytest.mark.parametrize(
    ("n", "epilogue", "message"),
    [
        (64, "gelu_mul", 'epilogue=\'gelu_mul\' is not supported \\("none" or "silu_mul"\\)'),
        (48, "silu_mul", r"epilogue='silu_mul' needs N a multiple of 32 .*, got N=48"),
    ],
)
def test_unsupported_epilogues_fail_at_session_creation(library: Library, n: int, epilogue: str, message: str) -> None:
    model, _, _ = _int4_node_model(192, n, 64, True, False, np.float32, 2, 4, epilogue=epilogue)
    with pytest.raises(Exception, match=f"awq2trt::Int4MatMul node 'the_node': {message}"):
        library.session(model)


@pytest.mark.parametrize("case", ["llama-gemm-g64", "qwen2-gemm-g128"])
def test_ir_export_gives_the_function_bodys_logits_through_our_kernel(
    library: Library, shared_export: object, case: str
) -> None:
    """A registered kernel wins over the node's function body (ONNX Runtime inlines the body only for nodes no
    kernel claims): the counter moves by one per Int4MatMul per run, and the logits match the body's."""
    result = shared_export(case, "ir")  # type: ignore[operator]
    folder = result.output
    body = IrSession(folder)
    ours = IrSession(folder)
    ours.session = library.session(str(folder / "model.onnx"))
    ids = np.array([[1, 17, 42, 7, 99, 3], [5, 8, 13, 21, 34, 55]], np.int64)
    before = library.compute_count()
    new_ours, logits_ours = ours.greedy(ids, steps=3)
    assert library.compute_count() - before == result.int4_nodes * 4  # prefill + 3 steps
    new_body, logits_body = body.greedy(ids, steps=3)
    np.testing.assert_array_equal(new_ours, new_body)
    for step, (got, want) in enumerate(zip(logits_ours, logits_body, strict=True)):
        scale = float(np.abs(want).max())
        assert float(np.abs(got - want).max()) <= 1e-4 * max(scale, 1.0), f"step {step}"


def _split_positions(k: int, span: int) -> np.ndarray:
    """Where each k goes when every span of *span* k's is its even k's then its odd k's (the rest of a row that
    is not a whole span: spans of 32), the activation order plugins/onnxruntime/src/int4_problem.h describes."""
    index = np.arange(k)
    if span == 0:
        return index
    spans = np.where(index < k // span * span, span, 32)
    return (index & ~(spans - 1)) + (index & 1) * (spans // 2) + ((index & (spans - 1)) >> 1)


def _numpy_activation_blocks(a: np.ndarray, group: int, span: int) -> tuple[np.ndarray, ...]:
    """accuracy_level 4's blocks in numpy float32: scale amax / 127, codes rint(a * (127 / amax)) (ties to even)."""
    m, k = a.shape
    blocks = a.reshape(m, k // group, group)
    amax = np.abs(blocks).max(axis=2)
    scale = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inverse = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    codes = np.clip(np.rint(blocks * inverse[:, :, None]), -127, 127).astype(np.int8)
    sums = (scale * codes.astype(np.int32).sum(axis=2).astype(np.float32)).astype(np.float32)
    ordered = np.empty((m, k), np.int8)
    ordered[:, _split_positions(k, span)] = codes.reshape(m, k)
    return ordered, scale, sums


@pytest.mark.parametrize(("k", "group"), [(576, 64), (160, 32), (1536, 16), (384, 128), (4096, 2048)])
@pytest.mark.parametrize("span", [0, 8, 32, 128])
def test_activation_quantizers_match_numpy(library: Library, k: int, group: int, span: int) -> None:
    """The scalar and AVX-512 quantizers of level 4 write numpy's int8 blocks bit for bit, in every split order,
    with ties rounded to even and an all-zero block."""
    quantize = library.handle.awq2trt_ort_quantize_activations
    quantize.restype = ctypes.c_int
    rng = np.random.default_rng(k + group + span)
    a = (rng.standard_normal((5, k)) * rng.choice([0.01, 1.0, 300.0], size=(5, 1))).astype(np.float32)
    a[1, :group] = 0.0  # a block of zeros: scale 0, codes 0
    # amax 127 makes the factor exactly 1, so these halves are exact ties that must go to the even neighbour.
    a[2, :group] = np.resize(np.array([127.0, 2.5, -3.5, 0.5, -0.5, 1.5, 126.5], np.float32), group)
    want = _numpy_activation_blocks(a, group, span)
    ran = []
    for path, name in enumerate(("scalar", "avx512")):
        codes = np.full((5, k), 99, np.int8)
        scales, sums = np.zeros((5, k // group), np.float32), np.zeros((5, k // group), np.float32)
        pointer = ctypes.c_void_p
        if not quantize(
            path, pointer(a.ctypes.data), ctypes.c_int64(5), ctypes.c_int64(k), ctypes.c_int64(group),
            ctypes.c_int(span), pointer(codes.ctypes.data), pointer(scales.ctypes.data), pointer(sums.ctypes.data),
        ):  # fmt: skip
            continue
        ran.append(name)
        np.testing.assert_array_equal(codes, want[0], err_msg=name)
        np.testing.assert_array_equal(scales, want[1], err_msg=name)
        np.testing.assert_array_equal(sums, want[2], err_msg=name)
    assert ran[0] == "scalar"
    if "avx512bw" in _cpu_flags():
        assert ran == ["scalar", "avx512"], "this CPU has AVX-512 BW: the vector quantizer must have run"
