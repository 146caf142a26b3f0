"""``genai_config.json``: makes an ``ort`` output folder loadable by ONNX Runtime GenAI as it is.

GenAI's runtime drives a decoder graph from this file: where the model is, how its inputs and outputs are
named, the attention geometry it needs to size the KV cache, the special tokens, and search defaults.  Our
graph takes ``position_ids``; ``past_present_share_buffer`` follows the sidecar's ``kv_cache.shared_buffer``
(true when attention is GroupQueryAttention, which appends in place; false when ``present`` is a Concat of
``past`` and the new tokens).  The names are the ones our sidecar declares.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from awq2trt.ir import io_names
from awq2trt.sidecar import Sidecar

GENAI_CONFIG_FILE = "genai_config.json"


def _percent_pattern(template: str, kind: str) -> str:
    """Sidecar ``past_key_values.{layer}.{kind}`` -> GenAI's printf form ``past_key_values.%d.key``."""
    return template.replace("{layer}", "%d").replace("{kind}", kind)


def genai_config(sidecar: Sidecar) -> dict[str, Any]:
    """The GenAI configuration for the graph the *sidecar* describes."""
    kv = sidecar.kv_cache
    eos = list(sidecar.eos_token_ids)
    context = sidecar.max_position_embeddings or 4096
    pad = sidecar.pad_token_id
    return {
        "model": {
            "bos_token_id": sidecar.bos_token_id,
            "context_length": context,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": sidecar.model,
                "head_size": sidecar.head_dim,
                "hidden_size": sidecar.hidden_size,
                "inputs": {
                    "input_ids": io_names.INPUT_IDS,
                    "attention_mask": io_names.ATTENTION_MASK,
                    "position_ids": io_names.POSITION_IDS,
                    "past_key_names": _percent_pattern(kv.past, "key"),
                    "past_value_names": _percent_pattern(kv.past, "value"),
                },
                "outputs": {
                    "logits": io_names.LOGITS,
                    "present_key_names": _percent_pattern(kv.present, "key"),
                    "present_value_names": _percent_pattern(kv.present, "value"),
                },
                "num_attention_heads": sidecar.num_attention_heads,
                "num_hidden_layers": sidecar.num_layers,
                "num_key_value_heads": sidecar.num_kv_heads,
            },
            "eos_token_id": eos[0] if len(eos) == 1 else eos,
            "pad_token_id": pad if pad is not None else (eos[0] if eos else 0),
            "type": sidecar.model_type,
            "vocab_size": sidecar.vocab_size,
        },
        "search": {
            "do_sample": False,
            "max_length": context,
            "min_length": 0,
            "num_beams": 1,
            "num_return_sequences": 1,
            "past_present_share_buffer": kv.shared_buffer,
            "repetition_penalty": 1.0,
            "temperature": 1.0,
            "top_k": 1,
            "top_p": 1.0,
        },
    }


def write_genai_config(folder: Path, sidecar: Sidecar) -> str:
    (folder / GENAI_CONFIG_FILE).write_text(json.dumps(genai_config(sidecar), indent=4) + "\n")
    return GENAI_CONFIG_FILE
