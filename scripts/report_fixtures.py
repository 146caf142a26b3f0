"""Print how closely our reference model reproduces each third-party fixture's own outputs.

    bash scripts/venv-run python scripts/report_fixtures.py [--fixtures tests/data/peers]

For every fixture: the dequantized layer-0 q_proj against the tool's dequantization, and the prefill logits of
our fp32 and fp16 reference models against the tool's logits (max-abs and relative L2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file

from awq2trt.checkpoint import open_checkpoint
from awq2trt.modeling import load_reference_model

ROOT = Path(__file__).resolve().parents[1]


def errors(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    diff = actual.astype(np.float64) - expected
    return float(np.abs(diff).max()), float(np.linalg.norm(diff) / np.linalg.norm(expected))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", type=Path, default=ROOT / "tests" / "data" / "peers")
    args = parser.parse_args()
    rows = []
    for folder in sorted((args.fixtures / "awq").iterdir()):
        ref = load_file(str(folder / "reference" / "reference.safetensors"))
        ckpt = open_checkpoint(folder)
        dq = ckpt.quant_weight("model.layers.0.self_attn.q_proj")
        dq_fp16_equal = np.array_equal(dq.dequantize(np.float16).astype(np.float32), ref["dequant_layer0_q_proj"])
        row = [folder.name, ckpt.title, "bit-exact" if dq_fp16_equal else "DIFFERS"]
        for dtype in ("fp32", "fp16"):
            model = load_reference_model(ckpt, dtype=dtype, progress=False)
            with torch.inference_mode():
                logits = model(torch.from_numpy(ref["input_ids"])).logits.float().numpy()
            row.extend(f"{v:.2e}" for v in errors(logits, ref["logits"].astype(np.float64)))
        rows.append(row)
    header = ["fixture", "format", "q_proj dequant (fp16)", "fp32 max-abs", "fp32 rel", "fp16 max-abs", "fp16 rel"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
