"""A KV cache of fixed slots, one request per slot, for decode steps that batch requests of different lengths.

Only graphs whose attention is ``GroupQueryAttention`` (sidecar ``kv_cache.shared_buffer``: the ``ort``
target's default) can do this cheaply: the op reads each row's length from its attention-mask row, so rows at
different lengths share one step, and it appends each row's new keys in place in a buffer bound as both past
and present.  Each layer's buffer is [slots, kv_heads, capacity, head_dim]; a request joins by a prefill of its
own (batch 1, plain ``run``) whose keys are copied into its slot's row, and leaves by freeing the row.

A step runs the first *k* rows, k = the highest busy slot + 1 (requests take the lowest free slot, so one
request alone runs a batch of one, as fast as the runtime called directly).  The first k rows of every
C-ordered array are contiguous, so each k has an IO binding of views, made on first use and kept: a step
binds nothing.  A free row below k (a request before it finished first) still runs: its mask is one position
wide and its position 0, so it only rewrites its own first column, and its logits are ignored.  On the CPU a
step's inputs are arrays written in place, as in ``runtime.kv_cache.SharedBufferCache``.

With an ``--accuracy-level 4`` export (int8 activations) ONNX Runtime's int4 kernel gives a row slightly
different logits in a batch of several rows than alone (about 1 % on SmolLM2), so a greedy answer can change
with how many requests share the step; an ``--accuracy-level 0`` export gives the same logits within 1e-4 and
the same answers (measured on SmolLM2, tests/test_triton.py on the fixtures).
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
        self._values: list[Any] = []  # OrtValues must outlive the bindings
        self.ids = np.full((slots, 1), steps.tokens.pad_id, np.int64)
        self.positions = np.zeros((slots, 1), np.int64)
        self.mask = np.zeros((slots, capacity), np.int64)
        self.mask[:, 0] = 1  # free rows: one position wide
        self.logits = np.zeros((slots, 1, sidecar.vocab_size), steps.dtype)
        self.keep = np.zeros(1, np.int64)  # num_logits_to_keep 0: every (the one) position
        self.buffers = [np.zeros(self.shape, steps.dtype) for _ in steps.past]
        self.bindings: dict[int, Any] = {}

    def binding(self, rows: int) -> Any:
        """The IO binding of the first *rows* rows of every array (views: they share the arrays' memory)."""
        if rows not in self.bindings:
            binding = self.session.io_binding()
            inputs = [
                (io_names.INPUT_IDS, self.ids[:rows]),
                (io_names.POSITION_IDS, self.positions[:rows]),
                (io_names.ATTENTION_MASK, self.mask[:rows]),
            ]
            if self.steps.sidecar.keeps_logits:
                inputs.append((io_names.LOGITS_TO_KEEP, self.keep))
            for name, array in inputs:
                binding.bind_ortvalue_input(name, self._value(array))
            binding.bind_ortvalue_output(io_names.LOGITS, self._value(self.logits[:rows]))
            for past, present, buffer in zip(self.steps.past, self.steps.present, self.buffers, strict=True):
                value = self._value(buffer[:rows])
                binding.bind_ortvalue_input(past, value)
                binding.bind_ortvalue_output(present, value)
            self.bindings[rows] = binding
        return self.bindings[rows]

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
        """Append one token to each busy slot (slot -> token); logits [rows, vocab] for the first rows (the
        highest busy slot + 1; free rows among them: ignore them).  The array is the bound output buffer: read
        it before the next step."""
        for slot, token in tokens.items():
            length = int(self.lengths[slot])
            if length >= self.capacity:
                raise ValueError(f"slot {slot} is full ({self.capacity} positions)")
            self.ids[slot, 0] = token
            self.mask[slot, length] = 1
            self.positions[slot, 0] = length
            self.lengths[slot] = length + 1
        rows = max(tokens) + 1
        self.session.run_with_iobinding(self.binding(rows))
        return self.logits[:rows, -1]

    def _value(self, array: np.ndarray) -> Any:
        assert array.flags.c_contiguous  # an OrtValue over a view must see the rows it names, in order
        value = ort.OrtValue.ortvalue_from_numpy(array)
        self._values.append(value)
        return value
