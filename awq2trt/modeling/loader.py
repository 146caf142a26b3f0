"""Build the reference model for a checkpoint: transformers' architecture, no dense weight allocation,
each quantized Linear replaced by `AwqLinear`, and every tensor streamed from the checkpoint's files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from awq2trt.checkpoint.reader import CONFIG_NAME, Checkpoint, open_checkpoint
from awq2trt.errors import Awq2TrtError
from awq2trt.modeling.awq_linear import AwqLinear

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16}
# Buffers some exporters save that the architecture recomputes itself.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.lower() in DTYPES:
        return DTYPES[dtype.lower()]
    raise Awq2TrtError("--dtype", expected="fp32 or fp16", got=dtype)


def check_model_type(checkpoint: Checkpoint) -> None:
    if checkpoint.model_type not in SUPPORTED_MODEL_TYPES:
        raise Awq2TrtError(
            checkpoint.folder / CONFIG_NAME,
            expected="model_type one of " + ", ".join(SUPPORTED_MODEL_TYPES),
            got=repr(checkpoint.model_type or None),
        )


def hf_config(checkpoint: Checkpoint) -> Any:
    """The transformers config object, without the quantization block (we own quantized layers)."""
    from transformers import AutoConfig

    data = {k: v for k, v in checkpoint.config.items() if k != "quantization_config"}
    try:
        return AutoConfig.for_model(**data)
    except (ValueError, TypeError, KeyError) as exc:
        raise Awq2TrtError(
            checkpoint.folder / CONFIG_NAME, expected="a valid transformers config", got=str(exc)
        ) from exc


def _set_tensor(model: nn.Module, name: str, value: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    if leaf in module._parameters:
        module._parameters[leaf] = nn.Parameter(value, requires_grad=False)
    else:
        module._buffers[leaf] = value


def load_reference_model(
    checkpoint: str | Path | Checkpoint,
    *,
    dtype: str | torch.dtype = "fp32",
    allow_pickle: bool = False,
    progress: bool = True,
) -> nn.Module:
    """The reference model (eval mode, no grad) for an AWQ, compressed-tensors or dense checkpoint."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else open_checkpoint(checkpoint, allow_pickle=allow_pickle)
    check_model_type(ckpt)
    torch_dtype = resolve_dtype(dtype)
    config = hf_config(ckpt)
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype, attn_implementation="sdpa")

    modules = dict(model.named_modules())
    for name, layout in tqdm(ckpt.linears.items(), desc="quantized layers", disable=not progress, leave=False):
        target = modules.get(name)
        if not isinstance(target, nn.Linear):
            raise Awq2TrtError(name, expected=f"a Linear of the {ckpt.model_type} architecture", got="no such module")
        if (target.out_features, target.in_features) != (layout.out_features, layout.in_features):
            raise Awq2TrtError(
                name,
                expected=f"[out, in] = {[target.out_features, target.in_features]} from config.json",
                got=[layout.out_features, layout.in_features],
            )
        bias_name = f"{name}.bias"
        if (target.bias is not None) != (bias_name in ckpt.weights):
            raise Awq2TrtError(
                bias_name, expected="present" if target.bias is not None else "absent", got="the opposite"
            )
        bias = ckpt.tensor(bias_name) if target.bias is not None else None
        parent, _, child = name.rpartition(".")
        setattr(
            model.get_submodule(parent),
            child,
            AwqLinear.from_quant_weight(ckpt.quant_weight(name), bias, dtype=torch_dtype),
        )

    expected = {n for n, p in model.named_parameters()} | {n for n, b in model.named_buffers() if b is not None}
    awq_buffers = {f"{m}.{b}" for m in ckpt.linears for b in ("qweight", "scales", "zeros", "bias")}
    dense_needed = sorted(n for n in expected - awq_buffers if not n.endswith(_IGNORED_SUFFIXES))
    output = model.get_output_embeddings()
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for name in dense_needed:
        if name not in ckpt.weights:
            if (
                tied
                and output is not None
                and name.endswith("weight")
                and model.get_submodule(name.rpartition(".")[0]) is output
            ):
                continue
            if name.endswith("rotary_emb.inv_freq") or "rotary" in name:
                continue
            raise Awq2TrtError(name, expected="this tensor in the checkpoint", got="missing")
        array = ckpt.tensor(name)
        current = model.get_parameter(name) if name in dict(model.named_parameters()) else model.get_buffer(name)
        if tuple(current.shape) != array.shape:
            raise Awq2TrtError(name, expected=f"shape {list(current.shape)} from config.json", got=list(array.shape))
        if not np.issubdtype(array.dtype, np.floating):
            raise Awq2TrtError(name, expected="a floating-point tensor", got=str(array.dtype))
        if not np.all(np.isfinite(array)):
            raise Awq2TrtError(name, expected="finite values", got="NaN or inf")
        _set_tensor(model, name, torch.from_numpy(array).to(torch_dtype))
    if tied and output is not None and output.weight.is_meta:
        output.weight = model.get_input_embeddings().weight

    used = set(dense_needed) | ckpt.quantized_tensor_names() | {f"{m}.bias" for m in ckpt.linears}
    unused = [n for n in ckpt.weights.names() if n not in used and not n.endswith(_IGNORED_SUFFIXES)]
    if unused:
        raise Awq2TrtError(
            unused[0],
            expected=f"a tensor of the {ckpt.model_type} architecture in config.json",
            got="an unknown tensor",
        )
    leftover = [n for n, p in model.named_parameters() if p.is_meta]
    if leftover:
        raise Awq2TrtError(leftover[0], expected="this tensor in the checkpoint", got="missing")
    model.eval()
    model.requires_grad_(False)
    return model
