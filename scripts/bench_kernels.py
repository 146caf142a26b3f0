"""Time awq2trt::Int4MatMul (plugins/onnxruntime) against ONNX Runtime's MatMulNBits, node by node.

    OPENBLAS_NUM_THREADS=1 python scripts/bench_kernels.py [--quick] [--library PATH]

(OPENBLAS_NUM_THREADS=1: numpy's BLAS threads, woken by the reference check, would spin on the 2 cores.)

Each case is one weight shape and one M.  Every engine (ours at accuracy_level 0 and 4, on the rows layout and on
the tiles16 layout that the ort-kernels export writes; MatMulNBits at 0 and 4) gets the same weights as
initializers and is checked against a float64 numpy dequantize-then-matmul before it is timed; then the engines
are timed in turn, round by round, and the table gives medians of per-round ratios.

Decode reads weights that are not in any cache, so for small M a model holds enough copies of the node, each
with its own weights, that one run streams ``--stream-mib`` (more than the L3); a time per call is the run's time
divided by the copies.  For large M the kernels are compute-bound and one node is timed.  The machine's read
bandwidth is probed in the same run, before every round: two threads each sum half of a 1 GiB buffer in a C
loop (scripts/read_bandwidth.py; a numpy fallback without gcc, which reads slower, and the table says which).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from read_bandwidth import ReadProbe  # scripts/ is the script's own folder on sys.path

from awq2trt.cpu_layout import tile_codes, tile_groups
from awq2trt.targets.matmul_nbits import pack_zero_points

ROOT = Path(__file__).resolve().parent.parent
THREADS = 2
SMOLLM2 = [("qkv", 576, 960), ("o", 576, 576), ("gate_up", 576, 3072), ("down", 1536, 576)]  # group 64
LLAMA7B = [("q", 4096, 4096), ("up", 4096, 11008), ("down", 11008, 4096)]  # group 128
# ours: the rows layout (the IR's); tiles: the tiles16 layout (awq2trt/cpu_layout.py, the ort-kernels export's).
ENGINES = ("ours-L0", "ours-L4", "tiles-L0", "tiles-L4", "mnb-L0", "mnb-L4")


@dataclass
class Weights:
    k: int
    n: int
    group: int
    packed: np.ndarray  # [N, K/2] uint8, even k in the low nibble
    scales: np.ndarray  # [N, K/G] float32
    zeros: np.ndarray  # [N, K/G] uint8 codes

    @property
    def nbytes(self) -> int:
        return self.packed.nbytes + self.scales.nbytes + self.zeros.nbytes

    def dense(self) -> np.ndarray:
        codes = np.empty((self.n, self.k), np.float64)
        codes[:, 0::2], codes[:, 1::2] = self.packed & 0x0F, self.packed >> 4
        zeros = np.repeat(self.zeros.astype(np.float64), self.group, axis=1)
        return (codes - zeros) * np.repeat(self.scales.astype(np.float64), self.group, axis=1)


def random_weights(k: int, n: int, group: int, seed: int) -> Weights:
    rng = np.random.default_rng(seed)
    packed = rng.integers(0, 256, size=(n, k // 2), dtype=np.uint8)
    scales = (rng.random((n, k // group), dtype=np.float32) * 0.02 + 0.001).astype(np.float32)
    zeros = rng.integers(0, 16, size=(n, k // group), dtype=np.uint8)
    return Weights(k, n, group, packed, scales, zeros)


def node_model(engine: str, weights: list[Weights]) -> bytes:
    """One node per copy of the weights, all reading A; outputs Y0, Y1, ..."""
    w0 = weights[0]
    level = int(engine[-1])
    nodes, inits = [], []
    for i, w in enumerate(weights):
        names = [f"B{i}", f"S{i}", f"Z{i}"]
        attrs = {"K": w.k, "N": w.n, "bits": 4, "block_size": w.group, "accuracy_level": level}
        scales = w.scales
        if engine.startswith("ours"):
            inits += [numpy_helper.from_array(w.packed, names[0]), numpy_helper.from_array(w.zeros, names[2])]
            op, domain = "Int4MatMul", "awq2trt"
        elif engine.startswith("tiles"):
            inits += [numpy_helper.from_array(tile_codes(w.packed), names[0])]
            inits += [numpy_helper.from_array(tile_groups(w.zeros), names[2])]
            scales, attrs["weight_layout"] = tile_groups(w.scales), "tiles16"
            op, domain = "Int4MatMul", "awq2trt"
        else:
            blocked = w.packed.reshape(w.n, w.k // w.group, w.group // 2)
            inits += [numpy_helper.from_array(blocked, names[0])]
            inits += [numpy_helper.from_array(pack_zero_points(w.zeros), names[2])]
            op, domain = "MatMulNBits", "com.microsoft"
        inits.append(numpy_helper.from_array(scales, names[1]))
        nodes.append(helper.make_node(op, ["A", *names], [f"Y{i}"], domain=domain, **attrs))
    graph = helper.make_graph(
        nodes,
        "bench",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["m", w0.k])],
        [helper.make_tensor_value_info(f"Y{i}", TensorProto.FLOAT, ["m", w0.n]) for i in range(len(weights))],
        inits,
    )
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("awq2trt", 1), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def build_library() -> Path:
    """cmake-build plugins/onnxruntime into a cache folder (incremental: a rebuild is quick)."""
    headers = (
        os.environ.get("ONNXRUNTIME_INCLUDE_DIR")
        or subprocess.run(
            ["bash", str(ROOT / "scripts" / "ort-headers")], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    build = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "awq2trt" / "bench-kernels"
    plugin = ROOT / "plugins" / "onnxruntime"
    subprocess.run(["cmake", "-S", plugin, "-B", build, f"-DONNXRUNTIME_INCLUDE_DIR={headers}"], check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run(["cmake", "--build", build, "-j2"], check=True, capture_output=True)
    return build / "libawq2trt_ort.so"


class Runner:
    """A session over a model; bind() fixes A and the outputs, so a timed run does no allocation in Python."""

    def __init__(self, model: bytes, library: Path, n: int, copies: int) -> None:
        options = ort.SessionOptions()
        options.register_custom_ops_library(str(library))
        options.intra_op_num_threads = THREADS
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.n, self.copies = n, copies

    def bind(self, a: np.ndarray) -> None:
        self.outputs = [np.empty((a.shape[0], self.n), np.float32) for _ in range(self.copies)]
        self.binding = self.session.io_binding()
        self.binding.bind_cpu_input("A", a)
        for i, out in enumerate(self.outputs):
            self.binding.bind_output(f"Y{i}", "cpu", 0, np.float32, list(out.shape), out.ctypes.data)

    def run(self) -> None:
        self.session.run_with_iobinding(self.binding)


def seconds_per_run(run: Callable[[], None], budget: float) -> float:
    """Median over repeated runs filling about *budget* seconds (at least 3)."""
    run()  # warm: first-touch of buffers, thread pool wake-up
    times: list[float] = []
    while len(times) < 3 or sum(times) < budget:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


_PROBE: list[ReadProbe] = []  # made on first use: 1 GiB, far past the L3


def probe_bandwidth() -> float:
    """GB/s of two threads each reading one half of a 1 GiB buffer (scripts/read_bandwidth.py)."""
    if not _PROBE:
        _PROBE.append(ReadProbe(1 << 30, THREADS))
    return _PROBE[0].measure()


def check(engine: str, got: np.ndarray, want: np.ndarray) -> None:
    """Exact engines within float summation error; int8-activation ones within a few tenths of a percent."""
    error = float(np.linalg.norm(got - want) / np.linalg.norm(want))
    limit = 1e-5 if engine.endswith("L0") else 2e-2
    if not error <= limit:
        raise SystemExit(f"{engine}: relative error {error:.2e} > {limit:g}: not timing a kernel that is wrong")


def bench_shape(
    library: Path, shape: tuple[str, int, int], group: int, ms: list[int], rounds: int, stream: int, bw: list[float]
) -> dict[int, dict[str, list[float]]]:
    """Per M, per engine, the time per call of each round; sessions are made once per weight set."""
    _, k, n = shape
    one = random_weights(k, n, group, seed=k * 31 + n)
    dense = one.dense()
    copies = max(1, -(-stream // one.nbytes))
    streamed = [one] + [random_weights(k, n, group, seed=k * 31 + n + i) for i in range(1, copies)]
    results: dict[int, dict[str, list[float]]] = {}
    for weights, case_ms in (([one], [m for m in ms if m > 16]), (streamed, [m for m in ms if m <= 16])):
        if not case_ms:
            continue
        runners = {engine: Runner(node_model(engine, weights), library, n, len(weights)) for engine in ENGINES}
        for m in case_ms:
            a = np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)
            want = a[:16].astype(np.float64) @ dense.T  # checking 16 rows is enough and keeps M = 512 quick
            for engine, runner in runners.items():
                runner.bind(a)
                runner.run()
                check(engine, runner.outputs[0][:16], want)
            times: dict[str, list[float]] = {engine: [] for engine in ENGINES}
            budget = 0.05 if m <= 16 else 0.2
            for _ in range(rounds):
                bw.append(probe_bandwidth())
                for engine, runner in runners.items():
                    runner.bind(a)
                    times[engine].append(seconds_per_run(runner.run, budget) / len(weights))
            times["bytes"] = [float(one.nbytes)]
            results[m] = times
            print(f"  done {shape[0]} {k}x{n} M={m}", flush=True)
        del runners
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", type=Path, help="a built libawq2trt_ort.so (default: build one)")
    parser.add_argument("--quick", action="store_true", help="3 rounds, fewer shapes and M")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--stream-mib", type=int, default=256, help="weights streamed per run for M <= 16")
    args = parser.parse_args()
    library = args.library or build_library()
    rounds = 3 if args.quick else args.rounds
    cases = [(s, 64) for s in SMOLLM2] + [(s, 128) for s in LLAMA7B]
    ms = (1, 4, 16, 128, 512)
    if args.quick:
        cases, ms = [cases[0], cases[2], cases[4]], (1, 16, 128)
    bandwidth: list[float] = []
    rows = []
    for shape, group in cases:
        results = bench_shape(library, shape, group, list(ms), rounds, args.stream_mib << 20, bandwidth)
        rows += [(shape, group, m, results[m]) for m in ms]
    probe = statistics.median(bandwidth)
    print(f"\nread bandwidth probe ({_PROBE[0].kind}, median of {len(bandwidth)}): {probe:.1f} GB/s")
    print(f"{rounds} rounds; x mnb = MatMulNBits time at the same level / ours (median of per-round ratios; > 1: ours")
    print("faster); rows: our kernel on the rows layout; tiles16: on the tiles16 layout\n")
    head = f"{'shape':<22}{'M':>5}  {'mode':<4}{'mnb us':>9}"
    print(head + "".join(f"{col:>9}" for col in ("rows us", "%bw", "x mnb", "tiles us", "%bw", "x mnb")))
    for (name, k, n), group, m, times in rows:
        for level in ("L0", "L4"):
            mnb = times[f"mnb-{level}"]
            cells = [f"{statistics.median(mnb) * 1e6:>9.1f}"]
            for layout in ("ours", "tiles"):
                ours = times[f"{layout}-{level}"]
                t = statistics.median(ours)
                gbs = times["bytes"][0] / t / 1e9
                ratio = statistics.median(b / o for b, o in zip(mnb, ours, strict=True))
                cells += [f"{t * 1e6:>9.1f}", f"{100 * gbs / probe:>9.0f}", f"{ratio:>9.2f}"]
            print(f"{name + f' {k}x{n} g{group}':<22}{m:>5}  {level:<4}" + "".join(cells))


if __name__ == "__main__":
    main()
