"""A flat-tensor view of a causal LM with a KV cache, in the IO convention ONNX Runtime GenAI and optimum use.

Inputs: ``input_ids`` [batch, seq], ``attention_mask`` [batch, total_seq], ``position_ids`` [batch, seq],
``past_key_values.{i}.key`` / ``.value`` [batch, kv_heads, past_seq, head_dim].  Outputs: ``logits``
[batch, seq, vocab], ``present.{i}.key`` / ``.value`` [batch, kv_heads, past_seq + seq, head_dim].
One graph serves prefill (past_seq = 0) and decode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from awq2trt.ir import io_names


@dataclass(frozen=True)
class KvLayout:
    num_layers: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int

    @classmethod
    def of(cls, config: object) -> KvLayout:
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        return cls(config.num_hidden_layers, kv_heads, head_dim, config.vocab_size)

    def past_names(self) -> list[str]:
        return io_names.past_names(self.num_layers)

    def present_names(self) -> list[str]:
        return io_names.present_names(self.num_layers)

    def input_names(self) -> list[str]:
        return io_names.input_names(self.num_layers)

    def output_names(self) -> list[str]:
        return io_names.output_names(self.num_layers)


class KvCacheWrapper(nn.Module):
    """Takes and returns flat tensors; builds transformers' cache object inside so the trace sees plain IO."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past: list[torch.Tensor],
    ) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache

        # Plain (uncropped) layers: present = past + seq always, also for sliding-window models, whose
        # window the attention mask applies; runtimes then need no model-specific cache arithmetic.
        cache = DynamicCache()
        for layer in range(len(past) // 2):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
        )
        presents = [t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
        return (out.logits, *presents)


def example_inputs(layout: KvLayout, dtype: torch.dtype, device: str = "cpu") -> tuple:
    """Sizes that are neither 0 nor 1 (the tracer would specialise on those)."""
    batch, seq, past = 2, 5, 3
    ids = torch.zeros((batch, seq), dtype=torch.int64, device=device)
    mask = torch.ones((batch, past + seq), dtype=torch.int64, device=device)
    positions = torch.arange(past, past + seq, device=device).repeat(batch, 1)
    cache = [
        torch.zeros((batch, layout.num_kv_heads, past, layout.head_dim), dtype=dtype, device=device)
        for _ in range(2 * layout.num_layers)
    ]
    return (ids, mask, positions, cache)


def dynamic_shapes(layout: KvLayout) -> dict:
    batch, seq, total, past = "batch", "seq", "total_seq", "past_seq"
    return {
        io_names.INPUT_IDS: {0: batch, 1: seq},
        io_names.ATTENTION_MASK: {0: batch, 1: total},
        io_names.POSITION_IDS: {0: batch, 1: seq},
        "past": [{0: batch, 2: past}] * (2 * layout.num_layers),
    }
