"""The line protocol between ``scripts/bench_decode.py`` and its engine workers (standard library only).

Each worker runs in the Python of its own engine (a separate venv for each peer), so it cannot import the
project; it imports this file by path instead.  A worker loads its model once, answers one JSON line on
stdout (``{"ready": true, "info": {...}}`` or ``{"error": "..."}``), then serves requests, one JSON line in
on stdin and one JSON line out on stdout:

    {"op": "run", "ids": [..prompt ids..], "new_tokens": N}
        -> {"prefill_s": .., "ttft_s": .., "decode_s": .., "decode_tokens": N - 1, "new_ids": [..N ids..]}
    {"op": "quit"} -> the worker exits

Every engine measures the same three spans, with its own clock and no tokenization inside them:

- ``prefill_s``: the forward pass over the whole prompt, until the logits of its last position exist;
- ``ttft_s``: from the start of that forward pass to the first new token id chosen (prefill + greedy pick);
- ``decode_s``: the N - 1 tokens after the first one, each a one-token forward pass plus a greedy pick.

Greedy decoding never stops at an end-of-sequence token, so every engine decodes exactly N tokens.
Libraries print to stdout at will (banners, progress); the worker moves them to stderr and keeps the real
stdout for the protocol alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

# (prompt ids, new tokens) -> the reply of one "run" request
RunFn = Callable[[list[int], int], dict[str, Any]]


def protocol_stdout() -> TextIO:
    """A private handle on the real stdout; fd 1 then points at stderr, so library prints cannot corrupt replies."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", buffering=1)


def reply(out: TextIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def serve(load: Callable[[], tuple[RunFn, dict[str, Any]]]) -> int:
    """Load the engine with *load*, then answer requests until "quit" or end of input."""
    out = protocol_stdout()
    try:
        start = time.perf_counter()
        run, info = load()
        info["load_s"] = time.perf_counter() - start
    except Exception as error:  # the parent shows the reason in the engine's table row
        traceback.print_exc()
        reply(out, {"error": f"{type(error).__name__}: {error}"[:500]})
        return 1
    reply(out, {"ready": True, "info": info})
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("op") == "quit":
            break
        try:
            reply(out, run([int(i) for i in request["ids"]], int(request["new_tokens"])))
        except Exception as error:
            traceback.print_exc()
            reply(out, {"error": f"{type(error).__name__}: {error}"[:500]})
    return 0


def worker_main(load: Callable[[Path, int], tuple[RunFn, dict[str, Any]]], description: str | None) -> int:
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
