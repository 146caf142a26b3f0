"""Print how the ``trt`` export compares with the IR graph, per checkpoint: logits error, tokens, nodes, sizes.

    bash scripts/venv-run python scripts/report_trt.py [--smollm2 [rtn] [awq]] [--no-fixtures] [--steps 32]

For every peer fixture (and, with ``--smollm2``, SmolLM2-135M quantized by our RTN and AWQ at group 64): the IR
export and the fp32 ``trt`` export, both run by stock ONNX Runtime on the CPU (the trt graph's INT4
DequantizeLinear + MatMul at the exact accuracy level), fed the same prompt and decoded greedily.  Columns:
the largest logits difference over the prefill and the first 8 decode steps (absolute, and relative to the
logits' largest magnitude), whether all greedy tokens agree, the default fp16 trt graph's prefill error against
the fp32 one, node counts (IR, trt, DequantizeLinear, correction ReduceSum) and the bytes of the INT4 weights,
their scales and the zero-point correction terms C = s(8 - z).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from awq2trt.frontend.export import export_checkpoint  # noqa: E402
from tests.ort_driver import IrSession  # noqa: E402  (the plain KV-feeding driver the tests use)

FIXTURES = ROOT / "tests" / "data" / "peers" / "awq"
PROMPT = np.arange(3, 19, dtype=np.int64)[None]


def _bytes(graph: onnx.GraphProto, suffix: str) -> int:
    total = 0
    for tensor in graph.initializer:
        if tensor.name.endswith(suffix):
            count = int(np.prod(tensor.dims))
            total += (
                count // 2
                if tensor.data_type == onnx.TensorProto.INT4
                else count * (2 if tensor.data_type == onnx.TensorProto.FLOAT16 else 4)
            )
    return total


def compare(name: str, checkpoint: Path, out: Path, steps: int) -> str:
    ir = export_checkpoint(checkpoint, out / "ir", progress=False).output
    trt = export_checkpoint(checkpoint, out / "trt", target="trt", dtype="fp32", progress=False).output
    half = export_checkpoint(checkpoint, out / "trt16", target="trt", progress=False).output
    ir_half = export_checkpoint(checkpoint, out / "ir16", dtype="fp16", progress=False).output
    ir_ids, ir_logits = IrSession(ir).greedy(PROMPT, steps)
    trt_ids, trt_logits = IrSession(trt).greedy(PROMPT, steps)
    absolute = max(float(np.abs(trt_logits[s] - ir_logits[s]).max()) for s in range(9))
    size = max(float(np.abs(ir_logits[s]).max()) for s in range(9))
    fp16 = IrSession(half).prefill(PROMPT)[0].astype(np.float32)
    fp32 = IrSession(trt).prefill(PROMPT)[0]
    fp16_error = float(np.abs(fp16 - fp32).max())
    ir16 = IrSession(ir_half).prefill(PROMPT)[0].astype(np.float32)
    ir_fp16_error = float(np.abs(ir16 - IrSession(ir).prefill(PROMPT)[0]).max())
    ir_graph = onnx.load(str(ir / "model.onnx"), load_external_data=False).graph
    graph = onnx.load(str(trt / "model.onnx"), load_external_data=False).graph
    ops = [node.op_type for node in graph.node]
    weights = _bytes(graph, ".weight_int4")
    corrections = _bytes(graph, ".zero_correction")
    return (
        f"| {name} | {absolute:.2e} | {absolute / size:.1e} | {'yes' if (ir_ids == trt_ids).all() else 'NO'} "
        f"| {fp16_error:.2e} | {ir_fp16_error:.2e} | {len(ir_graph.node)} | {len(ops)} "
        f"| {ops.count('DequantizeLinear')} "
        f"| {ops.count('ReduceSum')} | {weights / 2**20:.2f} | {_bytes(graph, '.scales_kn') / 2**20:.3f} "
        f"| {corrections / 2**20:.3f} ({100 * corrections / max(weights, 1):.1f} %) |"
    )


def smollm2_checkpoints(tmp: Path, methods: list[str]) -> list[tuple[str, Path]]:
    from awq2trt.models import prepare_default_model
    from awq2trt.quantize import quantize_checkpoint

    dense = prepare_default_model(None)
    return [
        (f"SmolLM2-135M {method.upper()} g64", quantize_checkpoint(dense, tmp / method, method=method, group_size=64))
        for method in methods
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smollm2", nargs="*", choices=("rtn", "awq"), help="also SmolLM2-135M quantized at group 64 (default both)"
    )
    parser.add_argument("--no-fixtures", action="store_true", help="skip the peer fixtures")
    parser.add_argument("--steps", type=int, default=32, help="greedy tokens compared (default 32)")
    args = parser.parse_args()
    print(
        "| checkpoint | max abs (9 forwards) | relative | tokens equal | trt fp16 vs fp32 | IR fp16 vs fp32 "
        "| IR nodes | trt nodes "
        "| DequantizeLinear | ReduceSum | INT4 weights MiB | scales MiB | correction MiB (of weights) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        fixtures = [] if args.no_fixtures else sorted(FIXTURES.iterdir())
        cases = [(p.name, p) for p in fixtures if (p / "config.json").is_file()]
        if args.smollm2 is not None:
            cases += smollm2_checkpoints(Path(tmp), args.smollm2 or ["rtn", "awq"])
        for index, (name, checkpoint) in enumerate(cases):
            print(compare(name, checkpoint, Path(tmp) / str(index), args.steps), flush=True)


if __name__ == "__main__":
    main()
