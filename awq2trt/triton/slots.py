"""A KV cache of fixed slots, one request per slot, for decode steps that batch requests of different lengths.

Only graphs whose attention is ``GroupQueryAttention`` (sidecar ``kv_cache.shared_buffer``: the ``ort``
target's default) can do this cheaply: the op reads each row's length from its attention-mask row, so rows at
different lengths share one step, and it appends each row's new keys in place in a buffer bound as both past
and present.  Each layer's buffer is [slots, kv_heads, capacity, head_dim]; a request joins by a prefill of its
own (batch 1, plain ``run``) whose keys are copied into its slot's row, and leaves by freeing the row.

A free row still runs in every step (the batch keeps its shape, so everything stays bound once): its mask is
one position wide and its position 0, so it only ever rewrites its own first column, and its logits are
ignored.  On the CPU, a step's inputs are arrays bound once and written in place, as in
``runtime.kv_cache.SharedBufferCache``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from awq2trt.ir import io_names
from awq2trt.runtime.ort_step import OrtStepModel


def supports_slots(steps: OrtStepModel) -> bool:
    """Whether this graph and device can batch requests of different lengths (see the module docstring)."""
    return steps.sidecar.kv_cache.shared_buffer and steps.device == "cpu"


class SlotCache:
    def __init__(self, steps: OrtStepModel, slots: int, capacity: int) -> None:
        if not supports_slots(steps):
            raise ValueError("slots need a GroupQueryAttention graph on the CPU")
        sidecar = steps.sidecar
        self.steps = steps
        self.session = steps.session
        self.slots, self.capacity = slots, capacity
        self.shape = (slots, sidecar.num_kv_heads, capacity, sidecar.head_dim)
        self.lengths = np.zeros(slots, dtype=np.int64)  # 0: a free slot
        self._values: list[Any] = []  # OrtValues must outlive the binding
        self.binding = self.session.io_binding()
        self.ids = self._bind(np.full((slots, 1), steps.tokens.pad_id, np.int64), io_names.INPUT_IDS, "input")
        self.positions = self._bind(np.zeros((slots, 1), np.int64), io_names.POSITION_IDS, "input")
        self.mask = self._bind(np.zeros((slots, capacity), np.int64), io_names.ATTENTION_MASK, "input")
        self.mask[:, 0] = 1  # free rows: one position wide
        if sidecar.keeps_logits:
            self._bind(np.zeros(1, np.int64), io_names.LOGITS_TO_KEEP, "input")  # 0: every (the one) position
        self.logits = self._bind(np.zeros((slots, 1, sidecar.vocab_size), steps.dtype), io_names.LOGITS, "output")
        self.buffers = []
        for past, present in zip(steps.past, steps.present, strict=True):
            array = np.zeros(self.shape, steps.dtype)
            value = ort.OrtValue.ortvalue_from_numpy(array)
            self.binding.bind_ortvalue_input(past, value)
            self.binding.bind_ortvalue_output(present, value)
            self._values.append(value)
            self.buffers.append(array)

    def admit(self, slot: int, prompt: list[int]) -> np.ndarray:
        """Prefill *prompt* into a free *slot*; its last position's logits [1, vocab]."""
        length = len(prompt)
        if length >= self.capacity:
            raise ValueError(f"a prompt of {length} tokens does not fit {self.capacity} positions")
        ids = np.asarray([prompt], dtype=np.int64)
        feeds = {
            io_names.INPUT_IDS: ids,
            io_names.ATTENTION_MASK: np.ones_like(ids),
            io_names.POSITION_IDS: np.arange(length, dtype=np.int64)[None],
            **{name: self.steps.empty_past(1) for name in self.steps.past},
        }
        if self.steps.sidecar.keeps_logits:
            feeds[io_names.LOGITS_TO_KEEP] = np.ones(1, np.int64)
        out = self.session.run([io_names.LOGITS, *self.steps.present], feeds)
        for buffer, keys in zip(self.buffers, out[1:], strict=True):
            buffer[slot, :, :length] = keys[0]
        self.mask[slot] = 0
        self.mask[slot, :length] = 1
        self.lengths[slot] = length
        self.positions[slot, 0] = length - 1
        return out[0][:, -1]

    def release(self, slot: int) -> None:
        self.lengths[slot] = 0
        self.mask[slot] = 0
        self.mask[slot, 0] = 1
        self.positions[slot, 0] = 0
        self.ids[slot, 0] = self.steps.tokens.pad_id

    def room(self, slot: int) -> int:
        """Tokens the slot can still append."""
        return self.capacity - int(self.lengths[slot])

    def step(self, tokens: dict[int, int]) -> np.ndarray:
        """Append one token to each busy slot (slot -> token); logits [slots, vocab] (free rows: ignore them).

        The array is the bound output buffer: read it before the next step.
        """
        for slot, token in tokens.items():
            length = int(self.lengths[slot])
            if length >= self.capacity:
                raise ValueError(f"slot {slot} is full ({self.capacity} positions)")
            self.ids[slot, 0] = token
            self.mask[slot, length] = 1
            self.positions[slot, 0] = length
            self.lengths[slot] = length + 1
        self.session.run_with_iobinding(self.binding)
        return self.logits[:, -1]

    def _bind(self, array: np.ndarray, name: str, side: str) -> np.ndarray:
        value = ort.OrtValue.ortvalue_from_numpy(array)
        if side == "input":
            self.binding.bind_ortvalue_input(name, value)
        else:
            self.binding.bind_ortvalue_output(name, value)
        self._values.append(value)
        return array
