"""``awq2trt bench``: prefill and decode speed of an exported folder (ONNX Runtime) or engine, as users see it.

Prompts are seeded random token ids: the speed of a forward pass does not depend on which tokens it reads,
and random ids need no tokenizer and no text file.  Every figure is taken ``rounds`` times after one warm-up
run; the report gives the best and the median (the machine may be shared, so the best is the figure that
others can reproduce, the median shows the noise).  Decode always runs the full ``new_tokens`` (EOS does
not stop it) so that every round does the same work.
"""

from __future__ import annotations

import resource
import statistics
import sys
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from awq2trt.errors import Awq2TrtError
from awq2trt.runtime.text_model import TextModel

SHORT_PROMPT_TOKENS = 25  # a typical chat prompt; time to first token is measured on it


@dataclass(frozen=True)
class Figure:
    best: float
    median: float

    @classmethod
    def of(cls, values: list[float], *, higher_is_better: bool) -> Figure:
        return cls(max(values) if higher_is_better else min(values), statistics.median(values))


@dataclass(frozen=True)
class BenchReport:
    model: str
    provider: str
    threads: int | None
    rounds: int
    model_bytes: int
    prefill_tokens_per_s: dict[int, Figure]
    decode_tokens_per_s: Figure
    new_tokens: int
    ttft_ms: Figure
    peak_rss_bytes: int

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["prefill_tokens_per_s"] = {str(k): asdict(v) for k, v in self.prefill_tokens_per_s.items()}
        return data


def peak_rss_bytes() -> int:
    """This process's peak resident set (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def benchmark(
    model: TextModel,
    *,
    prompt_lengths: tuple[int, ...] = (128, 512),
    new_tokens: int = 64,
    rounds: int = 3,
    seed: int = 0,
    provider: str = "cpu",
    threads: int | None = None,
) -> BenchReport:
    """Measure *model*: prefill tok/s per prompt length, decode tok/s, time to first token."""
    if rounds < 1:
        raise Awq2TrtError("--rounds", expected="an integer >= 1", got=rounds)
    if new_tokens < 2:
        raise Awq2TrtError(
            "--new-tokens", expected="an integer >= 2 (decode needs a token after the first)", got=new_tokens
        )
    limit = model.max_positions
    for length in prompt_lengths:
        if length < 1 or (limit and length + 1 > limit):
            raise Awq2TrtError(
                "--prompt-lengths", expected=f"lengths from 1 to {limit - 1 if limit else 'any'}", got=length
            )
    if limit and SHORT_PROMPT_TOKENS + new_tokens > limit:
        raise Awq2TrtError(
            "--new-tokens", expected=f"at most {limit - SHORT_PROMPT_TOKENS} for this model", got=new_tokens
        )
    rng = np.random.default_rng(seed)

    def prompt(length: int) -> list[int]:
        return rng.integers(0, model.vocab_size, length).tolist()

    model.generate(prompt(SHORT_PROMPT_TOKENS), 4, stop_at_eos=False)  # warm-up: first-run allocations
    prefill: dict[int, list[float]] = {length: [] for length in prompt_lengths}
    decode: list[float] = []
    ttft: list[float] = []
    for _ in range(rounds):
        for length in prompt_lengths:
            timing = model.generate(prompt(length), 1, stop_at_eos=False).timing
            prefill[length].append(length / timing.prefill_s)
        timing = model.generate(prompt(SHORT_PROMPT_TOKENS), new_tokens, stop_at_eos=False).timing
        decode.append(timing.decode_tokens_per_s)
        ttft.append(1000 * timing.ttft_s)
    return BenchReport(
        model=str(model.folder),
        provider=provider,
        threads=threads,
        rounds=rounds,
        model_bytes=sum(f.stat().st_size for f in model.model_files()),
        prefill_tokens_per_s={k: Figure.of(v, higher_is_better=True) for k, v in prefill.items()},
        decode_tokens_per_s=Figure.of(decode, higher_is_better=True),
        new_tokens=new_tokens,
        ttft_ms=Figure.of(ttft, higher_is_better=False),
        peak_rss_bytes=peak_rss_bytes(),
    )


def format_report(report: BenchReport) -> str:
    """The report as a small markdown table."""
    rows = [
        *(
            (f"prefill {length} tokens", f"{f.best:.1f} tok/s", f"{f.median:.1f} tok/s")
            for length, f in report.prefill_tokens_per_s.items()
        ),
        (
            f"decode ({report.new_tokens} tokens)",
            f"{report.decode_tokens_per_s.best:.1f} tok/s",
            f"{report.decode_tokens_per_s.median:.1f} tok/s",
        ),
        (
            f"time to first token ({SHORT_PROMPT_TOKENS}-token prompt)",
            f"{report.ttft_ms.best:.1f} ms",
            f"{report.ttft_ms.median:.1f} ms",
        ),
    ]
    threads = report.threads if report.threads is not None else "default"
    lines = [
        f"{report.model} ({report.provider}, {threads} threads, {report.rounds} rounds)",
        "",
        "| measure | best | median |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
        "",
        f"model files {report.model_bytes / 2**20:.1f} MiB; process peak RSS {report.peak_rss_bytes / 2**20:.1f} MiB",
    ]
    return "\n".join(lines)
