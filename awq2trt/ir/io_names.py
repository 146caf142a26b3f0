"""The exported graph's input and output names: one definition for the tracer, passes, sidecar and runtimes.

The convention is ONNX Runtime GenAI's and optimum's: inputs ``input_ids`` [batch, seq], ``attention_mask``
[batch, total_seq], ``position_ids`` [batch, seq], ``past_key_values.{i}.key|value`` [batch, kv_heads, past_seq,
head_dim] and ``num_logits_to_keep`` [1] (0 = every position's logits, k = the last k); outputs ``logits`` and
``present.{i}.key|value``.
This module imports nothing, so serving code can read it without the compiler.
"""

from __future__ import annotations

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
POSITION_IDS = "position_ids"
LOGITS_TO_KEEP = "num_logits_to_keep"
LOGITS = "logits"
KV_KINDS = ("key", "value")
PAST_TEMPLATE = "past_key_values.{layer}.{kind}"
PRESENT_TEMPLATE = "present.{layer}.{kind}"
TOKEN_INPUTS = (INPUT_IDS, ATTENTION_MASK, POSITION_IDS)
KEPT_DIM = "kept_seq"  # the logits' sequence dim once num_logits_to_keep may shorten it


def past_names(num_layers: int, template: str = PAST_TEMPLATE) -> list[str]:
    """``past_key_values.0.key``, ``past_key_values.0.value``, ``past_key_values.1.key``, ..."""
    return [template.format(layer=i, kind=kind) for i in range(num_layers) for kind in KV_KINDS]


def present_names(num_layers: int, template: str = PRESENT_TEMPLATE) -> list[str]:
    return [template.format(layer=i, kind=kind) for i in range(num_layers) for kind in KV_KINDS]


def input_names(num_layers: int) -> list[str]:
    """The traced inputs in order (``num_logits_to_keep`` is added after tracing)."""
    return [*TOKEN_INPUTS, *past_names(num_layers)]


def output_names(num_layers: int) -> list[str]:
    return [LOGITS, *present_names(num_layers)]
