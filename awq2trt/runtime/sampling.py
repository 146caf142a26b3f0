"""Next-token choice: greedy, or temperature / top-k / top-p sampling from a seeded numpy generator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from awq2trt.errors import Awq2TrtError


@dataclass(frozen=True)
class SamplingConfig:
    """``temperature == 0`` is greedy (argmax); ``top_k == 0`` and ``top_p == 1`` switch those filters off.

    One ``seed`` makes a whole ``generate`` call reproducible (the rows of a batch draw from one generator in
    order).
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise Awq2TrtError("temperature", expected="a number >= 0 (0 is greedy)", got=self.temperature)
        if self.top_k < 0:
            raise Awq2TrtError("top_k", expected="an integer >= 0 (0 keeps every token)", got=self.top_k)
        if not 0 < self.top_p <= 1:
            raise Awq2TrtError("top_p", expected="a number in (0, 1]", got=self.top_p)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class Sampler:
    def __init__(self, config: SamplingConfig) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed)

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """*logits* [batch, vocab] -> token ids [batch] (int64)."""
        if self.config.greedy:
            return logits.argmax(axis=-1)  # intp: int64 on the 64-bit platforms ONNX Runtime ships for
        return np.array([self._sample_row(row) for row in logits], dtype=np.int64)

    def _sample_row(self, row: np.ndarray) -> int:
        config = self.config
        scores = row.astype(np.float64) / config.temperature
        order = np.argsort(-scores, kind="stable")  # best first; ties keep the lower id first, as argmax does
        if config.top_k:
            order = order[: config.top_k]
        kept = scores[order]
        probs = np.exp(kept - kept[0])
        probs /= probs.sum()
        if config.top_p < 1:
            # Keep the smallest prefix whose mass reaches top_p (always at least the best token).
            cutoff = int(np.searchsorted(np.cumsum(probs), config.top_p)) + 1
            order, probs = order[:cutoff], probs[:cutoff] / probs[:cutoff].sum()
        return int(order[self.rng.choice(len(order), p=probs)])
