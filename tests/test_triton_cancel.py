"""A client that goes away: Triton 2.51 marks its request cancelled and the model stops spending steps on it.

The model logs ``awq2trt: request cancelled after N of M tokens`` when it stops a request for that reason
(model.py), so a test reads from the server's log how many tokens an abandoned request cost
(tests/triton_streams.py).  The streams abandoned mid-answer are tested in ``tests/test_triton_server.py``, on
SmolLM2: a fixture answer (at most its 512-position context) decodes in a quarter of a second, too short to
tell a cancelled request from one that merely ran out before the cancel arrived.

Here, against a real ``tritonserver`` on the fixture, once with Triton's own queue in front of one request at a
time (``max_batch`` 1) and once with the model's batch scheduler (``max_batch`` 4): a request cancelled while it
waits for a slot is never prefilled, and a gRPC stream closed without ``cancel_requests`` is not cancelled.  The
scheduler's check is also driven directly, without a server.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from awq2trt.models.default_model import cache_dir
from awq2trt.runtime import OrtModel
from awq2trt.triton.local_server import LocalServer
from awq2trt.triton.repository import DEFAULT_MAX_CONTEXT, write_repository
from awq2trt.triton.server_env import ensure_server_env
from awq2trt.triton.serving import TextGenerator
from tests.triton_streams import (
    QUEUED,
    LogFollower,
    cancellations,
    grpc_stream,
    new_cancellations,
    next_event,
    open_sse,
)

CASE = "llama-gemm-g64"
NAME = "tiny"
PROMPT = "The quick brown fox jumps over the lazy dog and"  # greedy: no EOS before the context is full
QUEUED_PROMPT = "1 2 3 4 5 6 7 8 9 10 11 12"
QUEUED_ROUNDS = 12  # full sets of slots queued ahead of the request cancelled while it waits
ASKED = 2000  # more than the context holds: the answer's length is the context's bound


@pytest.fixture(scope="module")
def folder(shared_export: Any) -> Path:
    return Path(shared_export(CASE, "ort").output)


@pytest.fixture(scope="module")
def model(folder: Path) -> OrtModel:
    return OrtModel.open(folder, threads=1)


@pytest.fixture(scope="module")
def bound(model: OrtModel) -> int:
    """The tokens the server gives PROMPT when asked for ASKED (its context's room after the prompt)."""
    generator = TextGenerator(model, max_context=DEFAULT_MAX_CONTEXT)
    return generator.parse({"text_input": np.array([PROMPT.encode()], dtype=object)}, {"max_tokens": ASKED}).max_tokens


@dataclass(frozen=True)
class Served:
    server: LocalServer
    max_batch: int  # 1: Triton queues the requests, one execute at a time; more: the model's scheduler


@pytest.fixture(scope="module", params=[1, 4], ids=["queue", "scheduler"])
def served(folder: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Served]:
    repo = tmp_path_factory.mktemp(f"cancel-{request.param}") / "repo"
    write_repository(folder, repo, name=NAME, max_batch=request.param)
    # Verbose level 1 logs each request's state, so the cancel test can tell when its request is queued.
    with LocalServer(ensure_server_env(cache_dir()), repo, repo.parent / "server.log", log_verbose=1) as running:
        yield Served(running, request.param)


def _grpc_piece(answers: queue.Queue[tuple[Any, Any]]) -> tuple[str, bool]:
    """The next answer of a gRPC stream: (its text, whether it is the final response)."""
    result, error = answers.get(timeout=60)
    assert error is None, error
    text = result.as_numpy("text_output")
    final = bool(result.get_response().parameters["triton_final_response"].bool_param)
    return ("" if text is None else text[0].decode()), final


# -- the tests -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_grpc_stop_stream_without_cancel_is_not_cancelled(served: Served, model: OrtModel, bound: int) -> None:
    """A plain stop_stream() only closes the stream's sending side and waits: the whole answer comes back and
    nothing is logged as cancelled (so the log line the other tests count means what it says)."""
    server = served.server
    seen = len(cancellations(server))
    client, answers = grpc_stream(server, NAME, PROMPT, ASKED)
    pieces: list[str] = []
    try:
        pieces.append(_grpc_piece(answers)[0])
        client.stop_stream()  # returns once every answer came back
    finally:
        client.close()
    final = False
    while not final:
        piece, final = _grpc_piece(answers)
        pieces.append(piece)
    assert "".join(pieces) == model.generate(PROMPT, bound).texts[0]
    time.sleep(0.5)  # a cancellation line, had there been one, would be in the log by now
    assert len(cancellations(server)) == seen


class _Reader(threading.Thread):
    """An SSE client that reads its whole answer; ``started`` once its first event came (its request decodes)."""

    def __init__(self, server: LocalServer) -> None:
        super().__init__(daemon=True)
        self.server, self.started = server, threading.Event()

    def run(self) -> None:
        connection, answer = open_sse(self.server, NAME, PROMPT, ASKED)
        try:
            assert next_event(answer) is not None
            self.started.set()
            while next_event(answer) is not None:
                pass
        finally:
            connection.close()


@pytest.mark.slow
def test_request_cancelled_while_queued_is_not_prefilled(served: Served) -> None:
    """A gRPC stream request cancelled while it waits behind full slots costs no token once it is handed over
    (Triton 2.51 still hands it to the model, so the model checks before the prefill)."""
    server, slots = served.server, served.max_batch
    seen = len(cancellations(server))
    log = LogFollower(server)
    running = [_Reader(server) for _ in range(slots)]
    for reader in running:
        reader.start()
    for reader in running:
        assert reader.started.wait(timeout=60)  # every slot holds a request now
    # More behind them: a fixture answer decodes in a quarter of a second, so this queue (some three seconds of
    # decoding) is what keeps the cancelled request waiting until the test has cancelled it.
    waiting = [_Reader(server) for _ in range(QUEUED_ROUNDS * slots)]
    for reader in waiting:
        reader.start()
    try:
        # The order is the server's, not the clients': wait until it has queued them all, then the request to
        # cancel, and cancel only then (a cancel the server gets before it has queued the request never reaches
        # the model, and a fixed pause was too short on a loaded machine).
        log.wait_for(QUEUED, count=len(running) + len(waiting))
        client, _ = grpc_stream(server, NAME, QUEUED_PROMPT, ASKED, request_id="cancelled-while-queued")
        try:
            log.wait_for(b"[request id: cancelled-while-queued] " + QUEUED)
            assert not all(r.started.is_set() for r in waiting), "the queue ran dry before the cancel: nothing to test"
            client.stop_stream(cancel_requests=True)
        finally:
            client.close()
    finally:
        log.close()
    for reader in (*running, *waiting):
        reader.join(timeout=60)
    assert [spent for spent, _ in new_cancellations(server, seen)] == [0]


def test_scheduler_skips_a_request_cancelled_before_its_slot(model: OrtModel) -> None:
    """Driven directly: a request already cancelled when a slot frees is finished without a prefill or a step,
    and the next request gets the slot and answers as usual."""
    generator = TextGenerator(model, max_context=DEFAULT_MAX_CONTEXT)
    scheduler = generator.batching(2)
    assert scheduler is not None
    answers: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue()
    pieces: list[str] = []

    def done(outcome: Any, error: BaseException | None) -> None:
        answers.put((outcome, error))

    parsed = generator.parse({"text_input": np.array([PROMPT.encode()], dtype=object)}, {"max_tokens": 8})
    try:
        scheduler.submit(parsed, pieces.append, done, cancelled=lambda: True)
        outcome, error = answers.get(timeout=30)
        assert error is None
        assert (outcome.finish_reason, outcome.tokens, outcome.text, pieces) == ("cancelled", 0, "", [])
        assert scheduler.steps == 0 and not scheduler.busy
        scheduler.submit(parsed, pieces.append, done)
        outcome, error = answers.get(timeout=30)
    finally:
        scheduler.close()
    assert error is None
    assert outcome.text == "".join(pieces) == model.generate(PROMPT, 8).texts[0]
