"""Perplexity with fixed windows, the protocol our figures are quoted in.

Tokens are scored in windows of ``window`` tokens started every ``stride`` tokens; in each window only the
tokens not already scored by an earlier window count, and a window's own first token never does (nothing
precedes it there).  stride == window gives independent windows scoring window - 1 tokens each (the usual
transformers protocol); a smaller stride gives each token more context.  The
result is exp(total NLL / tokens scored).  No BOS is added: the text is tokenized as is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from awq2trt.errors import Awq2TrtError


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    tokens_scored: int
    windows: int

    @property
    def mean_nll(self) -> float:
        return math.log(self.perplexity)


def window_spans(num_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first_scored) for each window; first_scored indexes the first target token counted."""
    if window < 2:
        raise Awq2TrtError("--window", expected="at least 2 tokens", got=window)
    if stride < 1 or stride > window:
        raise Awq2TrtError("--stride", expected=f"between 1 and the window ({window})", got=stride)
    if num_tokens < 2:
        raise Awq2TrtError("text", expected="at least 2 tokens to score", got=num_tokens)
    spans = []
    scored_until = 1  # token 0 has no context and is never scored
    begin = 0
    while scored_until < num_tokens:
        end = min(begin + window, num_tokens)
        # A window's first token has no context inside it, so it cannot be scored there.
        first = max(scored_until, begin + 1)
        if first < end:
            spans.append((begin, end, first))
        scored_until = end
        begin += stride
    return spans


def perplexity(
    token_ids: Sequence[int] | np.ndarray,
    logits_fn: Callable[[np.ndarray], np.ndarray],
    *,
    window: int = 512,
    stride: int = 512,
    progress: Callable[[int], None] | None = None,
) -> PerplexityResult:
    """*logits_fn* maps int64 ids [1, T] to float logits [1, T, V]; any backend can provide it."""
    ids = np.asarray(token_ids, dtype=np.int64)
    total_nll = 0.0
    total = 0
    spans = window_spans(len(ids), window, stride)
    for begin, end, first in spans:
        logits = np.asarray(logits_fn(ids[None, begin:end]))[0]
        # Position p predicts token p + 1; score targets first..end-1.
        preds = logits[first - begin - 1 : end - begin - 1].astype(np.float32, copy=False)
        targets = ids[first:end]
        # NLL = logsumexp(row) - row[target]; the max shift keeps exp in range, sums accumulate in fp64.
        row_max = preds.max(axis=-1, keepdims=True)
        log_sum = np.log(np.exp(preds - row_max).sum(axis=-1, dtype=np.float64)) + row_max[:, 0]
        total_nll += float((log_sum - preds[np.arange(len(targets)), targets]).sum())
        total += len(targets)
        if progress is not None:
            progress(1)
    return PerplexityResult(math.exp(total_nll / total), total, len(spans))
