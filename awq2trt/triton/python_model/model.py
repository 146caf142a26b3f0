"""The Triton Python-backend model ``awq2trt triton`` writes: text in, streamed text out, over an exported folder.

Triton loads this file as ``NAME/1/model.py``.  Its config's parameters say where the exported folder
(``model_folder``) and the copied awq2trt modules (``code_folder``) are, relative to the model's folder, how
many requests to decode together (``max_batch``) and how long one may be (``max_context``).  The model is
decoupled: it sends one response per piece of text and then an empty final one.  Plain infer goes through
``NAME_infer`` (``forwarder.py``), which forwards here, so the weights are loaded once.  A bad request gets an
error response with awq2trt's one-line message, and the model keeps serving.  A request whose client went away
(Triton marks it cancelled, see ``_cancelled``) stops at the next check, and the server's log says so.

With ``max_batch`` > 1 (and a graph that allows it, see ``awq2trt.triton.slots``) requests go to one
``BatchScheduler``: ``execute`` only queues them and returns, so Triton hands it the next requests while
earlier ones are still decoding, and every decode step serves all of them.  A request's first piece is sent at
once, from the decode thread; its later pieces and its final response go out on a thread of their own
(``_Responses``), in order, while the next steps run: a send is a round trip to the server process, and with
eight clients on this 2-core machine the sends took a fifth of each step when the decode thread made them all.
Sending the first piece itself keeps the time to first token from waiting behind other requests' pieces.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

OUTPUT = "text_output"
INPUTS = ("text_input", "max_tokens", "temperature", "top_k", "top_p", "seed", "stop")
FORWARDED_PARAMETERS = "awq2trt_forwarded_parameters"  # a plain request's parameters, from forwarder.py


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise pb_utils.TritonModelException("this model streams: its config must say decoupled: true")
        home = Path(args["model_repository"])  # this model's folder
        code = str((home / parameters["code_folder"]).resolve())
        if code not in sys.path:
            sys.path.insert(0, code)  # the awq2trt modules copied beside the weights, whatever else is installed
        from awq2trt.errors import Awq2TrtError
        from awq2trt.triton.serving import Outcome, TextGenerator

        self.user_error = Awq2TrtError
        self.nothing_done = Outcome("", 0, "cancelled")  # a request whose client left before it started
        self.generator = TextGenerator.open(
            str((home / parameters["model_folder"]).resolve()),
            provider=parameters.get("provider", "cpu"),
            threads=int(parameters["threads"]) if "threads" in parameters else None,
            default_max_tokens=int(parameters.get("max_tokens", "64")),
            max_context=int(parameters["max_context"]) if "max_context" in parameters else None,
            # The kernel library an ort-kernels export needs, copied beside the exported folder's files.
            kernels=str((home / parameters["kernels"]).resolve()) if "kernels" in parameters else None,
        )
        self.scheduler = self.generator.batching(int(parameters.get("max_batch", "1")))
        self.responses = _Responses() if self.scheduler is not None else None

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            self._stream(request)

    def finalize(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()
        if self.responses is not None:
            self.responses.close()  # after the scheduler: its last answers are queued by then

    # -- requests ---------------------------------------------------------------------------------------------

    def _parse(self, request: Any) -> Any:
        inputs = {}
        for name in INPUTS:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            inputs[name] = None if tensor is None else tensor.as_numpy()
        parameters = json.loads(request.parameters() or "{}")
        if set(parameters) == {FORWARDED_PARAMETERS}:
            parameters = json.loads(parameters[FORWARDED_PARAMETERS])
        return self.generator.parse(inputs, parameters)

    def _stream(self, request: Any) -> None:
        sender = request.get_response_sender()
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        try:
            parsed = self._parse(request)
        except self.user_error as error:
            sender.send(_error(error), flags=final)
            return

        def send_piece(piece: str) -> None:
            sender.send(pb_utils.InferenceResponse(output_tensors=[_text(piece)]))

        def send_final(outcome: Any, error: BaseException | None) -> None:
            _log_cancelled(outcome, parsed.max_tokens)
            # The client may be gone: then there is nobody to tell, and the model must go on serving.
            with contextlib.suppress(Exception):
                if error is not None:
                    sender.send(_error(error), flags=final)
                else:
                    sender.send(flags=final)

        emit: Callable[[str], None] = send_piece
        done: Callable[[Any, BaseException | None], None] = send_final
        if self.responses is not None:
            emit, done = self.responses.senders(send_piece, send_final)

        def cancelled() -> bool:
            return _cancelled(request, sender)

        if self.scheduler is not None:
            self.scheduler.submit(parsed, emit, done, cancelled)  # returns at once: the worker answers
        else:
            self._run_alone(parsed, emit, done, cancelled)

    def _run_alone(
        self,
        parsed: Any,
        emit: Callable[[str], None],
        done: Callable[[Any, BaseException | None], None],
        cancelled: Callable[[], bool],
    ) -> None:
        if cancelled():  # Triton 2.51 still hands over a request cancelled while it queued: skip its prefill
            done(self.nothing_done, None)
            return
        try:
            outcome = self.generator.run(parsed, emit, cancelled)
        except Exception as error:
            done(None, error)
            return
        done(outcome, None)


class _Responses:
    """The batched requests' responses after their first piece, sent on a thread of their own in the order they
    were queued (so each request's pieces, then its final response).  Triton 2.51 never raised on a send to a
    client that had gone (it marks the request cancelled instead, see ``_cancelled``), so a failed send is only
    dropped: the decode thread never waits on one."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="awq2trt-responses", daemon=True)
        self.thread.start()

    def senders(
        self, send_piece: Callable[[str], None], send_final: Callable[[Any, BaseException | None], None]
    ) -> tuple[Callable[[str], None], Callable[[Any, BaseException | None], None]]:
        """(emit, done) for one request: its first piece sent by the caller, everything after it queued."""
        first = True

        def emit(piece: str) -> None:
            nonlocal first
            if first:  # nothing of this request is queued yet, so sending it now keeps the order
                first = False
                send_piece(piece)
            else:
                self.queue.put((send_piece, (piece,)))

        def done(outcome: Any, error: BaseException | None) -> None:
            self.queue.put((send_final, (outcome, error)))

        return emit, done

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=10)

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            send, args = item
            with contextlib.suppress(Exception):
                send(*args)


def _text(text: str) -> Any:
    return pb_utils.Tensor(OUTPUT, np.array([text.encode("utf-8")], dtype=np.object_))


def _error(error: BaseException) -> Any:
    message = " ".join(str(error).split()) or type(error).__name__  # one line, whatever raised it
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))


def _log_cancelled(outcome: Any, max_tokens: int) -> None:
    """Say in the server's log that a request stopped because its client went away, and after how many tokens:
    an operator (and tests/test_triton_cancel.py) can see that the decode steps it had left were not spent."""
    if outcome is not None and outcome.finish_reason == "cancelled":
        pb_utils.Logger.log_info(f"awq2trt: request cancelled after {outcome.tokens} of {max_tokens} tokens")


def _cancelled(request: Any, sender: Any) -> bool:
    """Whether the client cancelled or went away (both ask Triton; older servers lack one or the other).

    What sets it in Triton 2.51 (measured: tests/test_triton_cancel.py; read in the server's src/http_server.cc
    and src/grpc/): a gRPC stream cancelled by its client (tritonclient's ``stop_stream(cancel_requests=True)``;
    a plain ``stop_stream()`` only half-closes and waits for the answers) cancels each request of the stream at
    once.  An HTTP client of ``generate_stream`` (SSE) that hangs up is seen only once the request's first
    response has gone out: the HTTP frontend pauses the connection (libevhtp stops reading it) while the request
    waits, resumes it with the first response, and then the hang-up frees the HTTP request, whose fini hook
    cancels the Triton request.  So an SSE request abandoned while queued still costs its prefill and the tokens
    up to the next check (one alone, up to ``BatchScheduler.CANCEL_CHECK_EVERY`` in a batch)."""
    for source in (request, sender):
        check = getattr(source, "is_cancelled", None)
        if check is not None and check():
            return True
    return False
