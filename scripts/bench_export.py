"""Time and peak memory of `awq2trt export` on a Llama-2-7B-shaped AWQ checkpoint, against ONNX Runtime GenAI's builder.

    bash scripts/venv-run python scripts/bench_export.py                 # ours + the peer, 1 run each
    bash scripts/venv-run python scripts/bench_export.py --skip-peer     # ours only (no peer install)
    bash scripts/venv-run python scripts/bench_export.py --runs 3 --checkpoint /path/to/awq-checkpoint

Run it with the project's Python (the one that imports awq2trt).  Without --checkpoint it uses
/tmp/llama2-7b-random, writing it first with scripts/make_random_checkpoint.py (about a minute, 3.9 GB).

Each tool runs as a child process of this script; its wall time is measured around the child, and its peak
RSS is the ``ru_maxrss`` that ``os.wait4`` reports for that child (the largest RSS of the child and of any
process it waited for), so the numbers are that tool's own, not this script's.  RSS counts the pages of
the memory-mapped checkpoint that the tool touched, the same way for both tools.

The peer is ``python -m onnxruntime_genai.models.builder -i INPUT -o OUT -p int4 -e cpu`` (int4 for CPU,
the builder's standard recipe: the AWQ codes are repacked as they are, the fp16 lm_head is quantized to int4
by RTN, and embeddings and activations are fp32, as the builder does for every int4 CPU model).  It is
installed on first use into its own venv (--peer-venv, default ~/.cache/awq2trt/peers/genai-venv): torch
2.13.0 first (the CPU wheel), then PEER_PINS under a constraints file that also pins that torch.
The builder insists on a tokenizer (transformers' AutoTokenizer) even though it only copies its files, so
when the checkpoint has none, the peer reads a folder of symlinks to the checkpoint plus a three-token
tokenizer whose ids match the config's bos/eos ids.  Both tools run with HF_HUB_OFFLINE=1.

Targets (the export issue): under 180 s and under 4 GiB of peak RSS on the 2-core machine.  Sizes are
in GiB/MiB (2**30/2**20 bytes), the unit of the issue's earlier measurement of the builder (11.9 GiB).
Before the runs, the checkpoint's files are read once so that both tools start with them in the page cache.
Exit status: 0 when both targets pass, 1 when one fails or our export fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = Path("/tmp/llama2-7b-random")
DEFAULT_WORK_DIR = Path(tempfile.gettempdir()) / "awq2trt-bench-export"
DEFAULT_PEER_VENV = Path.home() / ".cache" / "awq2trt" / "peers" / "genai-venv"

TARGET_SECONDS = 180.0
TARGET_RSS_BYTES = 4 * 2**30  # GiB, as /usr/bin/time's "Maximum resident set size" in KiB / 1024**2

# The peer's versions, as verified with this script.  torch is installed first and kept by the constraints.
PEER_TORCH = "torch==2.13.0"
PEER_PINS = (
    "onnxruntime-genai==0.18.0",
    "onnxruntime==1.32.0",
    "onnx-ir==1.1.0",
    "onnx==1.23.2",
    "transformers==5.23.0",
    "tokenizers==0.23.3",
    "huggingface_hub==2.4.0",
    "safetensors==0.8.0",
    "numpy==2.4.6",
    "protobuf==7.36.2",
)
PEER_MODULE = "onnxruntime_genai.models.builder"
PEER_STAMP = ".awq2trt-peer-installed"

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


@dataclass(frozen=True)
class Measurement:
    """One run of one tool."""

    seconds: float
    peak_rss_bytes: int
    output_bytes: int
    returncode: int
    log: Path


@dataclass(frozen=True)
class ToolResult:
    """All runs of one tool; the table shows medians."""

    name: str
    runs: list[Measurement]

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(run.returncode == 0 for run in self.runs)

    @property
    def seconds(self) -> float:
        return statistics.median(run.seconds for run in self.runs)

    @property
    def peak_rss_bytes(self) -> float:
        return statistics.median(run.peak_rss_bytes for run in self.runs)

    @property
    def output_bytes(self) -> int:
        return self.runs[-1].output_bytes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help=f"AWQ checkpoint folder (default: {DEFAULT_CHECKPOINT}, written by make_random_checkpoint.py if missing)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=DEFAULT_WORK_DIR,
        help=f"where outputs and logs go; the last run's outputs stay there (default: {DEFAULT_WORK_DIR})",
    )
    parser.add_argument("--dtype", default="fp16", help="our export's --dtype (default: fp16)")
    parser.add_argument(
        "--target",
        default="ort",
        help="our export's --target (default: ort, every graph pass, like the peer's fused CPU graph)",
    )
    parser.add_argument("--skip-peer", action="store_true", help="measure only awq2trt export")
    parser.add_argument(
        "--peer-venv",
        type=Path,
        default=DEFAULT_PEER_VENV,
        help=f"venv for onnxruntime-genai, created on first use (default: {DEFAULT_PEER_VENV})",
    )
    parser.add_argument("--runs", type=int, default=1, help="runs per tool; the table shows medians (default: 1)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


# ---------------------------------------------------------------------------------------------- measuring


def run_measured(cmd: list[str], log: Path, *, cwd: Path, env: dict[str, str]) -> tuple[float, int, int]:
    """Run *cmd* with output to *log*; return (wall seconds, peak RSS in bytes, exit status)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        out.write(("$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen so it does not wait again
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    peak = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return seconds, peak, proc.returncode


def tree_bytes(path: Path) -> int:
    """Apparent size of every file under *path* (symlinks not followed)."""
    if not path.exists():
        return 0
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def log_tail(log: Path, lines: int = 25) -> str:
    """The last non-blank lines of *log* (progress bars' carriage returns count as line ends)."""
    text = log.read_text(errors="replace").replace("\r", "\n")
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def measure_tool(
    name: str, make_cmd: Callable[[Path], list[str]], output: Path, work_dir: Path, runs: int, env: dict[str, str]
) -> ToolResult:
    """Run one tool *runs* times, each into a fresh *output*; the last run's output stays."""
    results = []
    for i in range(1, runs + 1):
        shutil.rmtree(output, ignore_errors=True)
        log = work_dir / "logs" / f"{output.name}-run{i}.log"
        print(f"[{name}] run {i}/{runs} ... (log: {log})", flush=True)
        seconds, peak, code = run_measured(make_cmd(output), log, cwd=work_dir, env=env)
        size = tree_bytes(output)
        results.append(Measurement(seconds, peak, size, code, log))
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"[{name}] run {i}: {status}, {fmt_time(seconds)}, peak RSS {fmt_bytes(peak)}, output {fmt_bytes(size)}")
        if code != 0:
            print(f"[{name}] last lines of {log}:\n{log_tail(log)}", file=sys.stderr)
            break
    return ToolResult(name, results)


# ------------------------------------------------------------------------------------------------- inputs


def ensure_checkpoint(checkpoint: Path | None) -> Path:
    if checkpoint is not None:
        if not (checkpoint / "config.json").is_file():
            sys.exit(f"bench_export: {checkpoint} is not a checkpoint folder (no config.json)")
        return checkpoint
    if (DEFAULT_CHECKPOINT / "config.json").is_file() and any(DEFAULT_CHECKPOINT.glob("*.safetensors")):
        return DEFAULT_CHECKPOINT
    print(f"bench_export: writing {DEFAULT_CHECKPOINT} (random Llama-2-7B-shaped AWQ checkpoint, ~1 min, 3.9 GB)")
    make = [sys.executable, str(REPO / "scripts" / "make_random_checkpoint.py")]
    subprocess.run([*make, "-o", str(DEFAULT_CHECKPOINT), "--shape", "llama-2-7b", "--force"], check=True)
    return DEFAULT_CHECKPOINT


def warm_page_cache(checkpoint: Path) -> None:
    """Read every file of *checkpoint* once, so the first tool measured does not pay for a cold cache."""
    start = time.perf_counter()
    total = 0
    for path in sorted(p for p in checkpoint.rglob("*") if p.is_file()):
        with open(path, "rb") as f:
            while chunk := f.read(16 << 20):
                total += len(chunk)
    print(f"bench_export: read {fmt_bytes(total)} of checkpoint in {fmt_time(time.perf_counter() - start)}")


def peer_input(checkpoint: Path, work_dir: Path) -> Path:
    """The checkpoint as the builder wants it: with a tokenizer (symlinks to the weights, nothing copied)."""
    if any((checkpoint / name).is_file() for name in TOKENIZER_FILES):
        return checkpoint
    folder = work_dir / "genai-input"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for item in checkpoint.iterdir():
        (folder / item.name).symlink_to(item.resolve())
    # transformers' AutoTokenizer must load something; the builder only copies it to the output (and reads
    # special-token ids from it).  A three-token word-level tokenizer with the config's bos/eos ids will do.
    config = json.loads((checkpoint / "config.json").read_text())
    bos, eos = int(config.get("bos_token_id", 1)), int(config.get("eos_token_id", 2))
    ids = {"<s>": bos, "</s>": eos}
    ids["<unk>"] = next(i for i in range(3) if i not in ids.values())
    special = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False}
        | {"special": True}
        for t, i in sorted(ids.items(), key=lambda kv: kv[1])
    ]
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": special,
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": ids, "unk_token": "<unk>"},
    }
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer, indent=1))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=1))
    return folder


# --------------------------------------------------------------------------------------------------- peer


def ensure_peer_venv(venv: Path, log: Path) -> Path:
    """Create the builder's venv, or update it when the pins changed (pip's output to *log*); return its python."""
    python = venv / "bin" / "python"
    stamp = venv / PEER_STAMP
    wanted = hashlib.sha256("\n".join((PEER_TORCH, *PEER_PINS)).encode()).hexdigest()
    if python.exists() and stamp.is_file() and stamp.read_text().strip() == wanted:
        return python
    print(f"bench_export: installing onnxruntime-genai into {venv} (about a minute) ...", flush=True)
    start = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    constraints = venv / "peer-constraints.txt"
    constraints.write_text("\n".join((PEER_TORCH, *PEER_PINS)) + "\n")
    env = {**os.environ, "PIP_CONSTRAINT": str(constraints), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip = [str(python), "-m", "pip", "install"]
    check = "import torch, onnxruntime_genai, onnx_ir, transformers; assert torch.__version__.startswith('2.13.0')"
    steps = (
        [*pip, PEER_TORCH],  # first: the CPU wheel on disk, which the constraints then keep
        [*pip, *PEER_PINS],
        [str(python), "-c", check],
    )
    with open(log, "w") as out:
        for cmd in steps:
            out.write("$ " + " ".join(cmd) + "\n")
            out.flush()
            if subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT).returncode:
                sys.exit(f"bench_export: installing the peer failed; last lines of {log}:\n{log_tail(log)}")
    stamp.write_text(wanted + "\n")
    print(f"bench_export: peer installed in {fmt_time(time.perf_counter() - start)} (log: {log})")
    return python


# ------------------------------------------------------------------------------------------------- output


def fmt_time(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:04.1f} s" if minutes else f"{rest:.1f} s"


def fmt_bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**27 else f"{n / 2**20:.1f} MiB"


def print_report(results: list[ToolResult], runs: int) -> bool:
    """Print the table and the target lines; return whether our targets pass."""
    ours = results[0]
    header = ("tool", "wall time", "peak RSS", "output size", "time vs ours", "RSS vs ours")
    rows = []
    for result in results:
        if not result.ok:
            rows.append((result.name, "failed", "-", "-", "-", "-"))
            continue
        if ours.ok:
            ratios = (f"{result.seconds / ours.seconds:.2f}x", f"{result.peak_rss_bytes / ours.peak_rss_bytes:.2f}x")
        else:
            ratios = ("-", "-")
        sizes = (fmt_time(result.seconds), fmt_bytes(result.peak_rss_bytes), fmt_bytes(result.output_bytes))
        rows.append((result.name, *sizes, *ratios))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    line = "| " + " | ".join("{:<%d}" % w for w in widths) + " |"  # noqa: UP031
    print()
    if runs > 1:
        print(f"median of {runs} runs")
    print(line.format(*header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line.format(*row))
    print()
    if not ours.ok:
        print("FAIL awq2trt export did not finish (see its log)")
        return False
    time_ok = ours.seconds < TARGET_SECONDS
    rss_ok = ours.peak_rss_bytes < TARGET_RSS_BYTES
    print(f"{'PASS' if time_ok else 'FAIL'} wall time {fmt_time(ours.seconds)} < {fmt_time(TARGET_SECONDS)}")
    print(f"{'PASS' if rss_ok else 'FAIL'} peak RSS {fmt_bytes(ours.peak_rss_bytes)} < {fmt_bytes(TARGET_RSS_BYTES)}")
    return time_ok and rss_ok


# --------------------------------------------------------------------------------------------------- main


def our_command(checkpoint: Path, dtype: str, target: str) -> Callable[[Path], list[str]]:
    script = Path(sys.executable).parent / "awq2trt"
    base = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "import sys; from awq2trt.cli import main; sys.exit(main())"]
    )
    options = ["--dtype", dtype, "--target", target, "-q", "--force"]
    return lambda output: [*base, "export", str(checkpoint), "-o", str(output), *options]


def peer_command(python: Path, input_dir: Path, cache_dir: Path) -> Callable[[Path], list[str]]:
    def make(output: Path) -> list[str]:
        shutil.rmtree(cache_dir, ignore_errors=True)
        cmd = [str(python), "-m", PEER_MODULE, "-i", str(input_dir), "-o", str(output), "-c", str(cache_dir)]
        return [*cmd, "-p", "int4", "-e", "cpu"]

    return make


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import awq2trt  # noqa: F401  (only to fail early with a clear message)
    except ImportError:
        sys.exit(
            "bench_export: run this with the project's Python: bash scripts/venv-run python scripts/bench_export.py"
        )
    checkpoint = ensure_checkpoint(args.checkpoint).resolve()
    work_dir = args.work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **OFFLINE_ENV}
    print(f"bench_export: checkpoint {checkpoint}, work dir {work_dir}, {os.cpu_count()} CPUs")
    warm_page_cache(checkpoint)

    ours = our_command(checkpoint, args.dtype, args.target)
    results = [measure_tool("awq2trt export", ours, work_dir / "ours", work_dir, args.runs, env)]
    if not args.skip_peer:
        python = ensure_peer_venv(args.peer_venv.expanduser().resolve(), work_dir / "logs" / "peer-install.log")
        make = peer_command(python, peer_input(checkpoint, work_dir), work_dir / "genai-cache")
        name = f"onnxruntime-genai {PEER_PINS[0].split('==')[1]} builder"
        results.append(measure_tool(name, make, work_dir / "genai", work_dir, args.runs, env))
        shutil.rmtree(work_dir / "genai-cache", ignore_errors=True)
    return 0 if print_report(results, args.runs) else 1


if __name__ == "__main__":
    sys.exit(main())
