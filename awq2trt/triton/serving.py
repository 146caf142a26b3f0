"""What the Triton Python-backend model does with a request, apart from Triton itself: parse, generate, stop.

Imports only the runtime (onnxruntime, numpy, tokenizers): it is copied into every ``generate`` repository
and runs in the server's Python, and the tests drive it directly, without a server, against ``OrtModel``.

A request is parsed into a ``TextRequest`` (every bad value is one ``Awq2TrtError`` whose text goes back to
the client), then ``TextGenerator.run`` continues it token by token and hands each new piece of text to
``emit`` as soon as no stop string can still begin in it.  Sampling is per request (its own seeded generator).
``BatchScheduler`` runs many requests' decode steps together (in-flight batching).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from awq2trt.errors import Awq2TrtError
from awq2trt.runtime.sampling import Sampler, SamplingConfig
from awq2trt.runtime.session import OrtModel
from awq2trt.runtime.streaming import IncrementalDecoder

# Inputs besides text_input, and the request parameters that may carry the same settings.
OPTIONS = ("max_tokens", "temperature", "top_k", "top_p", "seed", "stop")
MAX_STOPS = 16
MAX_STOP_CHARS = 256


@dataclass(frozen=True)
class TextRequest:
    prompt_ids: list[int]
    max_tokens: int  # already bounded by the context
    sampling: SamplingConfig
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    text: str
    tokens: int  # sampled tokens, an EOS that stopped it included
    finish_reason: str  # "eos", "length", "stop" or "cancelled"


class StopText:
    """Text as it grows, released only where no stop string can still start; cut at the first stop string."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.text = ""
        self.sent = 0

    def push(self, piece: str) -> tuple[str, bool]:
        """(*text now safe to send*, *whether a stop string was completed*)."""
        self.text += piece
        if not self.stops:
            return self._release(len(self.text)), False
        # A stop string may straddle pieces: search from the longest stop's reach before the unsent text.
        start = max(0, self.sent - max(len(s) for s in self.stops) + 1)
        hits = [i for s in self.stops if (i := self.text.find(s, start)) >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            return self._release(len(self.text)), True
        hold = max((k for s in self.stops for k in range(1, len(s)) if self.text.endswith(s[:k])), default=0)
        return self._release(len(self.text) - hold), False

    def flush(self) -> str:
        return self._release(len(self.text))

    def _release(self, end: int) -> str:
        end = max(end, self.sent)
        piece, self.sent = self.text[self.sent : end], end
        return piece


class TextGenerator:
    """One exported model serving text requests, one at a time (``run``)."""

    def __init__(self, model: OrtModel, default_max_tokens: int = 64, max_context: int | None = None) -> None:
        """*max_context* bounds prompt + answer (and sizes a slot's KV buffers); default max_position_embeddings."""
        if model.tokenizer is None:
            raise Awq2TrtError(model.folder / "tokenizer.json", expected="a tokenizer", got="no such file")
        self.model = model
        self.default_max_tokens = default_max_tokens
        limits = [n for n in (model.max_positions, max_context) if n]
        self.max_context = min(limits) if limits else None

    @classmethod
    def open(
        cls,
        folder: str,
        *,
        provider: str = "cpu",
        threads: int | None = None,
        default_max_tokens: int = 64,
        max_context: int | None = None,
        kernels: str | None = None,
    ) -> TextGenerator:
        from awq2trt.runtime.providers import execution_providers

        model = OrtModel.open(folder, providers=execution_providers(provider), threads=threads, kernels=kernels)
        return cls(model, default_max_tokens, max_context)

    def batching(self, slots: int) -> BatchScheduler | None:
        """A scheduler decoding up to *slots* requests together, or None where this graph cannot (see ``slots``)."""
        from awq2trt.triton.slots import supports_slots

        if slots < 2 or not supports_slots(self.model.steps) or not self.max_context:
            return None
        return BatchScheduler(self, slots, self.max_context)

    # -- requests -----------------------------------------------------------------------------------------------

    def parse(self, inputs: Mapping[str, Any], parameters: Mapping[str, Any] | None = None) -> TextRequest:
        """*inputs*: name -> numpy array (as Triton hands them; absent optional inputs missing or None);
        *parameters*: the request's parameters, which may give the same options as scalars."""
        values: dict[str, Any] = {}
        for key, value in (parameters or {}).items():
            if key not in OPTIONS:
                raise Awq2TrtError(
                    f"parameter {key!r}", expected=f"only {', '.join(OPTIONS)}", got="an unknown parameter"
                )
            values[key] = value
        for key in OPTIONS:
            array = inputs.get(key)
            if array is not None:
                values[key] = _strings(array, key) if key == "stop" else _scalar(array, key)
        prompt = inputs.get("text_input")
        if prompt is None:
            raise Awq2TrtError("text_input", expected="a prompt", got="no such input")
        text = _strings(prompt, "text_input")
        if len(text) != 1:
            raise Awq2TrtError("text_input", expected="one string", got=f"{len(text)} strings")
        if not text[0]:
            raise Awq2TrtError("text_input", expected="a non-empty prompt", got="an empty string")
        ids = self.model.encode(text[0])
        if not ids:
            raise Awq2TrtError("text_input", expected="a prompt of at least one token", got="none")
        limit = self.max_context
        if limit and len(ids) >= limit:
            raise Awq2TrtError(
                "text_input",
                expected=f"fewer than the model's context of {limit} tokens (room to generate)",
                got=f"{len(ids)} tokens",
            )
        max_tokens = _integer(values.get("max_tokens", self.default_max_tokens), "max_tokens")
        if max_tokens < 1:
            raise Awq2TrtError("max_tokens", expected="an integer >= 1", got=max_tokens)
        if limit:
            max_tokens = min(max_tokens, limit - len(ids))
        seed = values.get("seed")
        sampling = SamplingConfig(
            temperature=_number(values.get("temperature", 0.0), "temperature"),
            top_k=_integer(values.get("top_k", 0), "top_k"),
            top_p=_number(values.get("top_p", 1.0), "top_p"),
            seed=None if seed is None else _integer(seed, "seed"),
        )
        stops = values.get("stop", ())
        stops = (stops,) if isinstance(stops, str) else tuple(stops)
        stops = tuple(s for s in stops if s)
        if len(stops) > MAX_STOPS or any(len(s) > MAX_STOP_CHARS for s in stops):
            raise Awq2TrtError(
                "stop", expected=f"at most {MAX_STOPS} strings of at most {MAX_STOP_CHARS} characters", got=len(stops)
            )
        return TextRequest(ids, max_tokens, sampling, stops)

    # -- generation ---------------------------------------------------------------------------------------------

    def run(
        self, request: TextRequest, emit: Callable[[str], None], cancelled: Callable[[], bool] = lambda: False
    ) -> Outcome:
        """Generate for one request on a batch of one; *emit* gets each safe piece of text as it appears."""
        model = self.model
        prompt = request.prompt_ids
        sequence = model.steps.new_sequence_batch(1, capacity=len(prompt) + request.max_tokens)
        ids = np.asarray([prompt], dtype=np.int64)
        length = np.asarray([len(prompt)], dtype=np.int64)
        positions = np.arange(len(prompt), dtype=np.int64)[None]
        last = sequence.prefill(ids, np.ones_like(ids), positions, length)
        state = _Decoding(model, request, emit)
        for step in range(request.max_tokens):
            token = state.sample(last)
            if state.push(token) or step == request.max_tokens - 1:
                break
            if cancelled():  # the client went away: stop spending decode steps on it
                state.stop("cancelled")
                break
            last = sequence.step(np.asarray([token], dtype=np.int64))
        return state.finish()


class _Decoding:
    """One request's side of decoding: its sampler, its detokenizer, its stop strings, its finish reason."""

    def __init__(self, model: OrtModel, request: TextRequest, emit: Callable[[str], None]) -> None:
        self.sampler = Sampler(request.sampling)
        self.decoder = IncrementalDecoder(model.tokenizer)
        self.stops = StopText(request.stop)
        self.eos = model.eos_ids
        self.emit = emit
        self.tokens = 0
        self.reason = "length"
        self.done = False

    def sample(self, logits: np.ndarray) -> int:
        """*logits*: this request's [1, vocab] row."""
        return int(self.sampler(logits)[0])

    def push(self, token: int) -> bool:
        """Take one sampled token; True when the request is finished (EOS or a stop string)."""
        self.tokens += 1
        if token in self.eos:
            return self.stop("eos")
        text, stopped = self.stops.push(self.decoder.push(token))
        if text:
            self.emit(text)
        return self.stop("stop") if stopped else False

    def stop(self, reason: str) -> bool:
        self.reason, self.done = reason, True
        return True

    def finish(self) -> Outcome:
        if self.reason not in ("stop", "cancelled"):
            text, stopped = self.stops.push(self.decoder.finish())
            if stopped:
                self.reason = "stop"
            rest = text + ("" if stopped else self.stops.flush())
            if rest:
                self.emit(rest)
        return Outcome(self.stops.text[: self.stops.sent], self.tokens, self.reason)


def _strings(array: Any, name: str) -> list[str]:
    values = np.asarray(array, dtype=object).ravel().tolist()
    out = []
    for value in values:
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise Awq2TrtError(name, expected="UTF-8 text", got="bytes that are not UTF-8") from None
        if not isinstance(value, str):
            raise Awq2TrtError(name, expected="strings", got=type(value).__name__)
        out.append(value)
    return out


def _scalar(array: Any, name: str) -> Any:
    values = np.asarray(array).ravel()
    if values.size != 1:
        raise Awq2TrtError(name, expected="one value", got=f"{values.size} values")
    return values[0].item()


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise Awq2TrtError(name, expected="an integer", got=repr(value))
    return int(value)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise Awq2TrtError(name, expected="a number", got=repr(value))
    return float(value)


Done = Callable[[Outcome | None, BaseException | None], None]


@dataclass
class _Job:
    request: TextRequest
    state: _Decoding
    done: Done
    cancelled: Callable[[], bool]
    slot: int = -1
    token: int = -1  # the last sampled token, fed by the next step
    steps_left: int = 0


class BatchScheduler:
    """Requests decoded together: each joins at its own prefill and leaves when it stops (in-flight batching).

    ``submit`` queues a request and returns at once; one worker thread admits queued requests into free slots
    (``slots.SlotCache``), runs one decode step for every busy slot, hands each request its token, and calls
    ``done(outcome, None)`` (or ``done(None, error)``) as each one finishes.  Greedy answers are the same as
    one at a time (tests/test_triton.py).  A sampled answer draws from the request's own seeded generator, but
    a row's logits in a batch may differ from a lone row's in the last bits (another kernel path), which can
    move a draw that lands near a probability boundary: seeded sampling repeats exactly only one at a time.
    """

    # Steps between asking Triton whether a client went away (a round trip to the server each time): an abandoned
    # request costs at most this many more steps once Triton has marked it (model.py ``_cancelled`` says when).
    CANCEL_CHECK_EVERY = 8

    def __init__(self, generator: TextGenerator, slots: int, capacity: int) -> None:
        import collections
        import threading

        from awq2trt.triton.slots import SlotCache

        self.generator = generator
        self.cache = SlotCache(generator.model.steps, slots, capacity)
        self.queue: collections.deque[_Job] = collections.deque()
        self.lock = threading.Condition()
        self.closed = False
        self.busy: dict[int, _Job] = {}
        self.steps = 0
        self.thread = threading.Thread(target=self._loop, name="awq2trt-batch", daemon=True)
        self.thread.start()

    def submit(
        self,
        request: TextRequest,
        emit: Callable[[str], None],
        done: Done,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        job = _Job(request, _Decoding(self.generator.model, request, emit), done, cancelled)
        with self.lock:
            if self.closed:
                raise RuntimeError("the scheduler is closed")
            self.queue.append(job)
            self.lock.notify()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.lock.notify()
        self.thread.join(timeout=10)

    # -- the worker -------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self.lock:
                while not self.closed and not self.queue and not self.busy:
                    self.lock.wait()
                if self.closed:
                    jobs = [*self.queue, *self.busy.values()]
                    self.queue.clear()
                    self.busy.clear()
                    break
                joining = []
                free = [s for s in range(self.cache.slots) if s not in self.busy]
                while self.queue and free:
                    job = self.queue.popleft()
                    job.slot = free.pop(0)
                    joining.append(job)
            for job in joining:
                self._admit(job)
            if self.busy:
                self._step()
        for job in jobs:
            self._finish(job, RuntimeError("the model is shutting down"))

    def _admit(self, job: _Job) -> None:
        if job.cancelled():  # its client left while it waited for a slot: no prefill, and the slot stays free
            job.state.stop("cancelled")
            self._finish(job)
            return
        try:
            logits = self.cache.admit(job.slot, job.request.prompt_ids)
        except Exception as error:  # an ORT failure on this prompt: this request fails, the others go on
            self.cache.release(job.slot)
            self._finish(job, error)
            return
        job.steps_left = min(job.request.max_tokens, self.cache.room(job.slot) + 1)
        self.busy[job.slot] = job
        self._take(job, logits)

    def _step(self) -> None:
        try:
            logits = self.cache.step({slot: job.token for slot, job in self.busy.items()})
        except Exception as error:  # every busy request shared this step
            for job in list(self.busy.values()):
                self._finish(job, error)
            return
        self.steps += 1
        check = self.steps % self.CANCEL_CHECK_EVERY == 0
        for slot, job in list(self.busy.items()):
            if check and job.cancelled():
                job.state.stop("cancelled")
                self._finish(job)
                continue
            self._take(job, logits[slot : slot + 1])

    def _take(self, job: _Job, logits: np.ndarray) -> None:
        """Sample the job's next token from its row; finish it if that ends it."""
        try:
            job.token = job.state.sample(logits)
            job.steps_left -= 1
            if job.state.push(job.token) or job.steps_left <= 0:
                self._finish(job)
        except Exception as error:  # emit failed (the client went away) or a bug: only this request ends
            self._finish(job, error)

    def _finish(self, job: _Job, error: BaseException | None = None) -> None:
        if job.slot >= 0 and self.busy.get(job.slot) is job:
            del self.busy[job.slot]
            self.cache.release(job.slot)
        outcome = None
        if error is None:
            try:
                outcome = job.state.finish()
            except Exception as failure:  # the last emit failed: the client is gone
                error = failure
        # Answering this request may fail (its client is gone); the worker goes on with the others.
        with contextlib.suppress(Exception):
            job.done(outcome, error)
