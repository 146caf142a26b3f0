"""Print how far each exported graph's prefill logits are from the fixture tool's own logits: ours and GenAI's.

    bash scripts/venv-run python scripts/report_graph_logits.py [--skip-peer]

For every AWQ fixture in tests/data/peers/awq: our ``ort`` export at accuracy level 0 and 4, and the graph
ONNX Runtime GenAI's model builder makes from the same checkpoint (``-p int4 -e cpu``, in the peer venv that
scripts/bench_decode.py uses), each run by stock ONNX Runtime on the fixture's 16 reference ids.  Columns:
max-abs and relative-L2 error against the tool's logits, and the share of positions whose argmax agrees.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import bench_decode  # noqa: E402
import bench_export  # noqa: E402

from awq2trt.frontend.export import export_checkpoint  # noqa: E402

FIXTURES = ROOT / "tests" / "data" / "peers" / "awq"


def prefill_logits(folder: Path, ids: np.ndarray, kv_heads: int, head_dim: int) -> np.ndarray:
    """Logits for *ids* from an empty cache, whatever inputs the graph declares."""
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds: dict[str, np.ndarray] = {}
    for item in session.get_inputs():
        if item.name == "input_ids":
            feeds[item.name] = ids
        elif item.name == "attention_mask":
            feeds[item.name] = np.ones_like(ids)
        elif item.name == "position_ids":
            feeds[item.name] = np.arange(ids.shape[1], dtype=np.int64)[None]
        elif item.name == "num_logits_to_keep":
            feeds[item.name] = np.zeros(1, np.int64)  # every position
        elif item.name.startswith("past_key_values."):
            dtype = np.float16 if "float16" in item.type else np.float32
            feeds[item.name] = np.zeros((ids.shape[0], kv_heads, 0, head_dim), dtype)
    return session.run(["logits"], feeds)[0].astype(np.float32)


def errors(actual: np.ndarray, expected: np.ndarray) -> str:
    diff = actual.astype(np.float64) - expected
    rel = np.linalg.norm(diff) / np.linalg.norm(expected)
    agree = np.mean(actual.argmax(-1) == expected.argmax(-1))
    return f"{np.abs(diff).max():.4f} | {rel:.2e} | {100 * agree:.0f} %"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", type=Path, default=FIXTURES, help=f"(default: {FIXTURES})")
    parser.add_argument("--skip-peer", action="store_true", help="only our graphs")
    parser.add_argument("--peer-venv", type=Path, default=bench_decode.DEFAULT_GENAI_VENV)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="awq2trt-graph-logits-"))
    python = None
    if not args.skip_peer:
        python = bench_export.ensure_peer_venv(args.peer_venv.expanduser().resolve(), work / "peer-install.log")
    print("| fixture | graph | max-abs | rel-L2 | argmax agrees |\n|---|---|---|---|---|")
    try:
        for checkpoint in sorted(p for p in args.fixtures.iterdir() if (p / "config.json").is_file()):
            reference = load_file(str(checkpoint / "reference" / "reference.safetensors"))
            ids, expected = reference["input_ids"], reference["logits"].astype(np.float64)
            config = json.loads((checkpoint / "config.json").read_text())
            heads = config["num_attention_heads"]
            kv_heads = config.get("num_key_value_heads") or heads
            head_dim = config.get("head_dim") or config["hidden_size"] // heads
            for level in (0, 4):
                out = work / f"{checkpoint.name}-level{level}"
                export_checkpoint(checkpoint, out, target="ort", accuracy_level=level, progress=False)
                logits = prefill_logits(out, ids, kv_heads, head_dim)
                print(f"| {checkpoint.name} | awq2trt, level {level} | {errors(logits, expected)} |")
            if python is not None:
                folder = work / f"{checkpoint.name}-genai"
                failure = bench_decode.build_genai(python, checkpoint, folder, work, threads=2)
                if failure:
                    print(f"| {checkpoint.name} | GenAI builder | failed: {failure.splitlines()[-1][:80]} | | |")
                else:
                    logits = prefill_logits(folder, ids, kv_heads, head_dim)
                    print(f"| {checkpoint.name} | GenAI builder | {errors(logits, expected)} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
