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


def grpc_stream(server: LocalServer, name: str, prompt: str, tokens: int) -> tuple[Any, queue.Queue[tuple[Any, Any]]]:
    """A gRPC stream with one request sent: (the client, its answers as they come)."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    tensor = grpcclient.InferInput("text_input", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([prompt.encode()], dtype=object))
    client.async_stream_infer(name, [tensor], parameters={"max_tokens": tokens}, enable_empty_final_response=True)
    return client, answers
