"""Serving speed of a `generate` repository on a real tritonserver: 1, 4 and 8 concurrent streaming clients.

    bash scripts/venv-run python scripts/bench_triton.py                       # SmolLM2 int4, 1/4/8 clients
    bash scripts/venv-run python scripts/bench_triton.py --requests 100 --clients 8 --time-limit 900
    bash scripts/venv-run python scripts/bench_triton.py --model-dir OUT --json /tmp/triton.json

The model is an exported folder (--model-dir), or by default SmolLM2-135M-Instruct quantized with RTN, group
64 (the speed does not depend on how the codes were chosen) and exported for the ort target into --work-dir,
made once and reused.  The repository is written with --max-batch slots (default 8) and served by the
nvidia-pytriton wheel's tritonserver in its cached venv (awq2trt.triton.server_env), on 127.0.0.1 only.

Each client is a thread with its own gRPC stream that sends --requests requests one after another (greedy,
--new-tokens tokens at most, prompts taken in turn from a fixed list) and times the first streamed piece (TTFT)
and the last.  Before the server starts, the same requests run through ``OrtModel`` in this process (the
runtime called directly, same threads): that gives each prompt's token count and answer, and the direct
tokens/s that one client's rate is compared with.  Every served answer is compared with the runtime's: with an
--accuracy-level 0 export batching changes none; with level 4 some answers in a batch differ (see
awq2trt/triton/slots.py) and are counted apart, their tokens counted by re-tokenizing the text.  Per-token
latency is (last - first piece) / (tokens - 1) of a request; aggregate tokens/s is all tokens of a level over
its wall time.

Targets (issue 16): 0 errors (failed or empty responses); with 8 clients, aggregate tokens/s >= 3x one
client's; one client's tokens/s >= 90 % of the runtime called directly.  The machine may be shared: compare
ratios within one run.  Progress goes to stderr, the table (markdown) to stdout; --time-limit stops a level
early (its partial figures are marked).
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TOKENIZER: Any = None  # counts the tokens of an answer that is not the runtime's (direct() sets it)
PROMPTS = (
    "The history of the printing press begins",
    "Write a short story about a lighthouse keeper who",
    "Explain how a refrigerator works:",
    "The three most important ideas in economics are",
    "Once upon a time, in a small village by the sea,",
    "A recipe for bread: first,",
    "The main difference between a virus and a bacterium is",
    "In the year 2100, cities will",
    "Dear hiring manager, I am writing to",
    "The rules of chess are simple:",
    "Photosynthesis is the process by which",
    "My favourite programming language is",
)


@dataclass
class Sample:
    ttft: float
    total: float
    tokens: int
    same: bool  # the runtime's answer, to the character


@dataclass
class Level:
    clients: int
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0
    partial: bool = False

    @property
    def tokens_per_s(self) -> float:
        return sum(s.tokens for s in self.samples) / self.wall if self.wall else 0.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def default_model(work: Path, accuracy_level: int) -> Path:
    """SmolLM2 int4 (RTN g64), exported for the ort target, made once under *work*."""
    exported = work / f"smollm2-rtn-g64-ort-level{accuracy_level}"
    if (exported / "awq2trt.json").is_file():
        return exported
    from awq2trt.frontend.export import export_checkpoint
    from awq2trt.models import prepare_default_model
    from awq2trt.quantize import quantize_checkpoint

    log("preparing SmolLM2 int4 (RTN, group 64) and exporting it (once)")
    source = prepare_default_model()
    checkpoint = work / "smollm2-rtn-g64"
    if not (checkpoint / "config.json").is_file():
        quantize_checkpoint(source, checkpoint, method="rtn", group_size=64, progress=False, force=True)
    export_checkpoint(checkpoint, exported, target="ort", accuracy_level=accuracy_level, force=True, progress=False)
    return exported


def direct(folder: Path, prompts: list[str], new_tokens: int, threads: int) -> tuple[dict[str, tuple[str, int]], float]:
    """Each prompt's greedy answer and token count through OrtModel, and the direct tokens/s (same requests)."""
    from awq2trt.runtime import OrtModel

    global TOKENIZER
    model = OrtModel.open(folder, threads=threads)
    TOKENIZER = model.tokenizer
    model.generate(prompts[0], 8)  # warm-up
    answers: dict[str, tuple[str, int]] = {}
    tokens = 0
    seconds = 0.0
    for prompt in prompts:
        start = time.perf_counter()
        result = model.generate(prompt, new_tokens)
        seconds += time.perf_counter() - start
        count = len(result.ids[0])
        answers[prompt] = (result.texts[0] or "", count)
        tokens += count
    return answers, tokens / seconds


def run_level(url: str, name: str, clients: int, requests: int, args: argparse.Namespace, answers: Any) -> Level:
    import tritonclient.grpc as grpcclient

    level = Level(clients)
    lock = threading.Lock()
    deadline = time.monotonic() + args.time_limit

    def client(index: int) -> None:
        connection = grpcclient.InferenceServerClient(url)
        events: queue.Queue[tuple[float, Any, Any]] = queue.Queue()
        connection.start_stream(callback=lambda result, error: events.put((time.perf_counter(), result, error)))
        try:
            for number in range(requests):
                if time.monotonic() > deadline:
                    level.partial = True
                    return
                prompt = PROMPTS[(index * requests + number) % len(PROMPTS)]
                inputs = [
                    grpcclient.InferInput("text_input", [1], "BYTES"),
                    grpcclient.InferInput("max_tokens", [1], "INT32"),
                ]
                inputs[0].set_data_from_numpy(np.array([prompt.encode()], dtype=object))
                inputs[1].set_data_from_numpy(np.array([args.new_tokens], dtype=np.int32))
                start = time.perf_counter()
                connection.async_stream_infer(name, inputs, enable_empty_final_response=True)
                first = last = 0.0
                pieces: list[str] = []
                error_text = None
                while True:
                    try:
                        at, result, error = events.get(timeout=120)
                    except queue.Empty:
                        error_text = "no response for 120 s"
                        break
                    if error is not None:
                        error_text = str(error)
                        break
                    text = result.as_numpy("text_output")
                    if text is not None:
                        pieces.append(text[0].decode())
                        first = first or at
                        last = at
                    if result.get_response().parameters["triton_final_response"].bool_param:
                        break
                expected, count = answers[prompt]
                text = "".join(pieces)
                if text != expected:  # an int8-activation export may answer differently in a batch
                    count = len(TOKENIZER.encode(text, add_special_tokens=False).ids) + 1  # about: EOS or not
                with lock:
                    if error_text is not None or not first:
                        level.errors.append(error_text or "no text streamed")
                    else:
                        level.samples.append(Sample(first - start, last - start, count, text == expected))
        finally:
            connection.stop_stream()
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    level.wall = time.perf_counter() - start
    return level


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="exported folder (default: SmolLM2 int4)")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "awq2trt-bench-triton")
    parser.add_argument("--clients", default="1,4,8", help="concurrent client counts, comma-separated")
    parser.add_argument("--requests", type=int, default=12, help="requests per client and level")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument(
        "--threads", type=int, default=2, help="ONNX Runtime threads, of the server and of the direct run"
    )
    parser.add_argument(
        "--accuracy-level",
        type=int,
        default=0,
        choices=(0, 4),
        help="of the default model's export: 0 (exact; batching then changes no answer) or 4 (int8 activations)",
    )
    parser.add_argument("--time-limit", type=float, default=300, help="seconds per level at most")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    from awq2trt.models import cache_dir
    from awq2trt.triton.local_server import LocalServer
    from awq2trt.triton.repository import write_repository
    from awq2trt.triton.server_env import ensure_server_env

    args.work_dir.mkdir(parents=True, exist_ok=True)
    folder = args.model_dir or default_model(args.work_dir, args.accuracy_level)
    counts = [int(c) for c in args.clients.split(",")]
    log("the runtime called directly (each prompt once, greedy)")
    answers, direct_rate = direct(folder, list(PROMPTS), args.new_tokens, args.threads)
    name = "bench"
    repo = args.work_dir / "repo"
    write_repository(folder, repo, name=name, max_batch=args.max_batch, threads=args.threads, force=True)
    env = ensure_server_env(cache_dir())
    levels = []
    with LocalServer(env, repo, args.work_dir / "server.log") as server:
        run_level(
            server.grpc_url, name, 1, 2, argparse.Namespace(**{**vars(args), "time_limit": 60}), answers
        )  # warm-up
        for clients in counts:
            log(f"{clients} client(s) x {args.requests} requests")
            levels.append(run_level(server.grpc_url, name, clients, args.requests, args, answers))
    one = next((level for level in levels if level.clients == 1), None)
    one_rate = one.tokens_per_s if one else float("nan")  # like the direct rate: all tokens over all the time
    print(f"model {folder}, --max-batch {args.max_batch}, {args.new_tokens} new tokens, greedy\n")
    columns = (
        "clients",
        "requests",
        "errors",
        "answers not the runtime's",
        "TTFT p50 / p99 (ms)",
        "per token p50 / p99 (ms)",
        "aggregate tok/s",
    )
    print("| " + " | ".join((*columns, "vs 1 client")) + " |")
    print("|---" * (len(columns) + 1) + "|")
    figures = []
    for level in levels:
        ttft = [s.ttft * 1e3 for s in level.samples]
        per_token = [(s.total - s.ttft) / (s.tokens - 1) * 1e3 for s in level.samples if s.tokens > 1]
        ratio = level.tokens_per_s / one.tokens_per_s if one and one.tokens_per_s else float("nan")
        done = len(level.samples) + len(level.errors)
        print(
            f"| {level.clients} | {done}{' (time limit)' if level.partial else ''} | {len(level.errors)} |"
            f" {sum(not sample.same for sample in level.samples)} |"
            f" {percentile(ttft, 50):.0f} / {percentile(ttft, 99):.0f} |"
            f" {percentile(per_token, 50):.1f} / {percentile(per_token, 99):.1f} |"
            f" {level.tokens_per_s:.1f} | {ratio:.2f}x |"
        )
        figures.append(
            {
                "clients": level.clients,
                "requests": done,
                "errors": level.errors[:5],
                "error_count": len(level.errors),
                "different_answers": sum(not sample.same for sample in level.samples),
                "ttft_ms": ttft,
                "per_token_ms": per_token,
                "tokens_per_s": level.tokens_per_s,
                "wall_s": level.wall,
            }
        )
    print(
        f"\nruntime called directly: {direct_rate:.1f} tok/s; one client through Triton: {one_rate:.1f} tok/s"
        f" ({one_rate / direct_rate:.0%} of direct)"
    )
    errors = sum(len(level.errors) for level in levels)
    eight = next((level for level in levels if level.clients == 8), None)
    different = sum(not sample.same for level in levels for sample in level.samples)
    checks = [("0 errors", errors == 0), ("every answer the runtime's", different == 0)]
    if eight and one and one.tokens_per_s:
        checks.append(("8 clients >= 3x one client's tok/s", eight.tokens_per_s >= 3 * one.tokens_per_s))
    checks.append(("one client >= 90 % of direct", one_rate >= 0.9 * direct_rate))
    for label, ok in checks:
        print(f"- {label}: {'yes' if ok else 'NO'}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"direct_tokens_per_s": direct_rate, "one_client_tokens_per_s": one_rate, "levels": figures}, indent=2
            )
        )
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
