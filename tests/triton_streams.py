"""Clients that go away, and what the server's log says of them: shared by the Triton tests.

The model logs ``awq2trt: request cancelled after N of M tokens`` when it stops a request because Triton marked it
cancelled (awq2trt/triton/python_model/model.py), so a test reads from the server's log how many tokens an
abandoned request cost.
"""

from __future__ import annotations

import http.client
import json
import queue
import re
import time
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

from awq2trt.triton.local_server import LocalServer

CANCELLED = re.compile(r"awq2trt: request cancelled after (\d+) of (\d+) tokens")


# -- what the server says --------------------------------------------------------------------------------------


def cancellations(server: LocalServer) -> list[tuple[int, int]]:
    """(tokens spent, tokens it could have had) of each request the model logged as cancelled, in order."""
    text = server.log.read_text(errors="replace")
    return [(int(spent), int(limit)) for spent, limit in CANCELLED.findall(text)]


def new_cancellations(server: LocalServer, seen: int, count: int = 1, timeout: float = 15) -> list[tuple[int, int]]:
    """The *count* cancellations logged after the first *seen* (the server writes its log as it goes)."""
    deadline = time.monotonic() + timeout
    while len(found := cancellations(server)) < seen + count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(found) >= seen + count, f"{len(found) - seen} of {count} requests logged as cancelled: {found[seen:]}"
    time.sleep(0.5)  # one more line (a request cancelled that should not have been) would be here by now
    found = cancellations(server)
    assert len(found) == seen + count, found[seen:]
    return found[seen:]


# What tritonserver --log-verbose=1 logs once a request is in its model's queue.
QUEUED = b"Setting state from INITIALIZED to PENDING"


class LogFollower:
    """The lines a server (started with ``log_verbose=1``) logs from now on, read as they come: a request a client
    has sent may still sit in the client's or the server's buffers, where a cancel never reaches the model, so a
    test that needs a request queued waits for the server to say so."""

    def __init__(self, server: LocalServer) -> None:
        self.log = open(server.log, "rb")  # noqa: SIM115 (closed by close())
        self.log.seek(0, 2)
        self.partial = b""  # a line the server had not finished writing

    def wait_for(self, text: bytes, count: int = 1, timeout: float = 30) -> None:
        """Return once *count* more lines holding *text* have been logged."""
        deadline = time.monotonic() + timeout
        while count > 0:
            lines = (self.partial + self.log.read()).split(b"\n")
            self.partial = lines.pop()
            count -= sum(text in line for line in lines)
            if count > 0:
                assert time.monotonic() < deadline, f"{count} more lines with {text!r} not logged within {timeout} s"
                time.sleep(0.02)

    def close(self) -> None:
        self.log.close()


# -- clients ---------------------------------------------------------------------------------------------------


def open_sse(server: LocalServer, name: str, prompt: str, tokens: int) -> tuple[http.client.HTTPConnection, Any]:
    connection = http.client.HTTPConnection(server.http_url, timeout=60)
    body = json.dumps({"text_input": prompt, "max_tokens": tokens})
    connection.request("POST", f"/v2/models/{name}/generate_stream", body, {"Content-Type": "application/json"})
    answer = connection.getresponse()
    assert answer.status == 200
    return connection, answer


def next_event(answer: Any) -> dict[str, Any] | None:
    """The next SSE event's JSON, or None at the end of the stream."""
    while line := answer.readline():
        if line.startswith(b"data: "):
            event: dict[str, Any] = json.loads(line[len(b"data: ") :])
            assert "error" not in event, event
            return event
    return None


def grpc_stream(
    server: LocalServer, name: str, prompt: str, tokens: int, request_id: str = ""
) -> tuple[Any, queue.Queue[tuple[Any, Any]]]:
    """A gRPC stream with one request sent: (the client, its answers as they come)."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    tensor = grpcclient.InferInput("text_input", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([prompt.encode()], dtype=object))
    client.async_stream_infer(
        name, [tensor], request_id=request_id, parameters={"max_tokens": tokens}, enable_empty_final_response=True
    )
    return client, answers
