"""What the generation loop asks of a backend: one forward over the prompt, then one token per row per step.

A backend (ONNX Runtime today, a TensorRT engine later) implements ``StepModel``: it says what the loop must
know about the model's tokens (``ModelTokens``) and opens a ``SequenceBatch`` for each ``generate`` call.
The batch object owns the KV cache and everything bound to the backend; the loop owns sampling, stopping,
streaming and timing, and never sees a cache tensor.

The loop pads the prompts on the side the batch asks for (``padding``): a cache that appends in place finds
each row's length from the mask and wants rows right-padded; a cache built by concatenation keeps every row's
newest token in the last column and wants them left-padded.  ``padded_mask`` is that one rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from awq2trt.sidecar import Sidecar

PaddingSide = Literal["left", "right"]


@dataclass(frozen=True)
class ModelTokens:
    """The model facts the loop checks prompts against and stops on."""

    vocab_size: int
    max_positions: int | None  # None: the sidecar gives no bound
    eos_ids: frozenset[int]
    pad_id: int  # fills padded prompt positions; their mask is 0, so any valid id does

    @classmethod
    def of(cls, sidecar: Sidecar) -> ModelTokens:
        eos = frozenset(sidecar.eos_token_ids)
        pad = sidecar.pad_token_id if sidecar.pad_token_id is not None else min(eos, default=0)
        return cls(sidecar.vocab_size, sidecar.max_position_embeddings, eos, pad)


class SequenceBatch(Protocol):
    """The KV state of one batch of rows, from the prompt to the last generated token."""

    padding: PaddingSide

    def prefill(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Run the padded prompt: ids, mask and positions [batch, longest] int64, *lengths* [batch] real lengths.

        Returns each row's logits at its last prompt token, [batch, vocab].
        """
        ...

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Append one token per row (int64 [batch]); the new position's logits [batch, vocab].

        The array may be the backend's own output buffer: read it before the next ``step``.
        """
        ...


class StepModel(Protocol):
    """A backend the generation loop can drive."""

    tokens: ModelTokens

    def new_sequence_batch(self, batch: int, capacity: int) -> SequenceBatch:
        """A fresh cache for *batch* rows that will hold at most *capacity* positions each (prompt included)."""
        ...


def padded_mask(lengths: np.ndarray, width: int, side: str) -> np.ndarray:
    """[batch, width] int64 attention mask with lengths[r] ones per row, packed to the left or right end."""
    columns = np.arange(width)[None, :]
    valid = columns < lengths[:, None] if side == "right" else columns >= (width - lengths)[:, None]
    return valid.astype(np.int64)
