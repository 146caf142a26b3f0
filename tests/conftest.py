"""Shared test helpers: where the third-party fixtures live and how to read their references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# Checkpoints made by third-party quantizers, with those tools' own outputs: tests/data/peers/README.md.
FIXTURES = ROOT / "tests" / "data" / "peers"
AWQ_FIXTURES = {
    # name: (format label, group size, model_type), two decoder layers each (tests/data/peers/README.md)
    "llama-gemm-g64": ("awq-gemm", 64, "llama"),
    "qwen2-gemm-g128": ("awq-gemm", 128, "qwen2"),
    "llama-gemv-g64": ("awq-gemv", 64, "llama"),
    "llama-ct-g128": ("compressed-tensors", 128, "llama"),
}
# The same label / group / type, for the fixtures that test particular features: six decoder layers (more than
# the layer-stamping template), and the two layouts llm-awq itself has written.
DEEP_FIXTURES = {"llama6-gemm-g128": ("awq-gemm", 128, "llama")}
LLM_AWQ_FIXTURES = {
    "llama-llmawq-old-g64": ("llm-awq-v1", 64, "llama"),
    "llama-llmawq-new-g64": ("llm-awq-v2", 64, "llama"),
}
ALL_FIXTURES = {**AWQ_FIXTURES, **DEEP_FIXTURES, **LLM_AWQ_FIXTURES}
SOURCES = ("llama", "qwen2", "mistral")
DEEP_SOURCES = ("llama",)
# Which unquantized model each fixture was made from, as a path relative to FIXTURES.
FIXTURE_SOURCE = {
    **{name: f"sources/{model_type}" for name, (_, _, model_type) in AWQ_FIXTURES.items()},
    **{name: f"sources/{model_type}" for name, (_, _, model_type) in LLM_AWQ_FIXTURES.items()},
    **{name: f"sources6/{model_type}" for name, (_, _, model_type) in DEEP_FIXTURES.items()},
}


def _present(path: Path, what: str) -> Path:
    """The fixtures travel with the repository: a missing one is a broken checkout, never a reason to skip."""
    if not (path / "config.json").is_file():
        pytest.fail(f"{what} {path} is missing or incomplete (tests/data/peers/ is part of the repository)")
    return path


def fixture_path(name: str) -> Path:
    return _present(FIXTURES / "awq" / name, "third-party fixture")


def source_path(name: str) -> Path:
    return _present(FIXTURES / "sources" / name, "source model")


def deep_source_path(name: str) -> Path:
    return _present(FIXTURES / "sources6" / name, "six-layer source model")


def fixture_source_path(name: str) -> Path:
    """The unquantized model fixture *name* was quantized from."""
    return _present(FIXTURES / FIXTURE_SOURCE[name], "source model")


def import_peer(module: str, install: str) -> Any:
    """Import a peer tool the tests compare against: skip when it is absent, fail if CI requires peers."""
    import importlib
    import os

    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("AWQ2TRT_REQUIRE_PEERS") == "1":
            pytest.fail(f"{module} is not installed but AWQ2TRT_REQUIRE_PEERS=1 ({install})")
        pytest.skip(f"{module} is not installed ({install})")


def copy_with_config(source: Path, dest: Path, **changes: object) -> Path:
    """A writable copy of a checkpoint folder's files (not subfolders), with config.json keys replaced."""
    import json
    import shutil

    dest.mkdir(parents=True)
    for file in source.iterdir():
        if file.is_file():
            shutil.copyfile(file, dest / file.name)
    config = json.loads((dest / "config.json").read_text())
    (dest / "config.json").write_text(json.dumps({**config, **changes}, indent=2))
    return dest


def reference(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "reference" / "reference.safetensors"))


def max_abs_rel(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    diff = actual.astype(np.float64) - expected.astype(np.float64)
    return float(np.abs(diff).max()), float(np.linalg.norm(diff) / np.linalg.norm(expected))


SYMMETRIC_CASE = "mistral-symmetric-g32"  # an RTN checkpoint without zero points (no peer writes one this small)


def symmetric_checkpoint(tmp: Path) -> Path:
    from awq2trt.quantize import quantize_checkpoint

    source = copy_with_config(source_path("mistral"), tmp / "mistral")
    return quantize_checkpoint(source, tmp / "mistral-q", method="rtn", group_size=32, zero_point=False, progress=False)


@pytest.fixture(scope="session", autouse=True)
def _trace_each_structure_once() -> Any:
    """In-process exports share traces of the same model structure (tests/trace_memo.py): the suite exports a
    few fixtures to every target, and tracing is most of an export's time."""
    import os

    from tests.trace_memo import ENV_OFF, memoized_trace

    if os.environ.get(ENV_OFF) == "1":
        yield
        return
    from awq2trt.frontend import export

    original = export._trace
    export._trace = memoized_trace(original)
    yield
    export._trace = original


@pytest.fixture(scope="session")
def shared_export(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """shared_export(case, target="ir", dtype=None, accuracy_level=None, weight_layout=None) -> ExportResult: a peer
    fixture (or SYMMETRIC_CASE) exported once per test session, for the test files that compare or check the same
    exports.  Tests read these folders; one that changes a file works on a copy."""
    import functools

    from awq2trt.frontend.export import export_checkpoint

    @functools.cache
    def checkpoint(case: str) -> Path:
        if case == SYMMETRIC_CASE:
            return symmetric_checkpoint(tmp_path_factory.mktemp("symmetric"))
        return fixture_path(case)

    @functools.cache
    def export(
        case: str,
        target: str = "ir",
        dtype: str | None = None,
        accuracy_level: int | None = None,
        weight_layout: str | None = None,
    ) -> Any:
        level = "" if accuracy_level is None else f"-level{accuracy_level}"
        layout = "" if weight_layout is None else f"-{weight_layout}"
        out = tmp_path_factory.mktemp(f"{case}-{target}-{dtype or 'default'}{level}{layout}") / "model"
        # Only the targets that read them get the options (the others refuse any non-default value).
        options: dict[str, Any] = {} if accuracy_level is None else {"accuracy_level": accuracy_level}
        if weight_layout is not None:
            options["weight_layout"] = weight_layout
        # Session fixtures run outside the per-test offline guard.
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("HF_HUB_OFFLINE", "1")
            patch.setenv("TRANSFORMERS_OFFLINE", "1")
            return export_checkpoint(checkpoint(case), out, target=target, dtype=dtype, progress=False, **options)

    return export


ORT_HEADERS_HELP = (
    "ONNX Runtime's headers are missing: set ONNXRUNTIME_INCLUDE_DIR to a release's include/ "
    "(or install Debian 13's libonnxruntime-dev; scripts/ort-headers fetches it on Debian 12)"
)


def ort_headers() -> Path | None:
    """ONNX Runtime's C/C++ headers: $ONNXRUNTIME_INCLUDE_DIR, else Debian's libonnxruntime-dev, else None."""
    import os

    for folder in (os.environ.get("ONNXRUNTIME_INCLUDE_DIR"), "/usr/include/onnxruntime"):
        if folder and (Path(folder) / "onnxruntime_cxx_api.h").is_file():
            return Path(folder)
    return None


def _build_ort_kernels(tmp_path_factory: pytest.TempPathFactory, name: str, *options: str) -> Path:
    """libawq2trt_ort built from plugins/onnxruntime with CMake *options* into a temporary folder (-Werror, as its
    CMakeLists says).  Skips, with the reason, without headers or cmake; CI provides both, and turns the skip
    into a failure."""
    import shutil
    import subprocess

    headers = ort_headers()
    if headers is None:
        pytest.skip(ORT_HEADERS_HELP)
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed (apt-get install cmake)")
    build = tmp_path_factory.mktemp(name)
    plugin = ROOT / "plugins" / "onnxruntime"
    for command in (
        ["cmake", "-S", str(plugin), "-B", str(build), f"-DONNXRUNTIME_INCLUDE_DIR={headers}", *options],
        ["cmake", "--build", str(build), "-j2"],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return build / "libawq2trt_ort.so"


@pytest.fixture(scope="session")
def ort_kernels_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CPU-only libawq2trt_ort, built once per session."""
    return _build_ort_kernels(tmp_path_factory, "ort-kernels-library")


@pytest.fixture(scope="session")
def ort_kernels_cuda_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libawq2trt_ort with the CUDA provider's kernels (-DAWQ2TRT_ORT_CUDA=ON, nvcc), built once per session;
    it builds plugins/cuda too, under cuda/ in the same folder."""
    return _build_ort_kernels(tmp_path_factory, "ort-kernels-cuda-library", "-DAWQ2TRT_ORT_CUDA=ON")


def engine_info_for(
    sidecar: Any, *, limits: tuple[int, int, int] = (2, 16, 32), engine_bytes: int, plugin_libs: tuple[str, ...] = ()
) -> Any:
    """The engine.json `awq2trt build` would write for *sidecar* at (max_batch, max_seq, max_context), for tests
    that need an engine folder without TensorRT (the engine file beside it is a stand-in nobody loads)."""
    from awq2trt.tensorrt.engine_info import FORMAT_VERSION, EngineInfo
    from awq2trt.tensorrt.profiles import optimization_profiles

    return EngineInfo(
        format_version=FORMAT_VERSION,
        tensorrt_version="10.13.0.35",
        engine="model.plan",
        dtype=sidecar.dtype,
        max_batch=limits[0],
        max_seq=limits[1],
        max_context=limits[2],
        profiles=optimization_profiles(sidecar, *limits),
        plugin_libs=plugin_libs,
        engine_bytes=engine_bytes,
    )


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a model hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


ALLOWED_SKIP_MARKERS = ("gpu", "tensorrt")  # hardware this machine may lack; nothing else may skip in CI


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Under AWQ2TRT_REQUIRE_PEERS=1 (what .ci/run sets) a skip outside the gpu/tensorrt tests is a failure:
    a skipped comparison looks like a pass in a summary line."""
    import os

    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and os.environ.get("AWQ2TRT_REQUIRE_PEERS") == "1"
        and not any(item.get_closest_marker(m) for m in ALLOWED_SKIP_MARKERS)
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (AWQ2TRT_REQUIRE_PEERS=1), which only gpu/tensorrt tests may: {reason}"


def int4_node_model(
    rng: np.random.Generator, *, k: int, n: int, group: int, zero_points: bool, bias: bool, dtype: Any
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One ``awq2trt::Int4MatMul`` on a rank-3 activation of *dtype*, weights as initializers, drawn from *rng*:
    (model proto, codes [N, K], scales [N, K/G] (fp16 values), zero points [N, K/G] (8 when symmetric), bias)."""
    from onnx import helper, numpy_helper

    codes = rng.integers(0, 16, size=(n, k), dtype=np.uint8)
    scales = (rng.random((n, k // group)) * 0.02 + 0.001).astype(np.float16).astype(dtype)
    zeros = rng.integers(0, 16, size=(n, k // group), dtype=np.uint8) if zero_points else np.full((n, k // group), 8)
    bias_values = rng.standard_normal(n).astype(dtype)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    initializers = [numpy_helper.from_array(packed, "m.qweight"), numpy_helper.from_array(scales, "m.scales")]
    inputs = ["a", "m.qweight", "m.scales"]
    if zero_points:
        initializers.append(numpy_helper.from_array(zeros.astype(np.uint8), "m.zeros"))
        inputs.append("m.zeros")
    if bias:
        initializers.append(numpy_helper.from_array(bias_values, "m.bias"))
        inputs += [""] * (4 - len(inputs)) + ["m.bias"]
    node = helper.make_node("Int4MatMul", inputs, ["y"], domain="awq2trt", K=k, N=n, bits=4, block_size=group)
    element = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = helper.make_graph(
        [node],
        "one",
        [helper.make_tensor_value_info("a", element, ["batch", "seq", k])],
        [helper.make_tensor_value_info("y", element, ["batch", "seq", n])],
        initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("awq2trt", 1)])
    return proto, codes, scales, zeros, bias_values
