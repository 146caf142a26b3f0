"""SmolLM2-135M: ``--target ort-kernels`` against ``--target ort`` at one accuracy level, on a real model.

    bash scripts/venv-run python scripts/report_ort_kernels.py --kernels build/ort/libawq2trt_ort.so
    bash scripts/venv-run python scripts/report_ort_kernels.py --accuracy-level 4 --json /tmp/kernels.json

Exports the RTN group-64 checkpoint of the default model (made once in --work-dir) with both targets, then
reports: the greedy continuation of a prompt by each (same tokens expected), the largest logit difference over
one 64-token window (the prompt and the ort target's continuation, the same ids for both), and the perplexity
of each on the repository's protocol (GPL-3, no BOS, 512-token windows, stride 512: awq2trt.evaluate), with the
relative gap (issue 17 asks for 0.1 % at most) and the time each took.
The kernel library is found as the runtime finds it (--kernels, else $AWQ2TRT_ORT_KERNELS, else the package's
copy).  Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GPL3 = Path("/usr/share/common-licenses/GPL-3")
PROMPT = "The GNU General Public License is a free, copyleft license"


def log(message: str) -> None:
    print(f"report_ort_kernels: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels", type=Path, default=None, help="libawq2trt_ort.so (default: the runtime's lookup)")
    parser.add_argument("--accuracy-level", type=int, default=0, choices=(0, 4), help="both exports' level (0)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--text", type=Path, default=GPL3)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "awq2trt-report-kernels")
    parser.add_argument("--cache-dir", default=None, help="awq2trt's model cache (default: $AWQ2TRT_CACHE)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    return parser.parse_args(argv)


def exported(checkpoint: Path, folder: Path, target: str, level: int) -> Path:
    from awq2trt.frontend.export import export_checkpoint

    if not (folder / "awq2trt.json").is_file():
        log(f"exporting {target} (level {level}) -> {folder}")
        export_checkpoint(checkpoint, folder, target=target, accuracy_level=level, force=True, progress=False)
    return folder


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from awq2trt.evaluate.ort_eval import ort_text_perplexity
    from awq2trt.models import prepare_default_model
    from awq2trt.quantize import quantize_checkpoint
    from awq2trt.runtime import OrtModel

    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / "smollm2-rtn-g64"
    if not (checkpoint / "config.json").is_file():
        log("quantizing SmolLM2 (RTN, group 64)")
        quantize_checkpoint(
            prepare_default_model(args.cache_dir), checkpoint, method="rtn", group_size=64, progress=False
        )
    level = args.accuracy_level
    folders = {
        target: exported(checkpoint, work / f"{target}-level{level}", target, level)
        for target in ("ort", "ort-kernels")
    }
    models = {
        "ort": OrtModel.open(folders["ort"], threads=args.threads),
        "ort-kernels": OrtModel.open(folders["ort-kernels"], threads=args.threads, kernels=args.kernels),
    }
    kernels = models["ort-kernels"].kernels
    log(f"kernel library {kernels.path if kernels else None} ({kernels.source if kernels else '-'})")
    ids = models["ort"].encode(PROMPT, add_special_tokens=False)
    figures: dict[str, dict[str, object]] = {}
    window: np.ndarray | None = None  # the reference's continuation: both targets' logits on the same ids
    for target, model in models.items():
        generation = model.generate(ids, args.new_tokens, stop_at_eos=False)
        if window is None:
            window = np.asarray(ids + generation.ids[0], np.int64)[:64]
        start = time.perf_counter()
        result = ort_text_perplexity(model, args.text, show=False)
        figures[target] = {
            "new_ids": generation.ids[0],
            "decode_tok_s": generation.timing.decode_tokens_per_s,
            "perplexity": result.perplexity,
            "perplexity_s": time.perf_counter() - start,
            "logits": model.logits(window),
        }
        log(f"{target}: perplexity {result.perplexity:.4f} in {figures[target]['perplexity_s']:.1f} s")
    ort, ours = figures["ort"], figures["ort-kernels"]
    same = ort["new_ids"] == ours["new_ids"]
    logits_gap = float(np.abs(np.asarray(ours["logits"]) - np.asarray(ort["logits"])).max())
    peak = float(np.abs(np.asarray(ort["logits"])).max())
    gap = (float(ours["perplexity"]) - float(ort["perplexity"])) / float(ort["perplexity"])  # type: ignore[arg-type]
    print(f"SmolLM2-135M RTN g64, accuracy level {level}, {args.threads} threads, text {args.text}")
    print("| target | perplexity | seconds | decode tok/s | greedy tokens |")
    print("|---|---|---|---|---|")
    for target, f in figures.items():
        tokens = "reference" if target == "ort" else ("same" if same else "DIFFERENT")
        print(f"| {target} | {f['perplexity']:.4f} | {f['perplexity_s']:.1f} | {f['decode_tok_s']:.1f} | {tokens} |")
    print(f"perplexity gap {100 * gap:+.4f} %; max logit difference {logits_gap:.2e} (peak {peak:.1f})")
    if args.json is not None:
        summary = {t: {k: v for k, v in f.items() if k != "logits"} for t, f in figures.items()}
        args.json.write_text(json.dumps({**summary, "same_tokens": same, "gap": gap, "logits_gap": logits_gap}))
    return 0 if same and abs(gap) <= 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
