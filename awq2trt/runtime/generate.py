"""The generation loop every backend shares: prompt rows, sampling, EOS and length stops, streaming, timing.

It drives a ``StepModel`` (``runtime.step``) and knows nothing of sessions, engines or KV tensors, so an
ONNX Runtime session and a TensorRT engine produce the same tokens from the same logits.  Per-token
bookkeeping stays in plain Python lists: each numpy call in this loop costs ~10 us once a decode step's
weights have flushed the caches, and decode runs one step per token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from awq2trt.errors import Awq2TrtError
from awq2trt.runtime.sampling import Sampler, SamplingConfig
from awq2trt.runtime.step import ModelTokens, StepModel, padded_mask
from awq2trt.runtime.streaming import IncrementalDecoder

Prompt = str | Sequence[int] | np.ndarray
TextCallback = Callable[[int, str], None]


@dataclass(frozen=True)
class Timing:
    """Wall-clock figures of one ``generate`` call.

    ``ttft_s`` runs from the call (tokenization included) to the first sampled token; ``prefill_s`` is the
    prefill forward alone.  ``decode_tokens`` counts the tokens sampled after the first one of each row, over
    ``decode_s`` seconds of decoding.
    """

    prefill_s: float
    ttft_s: float
    decode_s: float
    decode_tokens: int
    total_s: float

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_s > 0 else 0.0


@dataclass(frozen=True)
class Generation:
    """Per prompt: its ids, the new ids (an EOS that stopped it included), their text and why it stopped."""

    prompt_ids: list[list[int]]
    ids: list[list[int]]
    texts: list[str | None]
    finish_reasons: list[str]  # "eos" or "length"
    timing: Timing = field(repr=False)


class Text:
    """The tokenizer side of generation; *tokenizer* may be None where a folder has none (ids in, ids out)."""

    def __init__(self, tokenizer: Any | None, source: str | Path) -> None:
        self.tokenizer = tokenizer
        self.source = source  # where the tokenizer would be: named when one is needed and missing

    def need(self) -> Any:
        if self.tokenizer is None:
            raise Awq2TrtError(self.source, expected="a tokenizer for text prompts or output", got="no such file")
        return self.tokenizer

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        tokenizer = self.need()
        try:
            return tokenizer.encode(text, add_special_tokens=add_special_tokens).ids
        except Exception as error:  # a tokenizer.json that loads but cannot encode (no unk token, ...)
            raise self._unusable("encode", error) from None

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        tokenizer = self.need()
        try:
            return tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        except Exception as error:
            raise self._unusable("decode", error) from None

    def _unusable(self, what: str, error: Exception) -> Awq2TrtError:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        return Awq2TrtError(self.source, expected=f"a tokenizer that can {what} text", got=first)


def generate_tokens(
    model: StepModel,
    text: Text,
    prompts: Prompt | Sequence[Prompt],
    max_new_tokens: int = 64,
    *,
    sampling: SamplingConfig | None = None,
    stop_at_eos: bool = True,
    on_text: TextCallback | None = None,
) -> Generation:
    """Continue one prompt or a batch by up to *max_new_tokens* tokens each (see ``OrtModel.generate``)."""
    start = time.perf_counter()
    sampler = Sampler(sampling or SamplingConfig())
    if max_new_tokens < 0:
        raise Awq2TrtError("max_new_tokens", expected="an integer >= 0", got=max_new_tokens)
    tokens = model.tokens
    rows = prompt_rows(prompts, tokens, text)
    batch, longest = len(rows), max(len(row) for row in rows)
    steps = max_new_tokens
    if tokens.max_positions:
        steps = min(steps, tokens.max_positions - longest)
    new: list[list[int]] = [[] for _ in rows]
    reasons = ["length"] * batch
    decoders = [IncrementalDecoder(text.need()) for _ in rows] if on_text else None
    prefill_s = ttft_s = 0.0
    decode_start = time.perf_counter()
    if steps > 0:
        sequences = model.new_sequence_batch(batch, capacity=longest + steps)
        lengths = np.array([len(row) for row in rows], dtype=np.int64)
        mask = padded_mask(lengths, longest, sequences.padding)
        ids = np.full((batch, longest), tokens.pad_id, dtype=np.int64)
        ids[mask.astype(bool)] = np.concatenate(rows)  # row-major, so each row's ids land in order
        positions = np.clip(np.cumsum(mask, axis=1) - 1, 0, None).astype(np.int64)
        t0 = time.perf_counter()
        last = sequences.prefill(ids, mask, positions, lengths)
        prefill_s = time.perf_counter() - t0
        active = list(range(batch))
        stops = tokens.eos_ids if stop_at_eos else frozenset()
        for step in range(steps):
            token = sampler(last)
            if step == 0:
                ttft_s = time.perf_counter() - start
                decode_start = time.perf_counter()
            picked = token.tolist()
            still = []
            for r in active:
                new[r].append(picked[r])
                if decoders and on_text and (piece := decoders[r].push(picked[r])):
                    on_text(r, piece)
                if picked[r] in stops:
                    reasons[r] = "eos"
                else:
                    still.append(r)
            active = still
            if not active or step == steps - 1:
                break
            # Rows that stopped still run (the batch keeps its shape); their tokens are simply not kept.
            last = sequences.step(token)
    if decoders and on_text:
        for r, decoder in enumerate(decoders):
            if piece := decoder.finish():
                on_text(r, piece)
    end = time.perf_counter()
    texts = [text.decode(row) for row in new] if text.tokenizer is not None else [None] * batch
    timing = Timing(
        prefill_s=prefill_s,
        ttft_s=ttft_s,
        decode_s=end - decode_start if steps > 0 else 0.0,
        decode_tokens=sum(max(len(row) - 1, 0) for row in new),
        total_s=end - start,
    )
    return Generation([list(map(int, row)) for row in rows], new, texts, reasons, timing)


def prompt_rows(prompts: Prompt | Sequence[Prompt], tokens: ModelTokens, text: Text) -> list[list[int]]:
    """Each prompt as a checked list of ids: text is tokenized as is (the post-processor may add BOS)."""
    if isinstance(prompts, str) or _is_id_list(prompts):
        prompts = [prompts]  # type: ignore[list-item]
    rows = []
    for index, prompt in enumerate(prompts):
        where = f"prompt {index}"
        if isinstance(prompt, str):
            row = text.encode(prompt)
        elif _is_id_list(prompt):
            row = [int(i) for i in np.asarray(prompt, dtype=np.int64).ravel()]
        else:
            raise Awq2TrtError(where, expected="text or a list of token ids", got=type(prompt).__name__)
        if not row:
            raise Awq2TrtError(where, expected="at least one token", got="an empty prompt")
        if tokens.max_positions and len(row) > tokens.max_positions:
            raise Awq2TrtError(
                where, expected=f"at most max_position_embeddings = {tokens.max_positions} tokens", got=len(row)
            )
        check_ids(np.asarray(row, dtype=np.int64), tokens.vocab_size, where)
        rows.append(row)
    return rows


def check_ids(ids: np.ndarray, vocab_size: int, where: str) -> None:
    bad = ids[(ids < 0) | (ids >= vocab_size)]
    if bad.size:
        raise Awq2TrtError(where, expected=f"token ids in [0, {vocab_size})", got=int(bad[0]))


def _is_id_list(value: object) -> bool:
    if isinstance(value, np.ndarray):
        return value.ndim == 1 and np.issubdtype(value.dtype, np.integer)
    return isinstance(value, (list, tuple)) and all(isinstance(v, (int, np.integer)) for v in value)
