"""The two ways a generation loop keeps the KV cache, chosen by what the exported graph computes.

* ``ConcatCache``: the graph's ``present`` is a Concat of past and new keys (the portable ``ir`` graph, or an
  ``ort`` graph exported without ``fuse_gqa``).  ORT allocates a fresh past+seq tensor every step whatever
  the caller does, so the previous step's ``present`` numpy arrays are simply fed back through plain ``run``
  (measured as fast as IO binding for this graph form).  Batches are left-padded.
* ``SharedBufferCache``: the graph's attention is ``GroupQueryAttention``, which appends the new keys in place
  when ``past`` and ``present`` are one buffer.  One zeroed [batch, kv_heads, capacity, head_dim] buffer per
  tensor is bound as both through IO binding, so a decode step copies no cache at all.  The op finds each
  row's length from the attention mask, so batches are right-padded.  On the CPU every decode step after the
  prefill runs on inputs bound once: the token ids, positions and a [batch, capacity] attention mask are
  arrays updated in place, and the [batch, 1, vocab] logits land in an array bound once.  Only the mask's
  ones count (its width only sizes the op's scratch), so a zero-padded full-width mask gives exactly the
  logits of the growing one (tests/test_export.py checks this), and the Python around each step
  shrinks to a few in-place writes: measured in the decode loop at 2 threads, building feeds and binding them
  cost ~90 us a step once a token's ~80 MB of weights have flushed the caches, against ~5 us in isolation.

Both caches take the prompt through ``prefill`` and then one token per row through ``step``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from awq2trt.ir.io_names import ATTENTION_MASK, INPUT_IDS, LOGITS, POSITION_IDS
from awq2trt.runtime.step import padded_mask

__all__ = ["ConcatCache", "SharedBufferCache", "padded_mask"]


class ConcatCache:
    padding = "left"

    def __init__(
        self,
        session: ort.InferenceSession,
        past: Sequence[str],
        present: Sequence[str],
        empty: np.ndarray,
        constant_inputs: Mapping[str, np.ndarray] | None = None,
    ):
        """*constant_inputs* are fed unchanged to every decode step (``num_logits_to_keep`` = 0)."""
        self.session = session
        self.constant_inputs = dict(constant_inputs or {})
        self.past = list(past)
        self.outputs = [LOGITS, *present]
        self.arrays = [empty] * len(self.past)
        self.lengths = np.zeros(0, dtype=np.int64)
        self.width = 0

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        out = self.session.run(self.outputs, {**feeds, **dict(zip(self.past, self.arrays, strict=True))})
        self.arrays = out[1:]
        return out[0]

    def prefill(self, feeds: dict[str, np.ndarray], lengths: np.ndarray) -> np.ndarray:
        """Run the padded prompt (feeds as ``generate`` builds them); *lengths* are each row's real length."""
        self.lengths = lengths.astype(np.int64)
        self.width = feeds[ATTENTION_MASK].shape[1]
        return self.run(feeds)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Append one token per row; the [batch, vocab] logits of the new position."""
        self.lengths = self.lengths + 1
        self.width += 1
        feeds = {
            INPUT_IDS: tokens.astype(np.int64).reshape(-1, 1),
            ATTENTION_MASK: padded_mask(self.lengths, self.width, self.padding),
            POSITION_IDS: (self.lengths - 1)[:, None],
            **self.constant_inputs,
        }
        return self.run(feeds)[:, -1]


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
        *,
        bind_inputs_once: bool | None = None,
        constant_inputs: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """*bind_inputs_once* defaults to on for the CPU (where it is tested); off, every step binds fresh inputs.

        *constant_inputs* are bound once for every decode step (``num_logits_to_keep`` = 0).
        """
        self.session = session
        self.constant_inputs = dict(constant_inputs or {})
        self.past, self.present = list(past), list(present)
        self.shape, self.dtype, self.device = shape, dtype, device
        self.binding: Any = None  # made by the prefill
        self.buffers: list[Any] = []  # (OrtValue, array) pairs: an OrtValue made from an array only points at it
        self.logits: np.ndarray | None = None  # decode steps' [batch, 1, vocab] output, on the CPU
        self.lengths = np.zeros(0, dtype=np.int64)
        # On the CPU: the decode inputs, bound once and written in place (made by the prefill).
        self.ids: np.ndarray | None = None
        self.positions: np.ndarray | None = None
        self.mask: np.ndarray | None = None
        self.rows = np.arange(shape[0])
        self.steps_left = 0
        self.bind_inputs_once = device == "cpu" if bind_inputs_once is None else bind_inputs_once

    @property
    def capacity(self) -> int:
        return self.shape[2]

    def prefill(self, feeds: dict[str, np.ndarray], lengths: np.ndarray) -> np.ndarray:
        """Plain ``run`` from an empty past, then the buffers start as copies of its ``present``.

        The prefill's past is empty and its output sizes differ from a decode step's, so it runs unbound; the one
        copy of the prompt's keys into the buffers costs far less than a second binding.
        """
        batch, heads, _, head_dim = self.shape
        self.lengths = lengths.astype(np.int64)
        self.steps_left = self.capacity - int(self.lengths.max())  # a Python int: cheaper to check every step
        empty = np.zeros((batch, heads, 0, head_dim), self.dtype)
        out = self.session.run([LOGITS, *self.present], {**feeds, **{name: empty for name in self.past}})
        self.binding = self.session.io_binding()
        if self.device == "cpu":  # every decode step's logits have one shape: bind an array once
            self.logits = self._bind_array(np.empty((batch, 1, out[0].shape[-1]), out[0].dtype), LOGITS, "output")
        else:
            self.binding.bind_output(LOGITS, self.device)  # bound first: get_outputs()[0] is the logits
        for name, array in self.constant_inputs.items():
            self._bind_array(np.array(array), name, "input")
        if self.bind_inputs_once:
            self.ids = self._bind_array(np.zeros((batch, 1), np.int64), INPUT_IDS, "input")
            self.positions = self._bind_array((self.lengths - 1)[:, None].copy(), POSITION_IDS, "input")
            self.mask = self._bind_array(padded_mask(self.lengths, self.capacity, "right"), ATTENTION_MASK, "input")
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

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Append one token per row; the [batch, vocab] logits of the new position.

        On the CPU the returned array is the bound logits buffer itself: valid until the next step overwrites it.
        """
        if self.steps_left <= 0:
            raise ValueError(f"the KV buffers hold {self.capacity} positions; a row would pass them")
        self.steps_left -= 1
        if self.bind_inputs_once:
            assert self.ids is not None and self.positions is not None and self.mask is not None
            self.ids[:, 0] = tokens
            self.mask[self.rows, self.lengths] = 1
            self.lengths += 1
            self.positions += 1
        else:
            self.lengths = self.lengths + 1
            feeds = {
                INPUT_IDS: tokens.astype(np.int64).reshape(-1, 1),
                ATTENTION_MASK: padded_mask(self.lengths, int(self.lengths.max()), "right"),
                POSITION_IDS: (self.lengths - 1)[:, None],
            }
            for name, array in feeds.items():
                self.binding.bind_cpu_input(name, array)
        self.session.run_with_iobinding(self.binding)
        logits = self.logits if self.logits is not None else self.binding.get_outputs()[0].numpy()
        return logits[:, -1]

    def _bind_array(self, array: np.ndarray, name: str, side: str) -> np.ndarray:
        value = ort.OrtValue.ortvalue_from_numpy(array)
        if side == "input":
            self.binding.bind_ortvalue_input(name, value)
        else:
            self.binding.bind_ortvalue_output(name, value)
        self.buffers.append((value, array))
        return array
