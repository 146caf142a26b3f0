"""Perplexity protocol against an independent statement of it (transformers' sliding-window recipe)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from awq2trt.errors import Awq2TrtError
from awq2trt.evaluate.perplexity import perplexity, window_spans


def hf_recipe(ids: np.ndarray, logits_fn, window: int, stride: int) -> float:
    """The sliding-window recipe from transformers' perplexity guide, with torch's cross-entropy."""
    seq = torch.from_numpy(ids)[None]
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, seq.shape[1], stride):
        end = min(begin + window, seq.shape[1])
        trg_len = end - prev_end
        inputs = seq[:, begin:end]
        targets = inputs.clone()
        targets[:, :-trg_len] = -100
        logits = torch.from_numpy(logits_fn(inputs.numpy())).double()
        shift_logits, shift_labels = logits[:, :-1], targets[:, 1:]
        valid = int((shift_labels != -100).sum())
        loss = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, logits.shape[-1]), shift_labels.reshape(-1))
        nll_sum += float(loss) * valid
        n_tokens += valid
        prev_end = end
        if end == seq.shape[1]:
            break
    return math.exp(nll_sum / n_tokens)


def toy_logits_fn(vocab: int, seed: int = 0):
    table = np.random.default_rng(seed).standard_normal((vocab, vocab)).astype(np.float32) * 3

    def run(ids: np.ndarray) -> np.ndarray:
        # Depends on the previous token too, so context changes the numbers.
        prev = np.concatenate([ids[:, :1], ids[:, :-1]], axis=1)
        return table[ids] + 0.5 * table[prev]

    return run


@pytest.mark.parametrize(("length", "window", "stride"), [(100, 16, 16), (100, 16, 8), (37, 10, 3), (64, 64, 64)])
def test_matches_transformers_recipe(length: int, window: int, stride: int) -> None:
    ids = np.random.default_rng(1).integers(0, 50, length)
    fn = toy_logits_fn(50)
    ours = perplexity(ids, fn, window=window, stride=stride).perplexity
    assert ours == pytest.approx(hf_recipe(ids, fn, window, stride), rel=1e-6)  # fp32 exp vs fp64


def test_every_token_scored_once_with_overlap() -> None:
    spans = window_spans(100, 16, 5)
    scored = [t for _, end, first in spans for t in range(first, end)]
    assert scored == list(range(1, 100))


def test_uniform_model_has_vocab_perplexity() -> None:
    result = perplexity(np.arange(40) % 7, lambda ids: np.zeros((*ids.shape, 7), np.float32), window=8, stride=8)
    assert result.perplexity == pytest.approx(7.0)
    assert result.tokens_scored == 35  # 5 windows of 8, each scoring 7


@pytest.mark.parametrize(("window", "stride", "option"), [(1, 1, "--window"), (8, 0, "--stride"), (8, 9, "--stride")])
def test_bad_options(window: int, stride: int, option: str) -> None:
    with pytest.raises(Awq2TrtError, match=option):
        window_spans(100, window, stride)
