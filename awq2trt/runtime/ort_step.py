"""The ONNX Runtime backend of the generation loop: a session over an exported graph, stepped through its cache.

``OrtStepModel.new_sequence_batch`` picks the cache the sidecar's ``kv_cache`` calls for (``kv_cache``:
``SharedBufferCache`` when past and present are one buffer, ``ConcatCache`` otherwise) and wraps it in an
``OrtSequenceBatch``, which feeds the prompt with ``num_logits_to_keep`` (1: the last position) and hands
the loop each row's last logits.  Decode steps go straight to the cache's own ``step``: nothing is added
between the loop and the session on the per-token path.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from awq2trt.ir import io_names
from awq2trt.runtime.kv_cache import ConcatCache, SharedBufferCache
from awq2trt.runtime.step import ModelTokens, PaddingSide
from awq2trt.sidecar import Sidecar

NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16}
_KEEP_LAST = np.ones(1, dtype=np.int64)  # num_logits_to_keep = 1: prefill needs the last position only
_KEEP_ALL = np.zeros(1, dtype=np.int64)


class OrtSequenceBatch:
    """One batch's cache on an ONNX Runtime session (the ``SequenceBatch`` of ``runtime.step``)."""

    def __init__(self, cache: ConcatCache | SharedBufferCache, keeps_logits: bool) -> None:
        self.cache = cache
        self.padding: PaddingSide = "right" if cache.padding == "right" else "left"
        self.keeps_logits = keeps_logits
        self.step = cache.step  # the bound method itself: one call per token, no wrapper frame

    def prefill(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        batch, longest = ids.shape
        # Each row's last prompt token is the last column, except for right-padded rows of different lengths.
        ragged_right = self.padding == "right" and bool((lengths != longest).any())
        feeds = {io_names.INPUT_IDS: ids, io_names.ATTENTION_MASK: mask, io_names.POSITION_IDS: positions}
        if self.keeps_logits:  # a required input: 1 where the last column is every row's last prompt token
            feeds[io_names.LOGITS_TO_KEEP] = _KEEP_ALL if ragged_right else _KEEP_LAST
        logits = self.cache.prefill(feeds, lengths)
        return logits[np.arange(batch), lengths - 1] if ragged_right else logits[:, -1]


class OrtStepModel:
    """An ONNX Runtime session driven by the generation loop (the ``StepModel`` of ``runtime.step``)."""

    def __init__(self, session: ort.InferenceSession, sidecar: Sidecar, device: str = "cpu") -> None:
        self.session = session
        self.sidecar = sidecar
        self.device = device
        self.tokens = ModelTokens.of(sidecar)
        self.dtype = NUMPY_DTYPES[sidecar.dtype]
        self.past = sidecar.past_names()
        self.present = sidecar.present_names()

    def new_sequence_batch(self, batch: int, capacity: int) -> OrtSequenceBatch:
        """The KV cache this graph's form calls for; *capacity* bounds the sequence for a shared buffer."""
        sidecar = self.sidecar
        # Decode steps have one position: every position's logits (0) is the last one's.
        constant = {io_names.LOGITS_TO_KEEP: _KEEP_ALL} if sidecar.keeps_logits else {}
        cache: ConcatCache | SharedBufferCache
        if sidecar.kv_cache.shared_buffer:
            shape = (batch, sidecar.num_kv_heads, capacity, sidecar.head_dim)
            cache = SharedBufferCache(
                self.session, self.past, self.present, shape, self.dtype, self.device, constant_inputs=constant
            )
        else:
            cache = ConcatCache(self.session, self.past, self.present, self.empty_past(batch), constant)
        return OrtSequenceBatch(cache, sidecar.keeps_logits)

    def empty_past(self, batch: int) -> np.ndarray:
        """A past of no positions, fed for every layer on a first forward."""
        return np.zeros((batch, self.sidecar.num_kv_heads, 0, self.sidecar.head_dim), self.dtype)
