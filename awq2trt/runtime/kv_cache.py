"""The two ways a generation loop keeps the KV cache, chosen by what the exported graph computes.

* ``ConcatCache``: the graph's ``present`` is a Concat of past and new keys (the portable ``ir`` graph, or an
  ``ort`` graph exported without ``fuse_gqa``).  ORT allocates a fresh past+seq tensor every step whatever
  the caller does, so the previous step's ``present`` numpy arrays are simply fed back through plain ``run``
  (measured as fast as IO binding for this graph form).  Batches are left-padded.
* ``SharedBufferCache``: the graph's attention is ``GroupQueryAttention``, which appends the new keys in place
  when ``past`` and ``present`` are one buffer.  One zeroed [batch, kv_heads, capacity, head_dim] buffer per
  tensor is bound as both through IO binding, so a decode step copies no cache at all.  The op finds each
  row's length from the attention mask, so batches are right-padded.  After the prefill every run is one
  token per row, whose [batch, 1, vocab] logits land in an array bound once (on the CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

LOGITS = "logits"


class ConcatCache:
    padding = "left"

    def __init__(self, session: ort.InferenceSession, past: Sequence[str], present: Sequence[str], empty: np.ndarray):
        self.session = session
        self.past = list(past)
        self.outputs = [LOGITS, *present]
        self.arrays = [empty] * len(self.past)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        out = self.session.run(self.outputs, {**feeds, **dict(zip(self.past, self.arrays, strict=True))})
        self.arrays = out[1:]
        return out[0]


class SharedBufferCache:
    padding = "right"

    def __init__(
        self,
        session: ort.InferenceSession,
        past: Sequence[str],
        present: Sequence[str],
        shape: tuple[int, int, int, int],
        dtype: type,
        device: str = "cpu",
    ) -> None:
        self.session = session
        self.past, self.present = list(past), list(present)
        self.shape, self.dtype, self.device = shape, dtype, device
        self.binding: Any = None  # made by the first (prefill) run
        self.buffers: list[Any] = []
        self.logits: np.ndarray | None = None  # decode steps' [batch, 1, vocab] output, on the CPU

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self.binding is None:
            return self._prefill(feeds)
        for name, array in feeds.items():
            self.binding.bind_cpu_input(name, array)
        self.session.run_with_iobinding(self.binding)
        if self.logits is not None:  # ORT wrote into our array: no per-step wrapping of all 2L+1 outputs
            return self.logits  # valid until the next run overwrites it; generate samples from it before that
        return self.binding.get_outputs()[0].numpy()

    def _prefill(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Plain ``run`` from an empty past, then the buffers start as copies of its ``present``.

        IO binding refuses inputs that have a default (``num_logits_to_keep``), and the prefill is the step
        that needs it; the one copy of the prompt's keys costs far less than computing every position's logits.
        """
        batch, heads, _, head_dim = self.shape
        empty = np.zeros((batch, heads, 0, head_dim), self.dtype)
        out = self.session.run([LOGITS, *self.present], {**feeds, **{name: empty for name in self.past}})
        self.binding = self.session.io_binding()
        if self.device == "cpu":  # every decode step's logits have one shape: bind an array once
            self.logits = np.empty((batch, 1, out[0].shape[-1]), out[0].dtype)
            value = ort.OrtValue.ortvalue_from_numpy(self.logits)
            self.binding.bind_ortvalue_output(LOGITS, value)
            self.buffers.append((value, self.logits))  # the OrtValue only points at the array: keep both
        else:
            self.binding.bind_output(LOGITS, self.device)  # bound first: get_outputs()[0] is the logits
        for past_name, present_name, prompt in zip(self.past, self.present, out[1:], strict=True):
            # Zeros, not uninitialized memory: positions past a row's length are never read, but a NaN left
            # there by chance must not reach a score.  On the CPU the OrtValue shares the array's memory.
            array = np.zeros(self.shape, self.dtype)
            array[:, :, : prompt.shape[2]] = prompt
            buffer = ort.OrtValue.ortvalue_from_numpy(array, self.device, 0)
            self.binding.bind_ortvalue_input(past_name, buffer)
            self.binding.bind_ortvalue_output(present_name, buffer)
            self.buffers.append((buffer, array))
        return out[0]


def padded_mask(lengths: np.ndarray, width: int, side: str) -> np.ndarray:
    """[batch, width] int64 attention mask with lengths[r] ones per row, packed to the left or right end."""
    columns = np.arange(width)[None, :]
    valid = columns < lengths[:, None] if side == "right" else columns >= (width - lengths)[:, None]
    return valid.astype(np.int64)
