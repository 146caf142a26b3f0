"""The TensorRT backend of the generation loop: an engine's two optimization profiles over a Concat KV cache.

``awq2trt build`` gives every engine a ``prefill`` profile (the prompt, no cache yet) and a ``decode`` profile
(one token per row over a cache of up to max_context - 1 positions); ``TrtSequenceBatch`` runs the prompt in
the first and every later token in the second.  The ``trt`` graph builds ``present`` by Concat (past + new), so
each step's presents are the next step's pasts and rows are left-padded, as for ONNX Runtime's ``ConcatCache``.

Everything here talks to an ``EngineRunner``: run one profile on named tensors, get the named outputs back.
``trt_engine.TrtEngineRunner`` is the real one (TensorRT on a CUDA device).  Tensors are torch tensors: torch
is already a dependency, its caching allocator makes the per-step present tensors (one position longer each
step) cheap to allocate, and TensorRT enqueues on torch's current stream, so the only synchronisation is the
copy of the logits to the host.  (cuda-python would have added a dependency and a hand-written allocator.)
The runner decides where each input lives (TensorRT reads shape-tensor inputs such as ``num_logits_to_keep``
from host memory); callers hand it CPU or device tensors alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Protocol

import numpy as np
import torch

from awq2trt.errors import Awq2TrtError
from awq2trt.ir import io_names
from awq2trt.runtime.step import ModelTokens, PaddingSide
from awq2trt.sidecar import Sidecar
from awq2trt.tensorrt.engine_info import EngineInfo

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16}
PREFILL, DECODE = "prefill", "decode"


class EngineRunner(Protocol):
    """One forward of an engine in one optimization profile."""

    device: torch.device  # where the runner wants the tensors it is given (it moves them if they are not there)

    def run(self, profile: int, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run optimization profile *profile* on every input by name; every output by name, on ``device``."""
        ...


class TrtStepModel:
    """An engine driven by the generation loop (the ``StepModel`` of ``runtime.step``)."""

    def __init__(self, runner: EngineRunner, sidecar: Sidecar, info: EngineInfo, where: str = "engine") -> None:
        self.runner = runner
        self.sidecar = sidecar
        self.info = info
        self.where = where  # named in errors: the engine folder
        tokens = ModelTokens.of(sidecar)
        # The engine's context bounds generation like the model's positions: the loop stops there.
        limit = min(tokens.max_positions or info.max_context, info.max_context)
        self.tokens = dataclasses.replace(tokens, max_positions=limit)
        self.dtype = TORCH_DTYPES[sidecar.dtype]
        self.past = sidecar.past_names()
        self.present = sidecar.present_names()
        self.prefill_profile = info.profile_index(PREFILL)
        self.decode_profile = info.profile_index(DECODE)

    def new_sequence_batch(self, batch: int, capacity: int) -> TrtSequenceBatch:
        self.check_batch(batch)
        if capacity > self.info.max_context:
            raise Awq2TrtError(
                self.where,
                expected=f"sequences of at most {self.info.max_context} positions (the engine's --max-context)",
                got=capacity,
            )
        return TrtSequenceBatch(self, batch)

    def check_batch(self, batch: int) -> None:
        if batch > self.info.max_batch:
            raise Awq2TrtError(
                self.where,
                expected=f"at most {self.info.max_batch} rows at once (the engine's --max-batch: build a larger one)",
                got=f"{batch} rows",
            )

    def check_prompt(self, length: int) -> None:
        if length > self.info.max_seq:
            raise Awq2TrtError(
                self.where,
                expected=f"prompts of at most {self.info.max_seq} tokens (the engine's --max-seq)",
                got=f"{length} tokens",
            )

    def empty_past(self, batch: int) -> torch.Tensor:
        """A past of no positions, fed for every layer on a first forward."""
        shape = (batch, self.sidecar.num_kv_heads, 0, self.sidecar.head_dim)
        return torch.empty(shape, dtype=self.dtype, device=self.runner.device)

    def forward(
        self, profile: int, feeds: dict[str, torch.Tensor], past: list[torch.Tensor], keep: int
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One engine run: the logits and each layer's present, in ``present`` order."""
        inputs = {**feeds, **dict(zip(self.past, past, strict=True))}
        if self.sidecar.keeps_logits:  # 0 = every position's logits, 1 = the last one's
            inputs[io_names.LOGITS_TO_KEEP] = torch.tensor([keep], dtype=torch.int64)
        out = self.runner.run(profile, inputs)
        return out[io_names.LOGITS], [out[name] for name in self.present]

    def window_logits(self, ids: np.ndarray) -> np.ndarray:
        """Every position's logits [batch, T, vocab] of ids [batch, T] from an empty cache, in the prefill profile."""
        batch, length = ids.shape
        self.check_batch(batch)
        self.check_prompt(length)
        device = self.runner.device
        positions = np.broadcast_to(np.arange(length, dtype=np.int64), ids.shape)
        feeds = {
            io_names.INPUT_IDS: torch.from_numpy(np.ascontiguousarray(ids)).to(device),
            io_names.ATTENTION_MASK: torch.ones((batch, length), dtype=torch.int64, device=device),
            io_names.POSITION_IDS: torch.from_numpy(np.ascontiguousarray(positions)).to(device),
        }
        logits, _ = self.forward(self.prefill_profile, feeds, [self.empty_past(batch)] * len(self.past), keep=0)
        return logits.float().cpu().numpy()


class TrtSequenceBatch:
    """One batch's cache on an engine (the ``SequenceBatch`` of ``runtime.step``): left-padded rows."""

    padding: PaddingSide = "left"

    def __init__(self, model: TrtStepModel, batch: int) -> None:
        self.model = model
        self.batch = batch
        self.past: list[torch.Tensor] = []
        self.mask = torch.zeros((batch, 0), dtype=torch.int64, device=model.runner.device)
        self.lengths = torch.zeros(batch, dtype=torch.int64, device=model.runner.device)

    def prefill(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        model, device = self.model, self.model.runner.device
        model.check_prompt(ids.shape[1])
        self.mask = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)).to(device)
        self.lengths = torch.from_numpy(np.ascontiguousarray(lengths, dtype=np.int64)).to(device)
        feeds = {
            io_names.INPUT_IDS: torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)).to(device),
            io_names.ATTENTION_MASK: self.mask,
            io_names.POSITION_IDS: torch.from_numpy(np.ascontiguousarray(positions, dtype=np.int64)).to(device),
        }
        # Left padding puts every row's last prompt token in the last column: the last position's logits only.
        empty = model.empty_past(self.batch)
        logits, self.past = model.forward(model.prefill_profile, feeds, [empty] * len(model.past), keep=1)
        return logits[:, -1].float().cpu().numpy()

    def step(self, tokens: np.ndarray) -> np.ndarray:
        model, device = self.model, self.model.runner.device
        ones = torch.ones((self.batch, 1), dtype=torch.int64, device=device)
        self.mask = torch.cat([self.mask, ones], dim=1)  # the new token is every row's last column
        feeds = {
            io_names.INPUT_IDS: torch.from_numpy(np.asarray(tokens, dtype=np.int64).reshape(-1, 1)).to(device),
            io_names.ATTENTION_MASK: self.mask,
            io_names.POSITION_IDS: self.lengths[:, None].clone(),  # the new token's position: each row's length
        }
        self.lengths = self.lengths + 1
        logits, self.past = model.forward(model.decode_profile, feeds, self.past, keep=0)
        return logits[:, -1].float().cpu().numpy()
