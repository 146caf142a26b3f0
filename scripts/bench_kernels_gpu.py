"""Speed of plugins/cuda's int4 dequant-GEMM on a GPU, against the device's copy bandwidth, torch fp16 matmul
(cuBLAS) and, when onnxruntime-gpu is installed, ONNX Runtime CUDA's MatMulNBits.

    bash scripts/venv-run python scripts/bench_kernels_gpu.py                     # the issue's shapes and M values
    bash scripts/venv-run python scripts/bench_kernels_gpu.py --shapes 4096x4096 --m 1 16 --json /tmp/k.json

Shapes are K x N (in_features x out_features) with group 128 and zero points (AWQ's default).  Each case is
checked against torch (dequantize to fp16, matmul) before it is timed, so a wrong kernel prints no speed.
Times are CUDA-event medians of --iters launches after a warm-up; "bandwidth" is the bytes the kernel must
read and write (codes, scales, zeros, A, Y) over its time, as a fraction of the device-to-device copy bandwidth
(read + write) measured in the same run.  Targets (issue 18): M = 1 at >= 85 % of the copy bandwidth; M <= 16
at >= 3x the fp16 matmul; M = 128 no slower than fp16.  The library is built into --build-dir (nvcc, CMake).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from awq2trt import cuda_kernels
from awq2trt.cuda_layout import to_cuda
from awq2trt.quant_weight import QuantWeight

SHAPES = ("4096x4096", "4096x11008", "11008x4096", "8192x28672")
M_VALUES = (1, 2, 4, 8, 16, 32, 128)
GROUP = 128


def time_ms(torch: Any, fn: Any, iters: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth(torch: Any, iters: int) -> float:
    """Device-to-device copy of 1 GiB: bytes read + written per second."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = time_ms(torch, lambda: dst.copy_(src), iters)
    return 2 * src.numel() / (ms * 1e-3)


def ort_matmulnbits(torch: Any, weight: QuantWeight, m: int) -> Any | None:
    """A timed-callable for ORT CUDA's MatMulNBits on the same weight, or None without onnxruntime-gpu."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    from awq2trt.targets.matmul_nbits import pack_zero_points

    n, k = weight.out_features, weight.in_features
    groups = k // GROUP
    codes = weight.qweight
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8).reshape(n, groups, GROUP // 2)
    inits = [
        numpy_helper.from_array(packed, "B"),
        numpy_helper.from_array(weight.scales.astype(np.float16), "scales"),
        numpy_helper.from_array(pack_zero_points(weight.zeros), "zp"),
    ]
    node = helper.make_node(
        "MatMulNBits", ["A", "B", "scales", "zp"], ["Y"], domain="com.microsoft", K=k, N=n, bits=4, block_size=GROUP
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT16, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT16, [m, n])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CUDAExecutionProvider"])
    a = torch.randn((m, k), device="cuda").half()
    y = torch.empty((m, n), device="cuda", dtype=torch.float16)
    binding = session.io_binding()
    binding.bind_input("A", "cuda", 0, np.float16, [m, k], a.data_ptr())
    binding.bind_output("Y", "cuda", 0, np.float16, [m, n], y.data_ptr())
    return lambda: session.run_with_iobinding(binding)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), help="K x N, e.g. 4096x11008")
    parser.add_argument("--m", nargs="+", type=int, default=list(M_VALUES))
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--build-dir", type=Path, default=None, help="CMake build folder (default: a temp one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU: this benchmark needs one (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    build = args.build_dir or Path(tempfile.mkdtemp(prefix="awq2trt-cuda-"))
    library, log = cuda_kernels.build_library(build)
    for f in cuda_kernels.ptxas_figures(log):
        print(f"ptxas {f.arch} {f.function}: {f.registers} registers, {f.spill_stores} B spill stores", file=sys.stderr)
    kernels = cuda_kernels.Kernels(library)
    props = torch.cuda.get_device_properties(0)
    sms = props.multi_processor_count
    copy_bw = copy_bandwidth(torch, args.iters)
    print(f"device: {props.name}, {sms} SMs, copy bandwidth {copy_bw / 1e9:.0f} GB/s", file=sys.stderr)

    rng = np.random.default_rng(0)
    rows = []
    print("| K x N | M | split-K | int4 us | bandwidth / copy | fp16 us | vs fp16 | ORT MatMulNBits us | vs ORT |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape in args.shapes:
        k, n = (int(x) for x in shape.lower().split("x"))
        groups = k // GROUP
        weight = QuantWeight(
            rng.integers(0, 16, (n, k), dtype=np.uint8),
            (rng.random((n, groups)) * 0.02 + 1e-3).astype(np.float16),
            rng.integers(0, 16, (n, groups), dtype=np.uint8),
            GROUP,
        )
        cuda = to_cuda(weight, scale_dtype=np.float16)
        codes = torch.from_numpy(cuda.codes.copy()).cuda()
        scales = torch.from_numpy(cuda.scales.copy()).cuda()
        zeros = torch.from_numpy(cuda.zeros.copy()).cuda()
        dense = torch.from_numpy(weight.dequantize(np.float32)).cuda().half()
        for m in args.m:
            a = torch.randn((m, k), device="cuda").half()
            y = torch.empty((m, n), device="cuda", dtype=torch.float16)
            size = kernels.workspace_size(m, n, k, sms)
            workspace = torch.empty(max(size, 1), dtype=torch.uint8, device="cuda")
            gemm_args = cuda_kernels.GemmArgs(
                m, n, k, GROUP, cuda_kernels.FP16, a.data_ptr(), codes.data_ptr(), scales.data_ptr(),
                zeros.data_ptr(), 0, y.data_ptr(),
            )  # fmt: skip
            stream = torch.cuda.current_stream().cuda_stream

            def run(
                gemm_args: Any = gemm_args, workspace: Any = workspace, size: int = size, stream: int = stream
            ) -> None:
                kernels.gemm(gemm_args, workspace.data_ptr(), size, sms, stream)

            run()
            torch.cuda.synchronize()
            want = a.float() @ dense.float().T
            err = (y.float() - want).abs().max().item() / (want.abs().max().item() + 1e-6)
            if not err <= 2**-9:
                print(f"{shape} M={m}: WRONG (relative max error {err:.3g}); not timed", file=sys.stderr)
                rows.append({"k": k, "n": n, "m": m, "wrong": err})
                continue
            ours = time_ms(torch, run, args.iters)
            fp16 = time_ms(torch, lambda a=a, dense=dense: torch.matmul(a, dense.T), args.iters)
            ort_fn = ort_matmulnbits(torch, weight, m)
            ort_ms = time_ms(torch, ort_fn, args.iters) if ort_fn else None
            moved = codes.numel() * 4 + scales.numel() * 2 + zeros.numel() + a.numel() * 2 + y.numel() * 2
            fraction = moved / (ours * 1e-3) / copy_bw
            row = {
                "k": k, "n": n, "m": m, "split_k": kernels.split_k(m, n, k, sms), "int4_ms": ours,
                "bandwidth_fraction": fraction, "fp16_ms": fp16, "ort_ms": ort_ms, "max_rel_error": err,
            }  # fmt: skip
            rows.append(row)
            ort_text = f"{ort_ms * 1e3:.1f} | {ort_ms / ours:.2f}x" if ort_ms else "n/a | n/a"
            print(
                f"| {k}x{n} | {m} | {row['split_k']} | {ours * 1e3:.1f} | {fraction:.0%} | {fp16 * 1e3:.1f} | "
                f"{fp16 / ours:.2f}x | {ort_text} |",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps({"device": props.name, "copy_bandwidth": copy_bw, "rows": rows}, indent=2))
    return 0 if not any("wrong" in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
