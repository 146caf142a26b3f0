"""The float model, one decoder block at a time: memory stays at one block plus the activations.

The architecture is built on the meta device (transformers' own classes, so every supported model runs its
real block code); the weights of one block are read from the checkpoint when that block is processed and
dropped afterwards.  Block inputs come from the model's own forward up to its first block (embedding,
rotary tables, causal mask), caught there — whatever an architecture computes before its blocks is honoured.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from awq2trt.architectures import Architecture
from awq2trt.checkpoint.reader import Checkpoint
from awq2trt.errors import Awq2TrtError
from awq2trt.modeling.loader import empty_model


class _BlockInputs(Exception):
    def __init__(self, hidden: torch.Tensor, kwargs: dict[str, Any]) -> None:
        super().__init__("block inputs captured")
        self.hidden = hidden
        self.kwargs = kwargs


class _Catcher(nn.Module):
    """Stands in for the first block: records what the model passes it, then stops the forward."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def __getattr__(self, name: str) -> Any:
        # Models read attributes of their blocks (e.g. Qwen2's attention_type); answer for the real one.
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("block"), name)

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        if args:
            raise Awq2TrtError("decoder block", expected="keyword arguments after hidden_states", got=len(args))
        raise _BlockInputs(hidden_states, kwargs)


def check_finite(tensor: torch.Tensor, where: str, what: str) -> None:
    if not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).sum())
        raise Awq2TrtError(
            where,
            expected=f"finite activations ({what})",
            got=f"{bad} NaN/inf values",
            detail="the float model itself overflows on the calibration text; check its weights and dtype",
        )


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_to_device(v, device) for v in value)
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


class BlockwiseModel:
    """A meta-device model whose blocks are materialized from *checkpoint* one at a time, in fp32."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        blocks_name: str,
        device: torch.device,
        architecture: Architecture | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.model = empty_model(checkpoint, torch.float32, architecture)
        # Buffers (rotary tables) are built real on the CPU; they must live where the activations are.
        for module in self.model.modules():
            for name, buffer in module._buffers.items():
                if buffer is not None and not buffer.is_meta:
                    module._buffers[name] = buffer.to(device)
        try:
            self.blocks = self.model.get_submodule(blocks_name)
        except AttributeError as exc:
            raise Awq2TrtError(
                f"AWQ mapping for {checkpoint.model_type}: blocks",
                expected="the dotted name of the model's decoder block list",
                got=repr(blocks_name),
            ) from exc
        if not isinstance(self.blocks, nn.ModuleList) or not len(self.blocks):
            raise Awq2TrtError(
                f"AWQ mapping for {checkpoint.model_type}: blocks",
                expected="a list of decoder blocks",
                got=type(self.blocks).__name__,
            )
        self.blocks_name = blocks_name

    def block_name(self, index: int) -> str:
        return f"{self.blocks_name}.{index}"

    def _materialize(self, module: nn.Module, prefix: str) -> None:
        for name, param in list(module.named_parameters()):
            full = f"{prefix}{name}"
            if full not in self.checkpoint.weights:
                raise Awq2TrtError(full, expected="this tensor in the checkpoint", got="missing")
            array = self.checkpoint.tensor(full)
            if tuple(array.shape) != tuple(param.shape):
                raise Awq2TrtError(full, expected=f"shape {list(param.shape)}", got=list(array.shape))
            owner_name, _, leaf = name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            tensor = torch.from_numpy(np.ascontiguousarray(array)).to(device=self.device, dtype=torch.float32)
            owner._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)

    def load_block(self, index: int) -> nn.Module:
        block = self.blocks[index]
        self._materialize(block, f"{self.block_name(index)}.")
        return block.eval()

    def release_block(self, index: int) -> None:
        self.blocks[index].to("meta")

    def block_inputs(self, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Hidden states [S, L, H] entering the first block, and the keyword arguments blocks are called with.

        Samples go one at a time, so the captured arguments (rotary tables, mask) have batch size 1 and
        broadcast over any batch of blocks later.
        """
        first = self.blocks[0]
        skipped = {id(p) for p in self.blocks.parameters()}
        output = self.model.get_output_embeddings()
        input_embeddings = self.model.get_input_embeddings()
        if output is not None and output.weight is not input_embeddings.weight:
            skipped.add(id(output.weight))  # the head is not needed before the first block
        owners = []
        for module_name, module in self.model.named_modules():
            for leaf, param in list(module._parameters.items()):
                if param is not None and id(param) not in skipped and param.is_meta:
                    owners.append((module, leaf, f"{module_name}.{leaf}" if module_name else leaf))
        for module, leaf, full in owners:
            holder = nn.Module()
            holder._parameters[leaf] = module._parameters[leaf]
            self._materialize(holder, full.removesuffix(leaf))
            module._parameters[leaf] = holder._parameters[leaf]
        self.blocks[0] = _Catcher(first)
        hidden, kwargs = [], None
        try:
            with torch.no_grad():
                for row in ids:
                    try:
                        self.model(input_ids=row[None].to(self.device), use_cache=False)
                    except _BlockInputs as caught:
                        hidden.append(caught.hidden.float())
                        kwargs = kwargs if kwargs is not None else caught.kwargs
                    else:
                        raise Awq2TrtError(
                            self.blocks_name, expected="the model to call its first block", got="no call"
                        )
        finally:
            self.blocks[0] = first
            for module, leaf, _ in owners:
                module._parameters[leaf] = nn.Parameter(module._parameters[leaf].to("meta"), requires_grad=False)
        states = torch.cat(hidden)
        check_finite(states, self.block_name(0), "the embedding output entering it")
        kwargs = {k: v for k, v in (kwargs or {}).items() if k not in ("past_key_values", "past_key_value")}
        kwargs["use_cache"] = False
        return states, _to_device(kwargs, self.device)


def run_block(
    block: nn.Module, hidden: torch.Tensor, kwargs: dict[str, Any], batch_size: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """The block applied to [S, L, H] hidden states, *batch_size* samples per call."""
    result = out if out is not None else torch.empty_like(hidden)
    with torch.no_grad():
        for start in range(0, hidden.shape[0], batch_size):
            y = block(hidden[start : start + batch_size], **kwargs)
            result[start : start + batch_size] = (y[0] if isinstance(y, tuple) else y).float()
    return result
