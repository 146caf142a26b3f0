"""The line protocol between ``scripts/bench_decode.py`` and its engine workers (standard library only).

Each worker runs in the Python of its own engine (a separate venv for each peer), so it cannot import the
project; it imports this file by path instead.  A worker loads its model once, answers one JSON line on
stdout (``{"ready": true, "info": {...}}`` or ``{"error": "..."}``), then serves requests, one JSON line in
on stdin and one JSON line out on stdout:

    {"op": "run", "ids": [..prompt ids..], "new_tokens": N}
        -> {"prefill_s": .., "ttft_s": .., "decode_s": .., "decode_tokens": N - 1, "new_ids": [..N ids..]}
    {"op": "perplexity", "ids": [..text ids..], "window": W, "stride": S, "spans": [[begin, end, first], ..]}
        -> {"perplexity": .., "nll": .., "tokens_scored": .., "windows": .., "seconds": ..}
    {"op": "quit"} -> the worker exits

Every engine measures the same three spans, with its own clock and no tokenization inside them:

- ``prefill_s``: the forward pass over the whole prompt, until the logits of its last position exist;
- ``ttft_s``: from the start of that forward pass to the first new token id chosen (prefill + greedy pick);
- ``decode_s``: the N - 1 tokens after the first one, each a one-token forward pass plus a greedy pick.

Greedy decoding never stops at an end-of-sequence token, so every engine decodes exactly N tokens.

Perplexity follows the project's protocol (awq2trt/evaluate/perplexity.py): the parent cuts the text's ids
into windows with the project's own ``window_spans`` and sends the spans along, so that a worker that cannot
import the project scores exactly the same targets.  Each window is one forward pass from an empty cache;
position p's logits predict token p + 1, and only targets ``first .. end - 1`` count.  The reply's
perplexity is exp(total NLL / tokens scored).  A worker without a way to get every position's logits
answers the request with an error, which the table shows as n/a.

Libraries print to stdout at will (banners, progress); the worker moves them to stderr and keeps the real
stdout for the protocol alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

# (prompt ids, new tokens) -> the reply of one "run" request
RunFn = Callable[[list[int], int], dict[str, Any]]
# One window's ids -> its logits, [len(ids), vocab] (a numpy array), from a forward pass on an empty cache
LogitsFn = Callable[[list[int]], Any]


@dataclass(frozen=True)
class Windows:
    """A "perplexity" request: the text's ids, and the windows (begin, end, first scored) cut from them."""

    ids: list[int]
    window: int
    stride: int
    spans: list[tuple[int, int, int]]

    @classmethod
    def from_request(cls, request: dict[str, Any]) -> Windows:
        spans = [(int(b), int(e), int(f)) for b, e, f in request["spans"]]
        return cls([int(i) for i in request["ids"]], int(request["window"]), int(request["stride"]), spans)

    def request(self) -> dict[str, Any]:
        spans = [list(span) for span in self.spans]
        return {"op": "perplexity", "ids": self.ids, "window": self.window, "stride": self.stride, "spans": spans}

    @property
    def tokens_scored(self) -> int:
        return sum(end - first for _, end, first in self.spans)


# Windows -> (total NLL in nats, tokens scored)
ScoreFn = Callable[[Windows], tuple[float, int]]


@dataclass(frozen=True)
class Loaded:
    """What a worker's loader hands the server: the timed run, facts for the report, and a text scorer."""

    run: RunFn
    info: dict[str, Any]
    # None where the engine cannot return every position's logits; no_score_reason then says why
    score: ScoreFn | None = None
    no_score_reason: str = "this engine has no perplexity"


def window_nll(logits: Any, ids: list[int], span: tuple[int, int, int]) -> float:
    """Total NLL of one window's scored targets, from its logits [end - begin, vocab]."""
    import numpy as np  # every engine's venv has numpy; this file's top level stays standard library only

    begin, end, first = span
    rows = np.asarray(logits, dtype=np.float32)[first - begin - 1 : end - begin - 1]
    targets = np.asarray(ids[first:end], dtype=np.int64)
    # NLL = logsumexp(row) - row[target]; shifting by the row's max keeps exp in range, sums accumulate in fp64
    row_max = rows.max(axis=-1, keepdims=True)
    log_sum = np.log(np.exp(rows - row_max).sum(axis=-1, dtype=np.float64)) + row_max[:, 0]
    return float((log_sum - rows[np.arange(len(targets)), targets]).sum())


def logits_scorer(logits_fn: LogitsFn) -> ScoreFn:
    """A ScoreFn for an engine that returns each window's logits: one forward pass per window."""

    def score(windows: Windows) -> tuple[float, int]:
        total = 0.0
        for span in windows.spans:
            begin, end, _ = span
            logits = logits_fn(windows.ids[begin:end])
            if len(logits) != end - begin:
                raise ValueError(f"the engine returned {len(logits)} rows of logits for a {end - begin}-token window")
            total += window_nll(logits, windows.ids, span)
        return total, windows.tokens_scored

    return score


def perplexity_reply(score: ScoreFn, windows: Windows) -> dict[str, Any]:
    start = time.perf_counter()
    nll, count = score(windows)
    seconds = time.perf_counter() - start
    return {
        "perplexity": math.exp(nll / count),
        "nll": nll,
        "tokens_scored": count,
        "windows": len(windows.spans),
        "seconds": seconds,
    }


def protocol_stdout() -> TextIO:
    """A private handle on the real stdout; fd 1 then points at stderr, so library prints cannot corrupt replies."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", buffering=1)


def reply(out: TextIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def answer(engine: Loaded, request: dict[str, Any]) -> dict[str, Any]:
    """The reply to one request other than "quit"."""
    op = request.get("op")
    if op == "run":
        return engine.run([int(i) for i in request["ids"]], int(request["new_tokens"]))
    if op == "perplexity":
        if engine.score is None:
            return {"error": engine.no_score_reason}
        return perplexity_reply(engine.score, Windows.from_request(request))
    return {"error": f"unknown op {op!r}"}


def serve(load: Callable[[], Loaded]) -> int:
    """Load the engine with *load*, then answer requests until "quit" or end of input."""
    out = protocol_stdout()
    try:
        start = time.perf_counter()
        engine = load()
        engine.info["load_s"] = time.perf_counter() - start
    except Exception as error:  # the parent shows the reason in the engine's table row
        traceback.print_exc()
        reply(out, {"error": f"{type(error).__name__}: {error}"[:500]})
        return 1
    reply(out, {"ready": True, "info": engine.info})
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("op") == "quit":
            break
        try:
            reply(out, answer(engine, request))
        except Exception as error:
            traceback.print_exc()
            reply(out, {"error": f"{type(error).__name__}: {error}"[:500]})
    return 0


def worker_main(load: Callable[[Path, int], Loaded], description: str | None) -> int:
    """Every worker's command line: MODEL [--threads N], then serve the engine that *load* builds."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("model", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    return serve(lambda: load(args.model, args.threads))


def result(prefill_s: float, ttft_s: float, decode_s: float, new_ids: list[int]) -> dict[str, Any]:
    """The reply to one run request."""
    return {
        "prefill_s": prefill_s,
        "ttft_s": ttft_s,
        "decode_s": decode_s,
        "decode_tokens": max(len(new_ids) - 1, 0),
        "new_ids": [int(i) for i in new_ids],
    }
