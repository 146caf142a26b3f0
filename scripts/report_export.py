"""Print how closely the exported IR graph (stock ONNX Runtime, CPU) reproduces the PyTorch reference.

    bash scripts/venv-run python scripts/report_export.py [--smollm2]

Per checkpoint: prefill max-abs error against the reference model and against the tool's own logits (fixtures),
the worst max-abs over 8 decode steps through the KV cache, whether 32 greedy tokens are identical, and the
export time.  ``--smollm2`` adds SmolLM2-135M-Instruct quantized with RTN (group 64).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from awq2trt.frontend.export import export_checkpoint  # noqa: E402
from awq2trt.modeling import load_reference_model  # noqa: E402
from tests.ort_driver import IrSession  # noqa: E402
from tests.test_export import torch_greedy  # noqa: E402


def report(name: str, checkpoint: Path, ids: np.ndarray, tool_logits: np.ndarray | None, work: Path) -> list[str]:
    start = time.perf_counter()
    folder = export_checkpoint(checkpoint, work / name, progress=False, force=True).output
    seconds = time.perf_counter() - start
    model = load_reference_model(checkpoint, progress=False, cache_dense=True)
    session = IrSession(folder)
    new_ids, steps = session.greedy(ids, 32)
    torch_ids, torch_steps = torch_greedy(model, ids, 32)
    prefill = float(np.abs(steps[0] - torch_steps[0]).max())
    decode = max(float(np.abs(a - b).max()) for a, b in zip(steps[1:9], torch_steps[1:9], strict=True))
    tool = "-"
    if tool_logits is not None:
        logits, _, _ = session.prefill(ids)
        tool = f"{float(np.abs(logits - tool_logits).max()):.2e}"
    same = "identical" if np.array_equal(new_ids, torch_ids) else "DIFFER"
    return [name, f"{prefill:.2e}", f"{decode:.2e}", tool, same, f"{seconds:.1f} s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", type=Path, default=ROOT / "tests" / "data" / "peers")
    parser.add_argument("--smollm2", action="store_true", help="also SmolLM2-135M RTN g64 (a few minutes)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for folder in sorted((args.fixtures / "awq").iterdir()):
            ref = load_file(str(folder / "reference" / "reference.safetensors"))
            rows.append(report(folder.name, folder, ref["input_ids"], ref["logits"], work))
        if args.smollm2:
            from awq2trt.evaluate.reference import load_tokenizer
            from awq2trt.models import prepare_default_model
            from awq2trt.quantize import quantize_checkpoint

            rtn = quantize_checkpoint(
                prepare_default_model(), work / "smollm2-rtn", method="rtn", group_size=64, progress=False
            )
            text = "The GNU General Public License is a free, copyleft license"
            ids = np.array([load_tokenizer(rtn)(text)["input_ids"][:16]])
            rows.append(report("SmolLM2-135M RTN g64", rtn, ids, None, work))
    header = ["checkpoint", "prefill max-abs", "decode max-abs (8 steps)", "vs tool logits", "32 greedy ids", "export"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
