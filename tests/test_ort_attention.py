"""awq2trt::GroupQueryAttention (plugins/onnxruntime/src/attention_op.h) against ONNX Runtime's own
com.microsoft.GroupQueryAttention: the same graph, the same inputs, the runtime's pattern of calls (a prefill from
an empty past, then decode steps on one shared KV buffer bound as past and present).

Our library computes the decode steps and hands the prefill to ONNX Runtime's kernel; the counters prove which
ran.  The scalar, AVX-512 and AVX2 paths are each forced in turn where the CPU runs them.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

PATHS = ("scalar", "avx512", "avx2")  # the library's path numbers (plugins/onnxruntime/src/dispatch.h)
MAX_POSITIONS = 1024  # rows of the rotary tables


@dataclass(frozen=True)
class Shape:
    heads: int
    kv_heads: int
    head_size: int
    rotary: bool = True
    window: int = -1  # local_window_size


@dataclass
class Library:
    path: Path
    handle: ctypes.CDLL

    def counts(self) -> tuple[int, int]:
        """(decode steps our kernel computed, calls handed to ONNX Runtime's kernel)."""
        return int(self.handle.awq2trt_ort_attention_decode_count()), int(
            self.handle.awq2trt_ort_attention_handed_over_count()
        )

    def force(self, path: str | None) -> bool:
        return bool(self.handle.awq2trt_ort_force_path(-1 if path is None else PATHS.index(path)))


@pytest.fixture(scope="module")
def library(ort_kernels_library: Path) -> Library:
    handle = ctypes.CDLL(str(ort_kernels_library))  # ONNX Runtime's dlopen gets this handle: one set of counters
    handle.awq2trt_ort_attention_decode_count.restype = ctypes.c_uint64
    handle.awq2trt_ort_attention_handed_over_count.restype = ctypes.c_uint64
    handle.awq2trt_ort_force_path.argtypes = [ctypes.c_int]
    return Library(ort_kernels_library, handle)


@pytest.fixture
def each_path(library: Library) -> Iterator[list[str]]:
    try:
        yield [path for path in ("scalar", "avx512", "avx2") if library.force(path)]
    finally:
        library.force(None)


def attention_model(domain: str, shape: Shape) -> bytes:
    """One GroupQueryAttention node on packed q/k/v, the form fuse_gqa writes."""
    hidden = (shape.heads + 2 * shape.kv_heads) * shape.head_size
    cache = ["batch", shape.kv_heads, "past", shape.head_size]
    inputs = [
        helper.make_tensor_value_info("qkv", TensorProto.FLOAT, ["batch", "sequence", hidden]),
        helper.make_tensor_value_info("past_key", TensorProto.FLOAT, cache),
        helper.make_tensor_value_info("past_value", TensorProto.FLOAT, cache),
        helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["batch"]),
        helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, []),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "sequence"]),
    ]
    present = ["batch", shape.kv_heads, "present", shape.head_size]
    outputs = [
        helper.make_tensor_value_info(
            "output", TensorProto.FLOAT, ["batch", "sequence", shape.heads * shape.head_size]
        ),
        helper.make_tensor_value_info("present_key", TensorProto.FLOAT, present),
        helper.make_tensor_value_info("present_value", TensorProto.FLOAT, present),
    ]
    half = shape.head_size // 2
    angles = np.arange(MAX_POSITIONS)[:, None] * 10000.0 ** (-np.arange(half) / half)[None]
    initializers = [
        numpy_helper.from_array(np.cos(angles).astype(np.float32), "cos_cache"),
        numpy_helper.from_array(np.sin(angles).astype(np.float32), "sin_cache"),
    ]
    attributes = {"num_heads": shape.heads, "kv_num_heads": shape.kv_heads, "scale": shape.head_size**-0.5}
    if shape.window > 0:
        attributes["local_window_size"] = shape.window
    rotary = ["cos_cache", "sin_cache", "position_ids"] if shape.rotary else []
    if shape.rotary:
        attributes["do_rotary"] = 1
    node = helper.make_node(
        "GroupQueryAttention",
        ["qkv", "", "", "past_key", "past_value", "seqlens_k", "total_sequence_length", *rotary],
        ["output", "present_key", "present_value"],
        domain=domain,
        name="layers.0.attention",
        **attributes,
    )
    graph = helper.make_graph([node], "attention", inputs, outputs, initializers if shape.rotary else [])
    if not shape.rotary:
        graph.input.pop(5)  # position_ids: read only by the rotation
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1), helper.make_opsetid(domain, 1)]
    return helper.make_model(graph, opset_imports=opsets[: 2 if domain == "com.microsoft" else 3]).SerializeToString()


def session(model: bytes, library: Library | None, threads: int = 2) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if library is not None:
        options.register_custom_ops_library(str(library.path))
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def generate(
    sess: ort.InferenceSession, shape: Shape, prompts: list[int], steps: int, capacity: int, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Prefill right-padded prompts from an empty past, copy the keys into [batch, kv_heads, capacity, head]
    buffers, then decode *steps* tokens per row with the buffers bound as past and present (the runtime's
    SharedBufferCache).  Returns each call's output (padding rows of the prefill zeroed) and the final buffers."""
    rng = np.random.default_rng(seed)
    batch, longest = len(prompts), max(prompts)
    hidden = (shape.heads + 2 * shape.kv_heads) * shape.head_size
    lengths = np.array(prompts)
    empty = np.zeros((batch, shape.kv_heads, 0, shape.head_size), np.float32)
    feeds = {
        "qkv": rng.standard_normal((batch, longest, hidden)).astype(np.float32),
        "past_key": empty,
        "past_value": empty,
        "seqlens_k": (lengths - 1).astype(np.int32),
        "total_sequence_length": np.array(longest, np.int32),
    }
    if shape.rotary:
        feeds["position_ids"] = np.tile(np.arange(longest), (batch, 1)).astype(np.int64)
    out, key, value = sess.run(None, feeds)
    outputs = [out * (np.arange(longest)[None, :, None] < lengths[:, None, None])]
    keys = np.zeros((batch, shape.kv_heads, capacity, shape.head_size), np.float32)
    values = np.zeros_like(keys)
    keys[:, :, :longest], values[:, :, :longest] = key, value
    binding = sess.io_binding()
    for name, array in (("past_key", keys), ("past_value", values)):
        binding.bind_input(name, "cpu", 0, np.float32, array.shape, array.ctypes.data)
    for name, array in (("present_key", keys), ("present_value", values)):
        binding.bind_output(name, "cpu", 0, np.float32, array.shape, array.ctypes.data)
    binding.bind_cpu_input("total_sequence_length", np.array(capacity, np.int32))
    for _ in range(steps):
        binding.bind_cpu_input("qkv", rng.standard_normal((batch, 1, hidden)).astype(np.float32))
        binding.bind_cpu_input("seqlens_k", lengths.astype(np.int32))  # the new token's index
        if shape.rotary:
            binding.bind_cpu_input("position_ids", lengths[:, None].astype(np.int64))
        step_output = np.full((batch, 1, shape.heads * shape.head_size), np.nan, np.float32)
        binding.bind_output("output", "cpu", 0, np.float32, step_output.shape, step_output.ctypes.data)
        sess.run_with_iobinding(binding)
        outputs.append(step_output)
        lengths = lengths + 1
    return outputs, keys, values


SHAPES = [
    Shape(9, 3, 64),  # SmolLM2
    Shape(8, 2, 128, window=37),  # Mistral-like, a sliding window shorter than the context
    Shape(4, 4, 32, rotary=False),  # no rotation, one query head per KV head
    Shape(6, 2, 48),  # three vectors a head (ONNX Runtime's kernel wants head sizes that are multiples of 16)
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"h{s.heads}kv{s.kv_heads}d{s.head_size}w{s.window}")
@pytest.mark.parametrize("prompts", [[5], [3, 11, 1], [300], [200, 37, 90]], ids=["1row", "3rows", "long", "long3"])
def test_decode_steps_match_onnxruntime(
    library: Library, each_path: list[str], shape: Shape, prompts: list[int]
) -> None:
    """Outputs and the cache within fp32 rounding of ONNX Runtime's kernel; long prompts split each row's span
    over several tasks (the partial softmaxes are merged)."""
    steps, capacity = 12, max(prompts) + 16
    want, want_keys, want_values = generate(
        session(attention_model("com.microsoft", shape), None), shape, prompts, steps, capacity
    )
    for path in each_path:
        assert library.force(path)
        before = library.counts()
        got, keys, values = generate(
            session(attention_model("awq2trt", shape), library), shape, prompts, steps, capacity
        )
        decoded, handed_over = (after - start for after, start in zip(library.counts(), before, strict=True))
        assert (decoded, handed_over) == (steps, 1), path  # the prefill went to ONNX Runtime, every step to us
        peak = max(float(np.abs(w).max()) for w in want)
        for step, (a, b) in enumerate(zip(got, want, strict=True)):
            assert float(np.abs(a - b).max()) <= 2e-6 * peak, (path, step)
        np.testing.assert_allclose(keys, want_keys, rtol=0, atol=2e-6 * float(np.abs(want_keys).max()))
        np.testing.assert_array_equal(values, want_values)  # values are copied, never rotated


def test_a_decode_step_without_a_shared_buffer_is_handed_over(library: Library) -> None:
    """A plain run (present a fresh tensor, past its own) is ONNX Runtime's kernel's, and gives its numbers."""
    shape = SHAPES[0]
    rng = np.random.default_rng(3)
    hidden = (shape.heads + 2 * shape.kv_heads) * shape.head_size
    past = rng.standard_normal((2, shape.kv_heads, 9, shape.head_size)).astype(np.float32)
    feeds = {
        "qkv": rng.standard_normal((2, 1, hidden)).astype(np.float32),
        "past_key": past,
        "past_value": past * 0.5,
        "seqlens_k": np.array([9, 4], np.int32),
        "total_sequence_length": np.array(10, np.int32),
        "position_ids": np.array([[9], [4]], np.int64),
    }
    before = library.counts()
    got = session(attention_model("awq2trt", shape), library).run(None, feeds)
    assert library.counts()[1] - before[1] == 1 and library.counts()[0] == before[0]
    want = session(attention_model("com.microsoft", shape), None).run(None, feeds)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def _decode_once(library: Library, shape: Shape, seqlens: int, position: int, capacity: int = 16) -> None:
    hidden = (shape.heads + 2 * shape.kv_heads) * shape.head_size
    sess = session(attention_model("awq2trt", shape), library)
    cache = np.zeros((1, shape.kv_heads, capacity, shape.head_size), np.float32)
    spare = np.zeros_like(cache)
    binding = sess.io_binding()
    for name, array in (("past_key", cache), ("past_value", spare)):
        binding.bind_input(name, "cpu", 0, np.float32, array.shape, array.ctypes.data)
    for name, array in (("present_key", cache), ("present_value", spare)):
        binding.bind_output(name, "cpu", 0, np.float32, array.shape, array.ctypes.data)
    binding.bind_cpu_input("qkv", np.ones((1, 1, hidden), np.float32))
    binding.bind_cpu_input("seqlens_k", np.array([seqlens], np.int32))
    binding.bind_cpu_input("total_sequence_length", np.array(capacity, np.int32))
    binding.bind_cpu_input("position_ids", np.array([[position]], np.int64))
    binding.bind_output("output")
    sess.run_with_iobinding(binding)


def test_out_of_range_lengths_and_positions_are_one_error(library: Library) -> None:
    """Never a write past the buffer or a read past the rotary tables: one message naming the node."""
    shape = SHAPES[0]
    _decode_once(library, shape, 15, 15)  # the last slot: fine
    with pytest.raises(
        Exception,
        match=r"layers\.0\.attention.*seqlens_k\[0\] = 16: the new token's position must be in the KV buffer's 16 "
        r"positions",
    ):
        _decode_once(library, shape, 16, 16)
    with pytest.raises(Exception, match=r"seqlens_k\[0\] = -1"):
        _decode_once(library, shape, -1, 0)
    with pytest.raises(
        Exception, match=rf"position_ids\[0\] = {MAX_POSITIONS} is outside the rotary tables' {MAX_POSITIONS} positions"
    ):
        _decode_once(library, shape, 3, MAX_POSITIONS)


def test_head_counts_that_do_not_group_are_refused_at_session_creation(library: Library) -> None:
    with pytest.raises(Exception, match=r"num_heads=9 and kv_num_heads=2: expected positive head counts"):
        session(attention_model("awq2trt", Shape(9, 2, 64)), library)
