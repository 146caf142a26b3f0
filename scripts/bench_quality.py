"""Quality of `awq2trt quantize --method awq` against RTN and two peers, on one table.

    bash scripts/venv-run python scripts/bench_quality.py                      # every row (peers cached)
    bash scripts/venv-run python scripts/bench_quality.py --skip-peers         # fp32, RTN, ours
    bash scripts/venv-run python scripts/bench_quality.py --only awq,autoawq   # just these rows
    bash scripts/venv-run python scripts/bench_quality.py --refresh            # re-run cached peers too

Peers are slow on 2 cores: llm-compressor took 15 minutes here; AutoAWQ ran at ~170 s per block on the
shared machine (~85 minutes for SmolLM2's 30), so run it on its own (``--only autoawq``) when the machine is free.

Rows: the fp32 model, RTN (ours, group-wise int4), AWQ (ours), llm-compressor 0.14's ``AWQModifier`` followed by
its ``QuantizationModifier`` (int4, asymmetric, group 64: a custom ``config_groups`` scheme) and AutoAWQ 0.2.9
(``zero_point``, ``q_group_size`` 64, GEMM; in fp32, since its fp16 run on this CPU returns a broken model).
Every quantizer gets the *same token ids*: the calibration samples awq2trt cuts (default: the license texts
in /usr/share/common-licenses other than GPL-3, 34 x 512 tokens) are saved to a JSON file that the peers
read, so the peers see neither their default datasets nor a different tokenization.

Every checkpoint is scored by the same evaluator, ``awq2trt eval`` (perplexity on GPL-3, no BOS, 512-token
windows, stride 512): the peers' outputs are AutoAWQ GEMM and compressed-tensors pack-quantized folders,
both of which awq2trt reads.  "minutes" is the wall time of the quantizing process (start to saved
checkpoint, imports and model loading included); "CPU min" is its user + system time (steadier than wall
time on a shared machine; on 2 idle cores wall time is a bit over half of it); "peak RSS" is that
process's ``ru_maxrss`` from ``os.wait4``.  The machine is shared: compare times measured in one run.

The peers live in their own venvs (``--peer-dir``, default /tmp/awq2trt-peers), created on first use.  Each
venv's site-packages comes first; a ``.pth`` file then appends this project's venv, so the peers reuse its
CPU torch instead of downloading a CUDA build, while their own pinned transformers shadows ours.
A peer's result is cached in ``<work-dir>/peer-results.json`` keyed by the model, the calibration ids and
the settings (a failed run is recorded but tried again next time); a row whose peer cannot be installed or
fails says why instead of a number.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ROWS = ("fp32", "rtn", "awq", "llm-compressor", "autoawq")
PEERS = ("llm-compressor", "autoawq")
EVAL_TEXT = "/usr/share/common-licenses/GPL-3"
DEFAULT_WORK_DIR = Path(tempfile.gettempdir()) / "awq2trt-bench-quality"
DEFAULT_PEER_DIR = Path(tempfile.gettempdir()) / "awq2trt-peers"

# Pins verified with this script.  Installed with --no-deps first (torch, numpy & co. come from our venv),
# then the few pure-Python dependencies each one imports.
PEER_PACKAGES = {
    "llm-compressor": {
        "venv": "llmc-venv",
        "no_deps": [
            "llmcompressor==0.14.0.1",
            "compressed-tensors==0.19.0",
            "transformers==5.17.0",
            "loguru",
            "nvidia-ml-py",
        ],
        "deps": ["datasets", "httpx", "huggingface-hub>=1.5,<2"],
    },
    "autoawq": {
        "venv": "autoawq-venv",
        "no_deps": ["autoawq==0.2.9", "transformers==4.51.3", "tokenizers>=0.21,<0.22", "huggingface-hub>=0.30,<1"],
        "deps": ["datasets<4", "zstandard"],
    },
}

LLMC_SCRIPT = r"""
import json, sys, time
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from llmcompressor import oneshot
from llmcompressor.modifiers.quantization import QuantizationModifier
from llmcompressor.modifiers.transform.awq import AWQModifier
from llmcompressor.pipelines.cache import IntermediatesCache

# With no GPU, pinning host memory fails; the pinned copy only speeds up host-to-GPU transfers.
IntermediatesCache._pin_intermediate = classmethod(lambda cls, intermediate: None)

source, output, calib_file, group_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(int(sys.argv[5]))
ids = json.load(open(calib_file))
dataset = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids]})
model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
tokenizer = AutoTokenizer.from_pretrained(source)
weights = QuantizationArgs(num_bits=4, type="int", symmetric=False, strategy="group", group_size=group_size)
recipe = [
    AWQModifier(),
    QuantizationModifier(
        config_groups={"group_0": QuantizationScheme(targets=["Linear"], weights=weights)}, ignore=["lm_head"]
    ),
]
oneshot(model=model, dataset=dataset, recipe=recipe, max_seq_length=len(ids[0]), num_calibration_samples=len(ids))
model.save_pretrained(output, save_compressed=True)
tokenizer.save_pretrained(output)
"""

AUTOAWQ_SCRIPT = r"""
import json, sys
import torch
from awq import AutoAWQForCausalLM
from transformers import PreTrainedTokenizerFast

source, output, calib_file, group_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(int(sys.argv[5]))
ids = json.load(open(calib_file))
# transformers 4.51 does not know the tokenizer class name transformers 5 writes; the calibration ids are
# given, so the tokenizer is only a formality here (the bench copies the source's files next to the output).
tokenizer = PreTrainedTokenizerFast(tokenizer_file=f"{source}/tokenizer.json")
model = AutoAWQForCausalLM.from_pretrained(source, torch_dtype=torch.float32, device_map="cpu")
config = {"zero_point": True, "q_group_size": group_size, "w_bit": 4, "version": "GEMM"}
# A list of token-id lists is used as given (each sample exactly seqlen tokens, none dropped).
model.quantize(
    tokenizer, quant_config=config, calib_data=ids, max_calib_samples=len(ids), max_calib_seq_len=len(ids[0])
)
model.save_quantized(output)
"""


@dataclass
class Row:
    name: str
    perplexity: float | None = None
    minutes: float | None = None
    cpu_minutes: float | None = None
    peak_rss_gib: float | None = None
    note: str = ""


def run_measured(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[int, float, float, float]:
    """Run *cmd* as a child; (exit code, wall seconds, CPU seconds, peak RSS GiB of that child)."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    cpu = usage.ru_utime + usage.ru_stime
    return os.waitstatus_to_exitcode(status), seconds, cpu, usage.ru_maxrss / 2**20  # KiB -> GiB


def last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no output)"


def evaluate(checkpoint: Path, log: Path) -> float:
    cmd = [sys.executable, "-m", "awq2trt.cli", "eval", str(checkpoint), "--text", EVAL_TEXT, "--json", "-q"]
    code, _, _, _ = run_measured(cmd, log)
    if code:
        raise RuntimeError(f"eval failed: {last_line(log)}")
    return float(json.loads(log.read_text().strip().splitlines()[-1])["perplexity"])


def ensure_peer_venv(peer: str, peer_dir: Path) -> Path:
    spec = PEER_PACKAGES[peer]
    venv = peer_dir / spec["venv"]
    python = venv / "bin" / "python"
    stamp = venv / ".awq2trt-ready"
    wanted = json.dumps(spec, sort_keys=True)
    if stamp.is_file() and stamp.read_text() == wanted:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (site / "awq2trt-project-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q", "install"]
    subprocess.run([*pip, "--no-deps", *spec["no_deps"]], check=True)
    subprocess.run([*pip, *spec["deps"]], check=True)
    stamp.write_text(wanted)
    return python


def peer_source(peer: str, model: Path, work: Path) -> Path:
    """AutoAWQ's transformers (4.51) reads the rope base only from ``rope_theta``: give it a config that has it."""
    if peer != "autoawq":
        return model
    config = json.loads((model / "config.json").read_text())
    rope = config.get("rope_parameters") or {}
    if "rope_theta" not in config and "rope_theta" in rope:
        config["rope_theta"] = rope["rope_theta"]
    folder = work / "autoawq-source"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for file in model.iterdir():
        if file.is_file() and file.name != "config.json":
            (folder / file.name).symlink_to(file.resolve())
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


def run_peer(peer: str, model: Path, calib_file: Path, args: argparse.Namespace, work: Path) -> Row:
    row = Row(peer)
    try:
        python = ensure_peer_venv(peer, Path(args.peer_dir))
    except (subprocess.CalledProcessError, OSError) as exc:
        row.note = f"not installable here: {exc}"
        return row
    script = work / f"{peer}.py"
    script.write_text(LLMC_SCRIPT if peer == "llm-compressor" else AUTOAWQ_SCRIPT)
    out = work / f"{peer}-ckpt"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(python), str(script), str(peer_source(peer, model, work)), str(out), str(calib_file)]
    cmd += [str(args.group_size), str(args.threads)]
    log = work / f"{peer}.log"
    code, seconds, cpu, rss = run_measured(cmd, log, env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    row.minutes, row.cpu_minutes, row.peak_rss_gib = seconds / 60, cpu / 60, rss
    if code:
        row.note = f"failed (exit {code}): {last_line(log)}"
        return row
    # Every checkpoint is scored with the source's own tokenizer files.
    for file in model.iterdir():
        if file.is_file() and file.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copyfile(file, out / file.name)
    try:
        row.perplexity = evaluate(out, work / f"{peer}-eval.log")
    except RuntimeError as exc:
        row.note = str(exc)
    return row


def run_ours(method: str, model: Path, args: argparse.Namespace, work: Path) -> Row:
    row = Row(method)
    out = work / f"{method}-ckpt"
    cmd = [sys.executable, "-m", "awq2trt.cli", "quantize", str(model), "-o", str(out), "--force", "-q"]
    cmd += ["--method", method, "--group-size", str(args.group_size)]
    if method == "awq":
        cmd += ["--calib-samples", str(args.calib_samples), "--calib-seqlen", str(args.calib_seqlen)]
        cmd += ["--threads", str(args.threads), "--report"]
        if args.calib:
            cmd += ["--calib", args.calib]
    log = work / f"{method}.log"
    code, seconds, cpu, rss = run_measured(cmd, log)
    row.minutes, row.cpu_minutes, row.peak_rss_gib = seconds / 60, cpu / 60, rss
    if code:
        row.note = f"failed (exit {code}): {last_line(log)}"
        return row
    row.perplexity = evaluate(out, work / f"{method}-eval.log")
    return row


def print_table(rows: list[Row], settings: str) -> None:
    by_name = {r.name: r for r in rows}
    fp, rtn = by_name.get("fp32"), by_name.get("rtn")
    print(f"\nSmolLM2 quality, {settings}; perplexity on {EVAL_TEXT} (no BOS, 512-token windows, stride 512)\n")
    columns = ("method", "perplexity", "gap closed vs RTN", "minutes", "CPU min", "peak RSS GiB", "note")
    widths = (16, 10, 17, 7, 7, 12, 4)
    print("| " + " | ".join(f"{c:<{w}}" for c, w in zip(columns, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        gap = "-"
        if r.perplexity is not None and fp and rtn and fp.perplexity and rtn.perplexity and r.name != "fp32":
            closed = 100 * (rtn.perplexity - r.perplexity) / (rtn.perplexity - fp.perplexity)
            gap = f"{closed:.1f} %" if closed > -100 else "worse than RTN"  # a broken checkpoint, not a percentage
        cells = (
            r.name,
            f"{r.perplexity:.2f}" if r.perplexity is not None else "-",
            gap,
            f"{r.minutes:.1f}" if r.minutes is not None else "-",
            f"{r.cpu_minutes:.1f}" if r.cpu_minutes is not None else "-",
            f"{r.peak_rss_gib:.2f}" if r.peak_rss_gib is not None else "-",
            r.note,
        )
        print("| " + " | ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="dense model folder (default: the prepared SmolLM2)")
    parser.add_argument("--group-size", type=int, default=64)
    parser.add_argument("--calib", default=None, help="calibration file (default: the license texts)")
    parser.add_argument("--calib-samples", type=int, default=34)
    parser.add_argument("--calib-seqlen", type=int, default=512)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", default=None, help="comma-separated rows: " + ",".join(ROWS))
    parser.add_argument("--skip-peers", action="store_true", help="no llm-compressor / AutoAWQ rows")
    parser.add_argument("--refresh", action="store_true", help="re-run peers even when a cached result exists")
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR))
    parser.add_argument("--peer-dir", default=str(DEFAULT_PEER_DIR))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = [r.strip() for r in args.only.split(",")] if args.only else list(ROWS)
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    if args.skip_peers:
        rows = [r for r in rows if r not in PEERS]

    from awq2trt.evaluate.reference import load_tokenizer
    from awq2trt.models import prepare_default_model
    from awq2trt.quantize.awq.calibration import calibration_samples

    model = Path(args.model) if args.model else prepare_default_model()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    ids = calibration_samples(load_tokenizer(model), args.calib, samples=args.calib_samples, seqlen=args.calib_seqlen)
    calib_hash = hashlib.sha256(ids.tobytes()).hexdigest()[:16]
    calib_file = work / f"calib-{calib_hash}.json"
    calib_file.write_text(json.dumps(ids.tolist()))
    model_hash = hashlib.sha256((model / "config.json").read_bytes()).hexdigest()[:12]
    settings = f"int4 asym g{args.group_size}, calibration {args.calib_samples} x {args.calib_seqlen} tokens"
    cache_file = work / "peer-results.json"
    cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}

    results = []
    for name in rows:
        print(f"- {name} ...", flush=True)
        if name == "fp32":
            row = Row("fp32", perplexity=evaluate(model, work / "fp32-eval.log"))
        elif name in PEERS:
            key = f"{name}|{model.resolve()}|{model_hash}|calib {calib_hash}|g{args.group_size} asym"
            if key in cache and cache[key].get("perplexity") is not None and not args.refresh:
                row = Row(**cache[key])
                row.note = (row.note + " (cached)").strip()
            else:
                row = run_peer(name, model, calib_file, args, work)
                cache[key] = asdict(row)
                cache_file.write_text(json.dumps(cache, indent=2))
        else:
            row = run_ours(name, model, args, work)
        print(f"  {row}", flush=True)
        results.append(row)
    print_table(results, settings)
    if "awq" in rows and (work / "awq.log").is_file():
        print("\nawq2trt self-check (held-back calibration tokens):\n" + (work / "awq.log").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
