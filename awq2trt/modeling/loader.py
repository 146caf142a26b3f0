"""Build the reference model for a checkpoint: transformers' architecture, no dense weight allocation,
each quantized Linear replaced by `AwqLinear`, and every tensor streamed from the checkpoint's files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from awq2trt.architectures import CONFIG_KEY, Architecture, compiled_types, find_architecture, resolve_architecture
from awq2trt.checkpoint.reader import CONFIG_NAME, Checkpoint, open_checkpoint
from awq2trt.errors import Awq2TrtError
from awq2trt.modeling.awq_linear import AwqLinear

SUPPORTED_MODEL_TYPES = compiled_types()  # built in; a mapping file or a recorded description adds others
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16}
# Sizes every supported architecture needs; checked here so a bad value gets a message, not a crash deep
# inside transformers.
REQUIRED_SIZES = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
# Buffers some exporters save that the architecture recomputes itself.
_RECOMPUTED_SUFFIXES = ("rotary_emb.inv_freq",)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.lower() in DTYPES:
        return DTYPES[dtype.lower()]
    raise Awq2TrtError("--dtype", expected="fp32 or fp16", got=dtype)


def check_model_type(checkpoint: Checkpoint, mapping_file: str | Path | None = None) -> Architecture:
    """The checkpoint's architecture (built in, recorded in its config.json, or from *mapping_file*), or the
    refusal quantize and export give too."""
    files = () if mapping_file is None else (mapping_file,)
    return resolve_architecture(checkpoint.config, checkpoint.folder / CONFIG_NAME, files)


def check_model_config(checkpoint: Checkpoint) -> None:
    """The fields we rely on, checked before transformers sees them."""
    config = checkpoint.config
    where = checkpoint.folder / CONFIG_NAME
    architectures = config.get("architectures")
    if architectures is not None and not (
        isinstance(architectures, list) and all(isinstance(a, str) for a in architectures)
    ):
        raise Awq2TrtError(f"{where}: architectures", expected="a list of class names", got=repr(architectures))
    for key in (*REQUIRED_SIZES, "num_key_value_heads", "head_dim"):
        value = config.get(key)
        if value is None and key not in REQUIRED_SIZES:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise Awq2TrtError(f"{where}: {key}", expected="a positive integer", got=repr(value))
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    if heads % kv_heads:
        raise Awq2TrtError(
            f"{where}: num_key_value_heads", expected=f"a divisor of num_attention_heads={heads}", got=kv_heads
        )
    if "head_dim" not in config and config["hidden_size"] % heads:
        raise Awq2TrtError(
            f"{where}: hidden_size", expected=f"a multiple of num_attention_heads={heads}", got=config["hidden_size"]
        )


def hf_config(checkpoint: Checkpoint, architecture: Architecture | None = None) -> Any:
    """The transformers config object, without the quantization block (we own quantized layers), built by the
    transformers classes the architecture names (a described Llama-like type is built as Llama)."""
    from transformers import AutoConfig

    architecture = architecture or find_architecture(checkpoint.config, checkpoint.folder / CONFIG_NAME)
    data = {k: v for k, v in checkpoint.config.items() if k not in ("quantization_config", CONFIG_KEY)}
    if architecture is not None:
        data["model_type"] = architecture.transformers_model_type
    try:
        return AutoConfig.for_model(**data)
    except Exception as exc:  # transformers validates with several exception types; all mean a bad config
        raise Awq2TrtError(
            checkpoint.folder / CONFIG_NAME,
            expected="a config transformers accepts",
            got=f"{type(exc).__name__}: {exc}",
        ) from exc


def attention_config(checkpoint: Checkpoint, architecture: Architecture | None = None) -> dict[str, Any]:
    """config.json with the sliding-window layout transformers derives from it, so every stage agrees with it.

    An older Qwen2 config.json has no ``layer_types``: transformers makes layers from ``max_window_layers`` on
    sliding (and none when ``use_sliding_window`` is false); read raw, the same file says "every layer slides".
    """
    hf = hf_config(checkpoint, architecture)
    config = dict(checkpoint.config)
    if isinstance(getattr(hf, "layer_types", None), list):
        config["layer_types"] = list(hf.layer_types)
    if hasattr(hf, "sliding_window"):
        config["sliding_window"] = hf.sliding_window
    return config


def empty_model(checkpoint: Checkpoint, dtype: torch.dtype, architecture: Architecture | None = None) -> nn.Module:
    """The architecture with parameters on the meta device (no memory), buffers real."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    config = hf_config(checkpoint, architecture)
    try:
        with init_empty_weights(include_buffers=False):
            return AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    except Exception as exc:  # an invalid value (activation, rope type, ...) surfaces while building
        raise Awq2TrtError(
            checkpoint.folder / CONFIG_NAME, expected="a buildable model config", got=f"{type(exc).__name__}: {exc}"
        ) from exc


def checked_dense_tensor(checkpoint: Checkpoint, name: str, shape: tuple[int, ...]) -> np.ndarray:
    array = checkpoint.tensor(name)
    if array.shape != shape:
        raise Awq2TrtError(name, expected=f"shape {list(shape)} from config.json", got=list(array.shape))
    if not np.issubdtype(array.dtype, np.floating):
        raise Awq2TrtError(name, expected="a floating-point tensor", got=str(array.dtype))
    if not np.all(np.isfinite(array)):
        raise Awq2TrtError(name, expected="finite values", got=f"{int(np.count_nonzero(~np.isfinite(array)))} NaN/inf")
    return array


def linear_to_replace(model: nn.Module, ckpt: Checkpoint, name: str, out_features: int, in_features: int) -> nn.Linear:
    """The architecture's Linear that quantized weight *name* stands for, checked against its shape."""
    try:
        target = model.get_submodule(name)
    except AttributeError:
        target = None
    if not isinstance(target, nn.Linear):
        raise Awq2TrtError(name, expected=f"a Linear of the {ckpt.model_type} architecture", got="no such module")
    if (out_features, in_features) != (target.out_features, target.in_features):
        raise Awq2TrtError(
            name,
            expected=f"[out, in] = {[target.out_features, target.in_features]} from config.json",
            got=[out_features, in_features],
        )
    return target


def _install_quantized(model: nn.Module, ckpt: Checkpoint, dtype: torch.dtype, progress: bool) -> None:
    for name in tqdm(ckpt.linears, desc="quantized layers", disable=not progress, leave=False):
        qw = ckpt.quant_weight(name)  # decoding first: a malformed tensor is named before shapes are compared
        target = linear_to_replace(model, ckpt, name, qw.out_features, qw.in_features)
        bias_name = f"{name}.bias"
        if (target.bias is not None) != (bias_name in ckpt.weights):
            raise Awq2TrtError(
                bias_name,
                expected="present" if target.bias is not None else "absent (config has no bias)",
                got="the opposite",
            )
        bias = checked_dense_tensor(ckpt, bias_name, (qw.out_features,)) if target.bias is not None else None
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, AwqLinear.from_quant_weight(qw, bias, dtype=dtype))


def _install_dense(model: nn.Module, ckpt: Checkpoint, dtype: torch.dtype) -> None:
    output = model.get_output_embeddings()
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    tied_name = next((n for n, p in model.named_parameters() if output is not None and p is output.weight), None)
    loaded = set()
    for name, param in list(model.named_parameters()):
        if name not in ckpt.weights:
            if tied and name == tied_name:
                continue  # the output head is the input embedding, stored once
            raise Awq2TrtError(name, expected="this tensor in the checkpoint", got="missing")
        array = checked_dense_tensor(ckpt, name, tuple(param.shape))
        module_name, _, leaf = name.rpartition(".")
        module = model.get_submodule(module_name) if module_name else model
        module._parameters[leaf] = nn.Parameter(torch.from_numpy(array).to(dtype), requires_grad=False)
        loaded.add(name)
    if tied and output is not None and output.weight.is_meta:
        output.weight = model.get_input_embeddings().weight
    used = loaded | ckpt.quantized_tensor_names() | {f"{m}.bias" for m in ckpt.linears}
    unused = [n for n in ckpt.weights.names() if n not in used and not n.endswith(_RECOMPUTED_SUFFIXES)]
    if unused:
        raise Awq2TrtError(
            unused[0],
            expected=f"a tensor of the {ckpt.model_type} architecture in config.json",
            got="an unknown tensor",
        )


def load_reference_model(
    checkpoint: str | Path | Checkpoint,
    *,
    dtype: str | torch.dtype = "fp32",
    allow_pickle: bool = False,
    progress: bool = True,
    cache_dense: bool = False,
    mapping_file: str | Path | None = None,
) -> nn.Module:
    """The reference model (eval mode, no grad) for an AWQ, compressed-tensors or dense checkpoint.

    With *cache_dense* every `AwqLinear` keeps its dequantized weight (dense-model memory, much faster
    generation); without it the dense weight exists only during each layer's forward.  *mapping_file*
    describes a model type that is neither built in nor recorded in the checkpoint (`awq2trt.architectures`).
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else open_checkpoint(checkpoint, allow_pickle=allow_pickle)
    architecture = check_model_type(ckpt, mapping_file)
    check_model_config(ckpt)
    torch_dtype = resolve_dtype(dtype)
    model = empty_model(ckpt, torch_dtype, architecture)
    _install_quantized(model, ckpt, torch_dtype, progress)
    _install_dense(model, ckpt, torch_dtype)
    if cache_dense:
        for module in model.modules():
            if isinstance(module, AwqLinear):
                module.cache_dense_weight()
    model.eval()
    model.requires_grad_(False)
    return model
