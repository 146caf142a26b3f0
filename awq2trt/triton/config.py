"""``config.pbtxt`` for each repository kind, built as a ``ModelConfig`` message and printed by protobuf itself.

Building the message (rather than formatting text) means a field name or enum value Triton does not know fails
here, when the repository is written, instead of when a server loads it; ``parse_config`` reads a written file
back with the same schema (the tests do so for every config we write).

The graph kinds (``onnxruntime``, ``tensorrt``) declare ``max_batch_size: 0`` and the full dims of every
tensor, batch included: ``num_logits_to_keep`` has no batch dimension, and requests whose KV caches differ in
length cannot be stacked by Triton's batcher anyway, so the caller drives the batch dimension itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import text_format

from awq2trt.errors import Awq2TrtError
from awq2trt.sidecar import Sidecar
from awq2trt.triton import DEVICES
from awq2trt.triton.schema import model_config_pb2

# The sidecar's element types (awq2trt.sidecar.TENSOR_DTYPES) as Triton's DataType names.
TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32"}
_INSTANCE_KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}


@dataclass(frozen=True)
class TextTensor:
    """One input or output of the generate model: what a client sends or receives, by name."""

    name: str
    data_type: str
    dims: tuple[int, ...] = (1,)
    optional: bool = False


# Triton's generate extension (/v2/models/NAME/generate) maps a JSON request's keys onto these inputs by name.
GENERATE_INPUTS = (
    TextTensor("text_input", "TYPE_STRING"),
    TextTensor("max_tokens", "TYPE_INT32", optional=True),
    TextTensor("temperature", "TYPE_FP32", optional=True),
    TextTensor("top_k", "TYPE_INT32", optional=True),
    TextTensor("top_p", "TYPE_FP32", optional=True),
    TextTensor("seed", "TYPE_INT64", optional=True),
    TextTensor("stop", "TYPE_STRING", dims=(-1,), optional=True),  # any number of stop strings
)
GENERATE_OUTPUTS = (TextTensor("text_output", "TYPE_STRING"),)


def new_config(name: str, backend: str) -> Any:
    config = model_config_pb2().ModelConfig()
    config.name = name
    config.backend = backend
    config.max_batch_size = 0
    return config


def add_instances(config: Any, device: str, count: int) -> None:
    if device not in _INSTANCE_KINDS:
        raise Awq2TrtError("--device", expected=" or ".join(DEVICES), got=device)
    group = config.instance_group.add()
    group.kind = model_config_pb2().ModelInstanceGroup.Kind.Value(_INSTANCE_KINDS[device])
    group.count = count


def fixed_dims(sidecar: Sidecar) -> dict[str, int]:
    """The sidecar's symbolic dims that are model constants (KV heads, head size, vocabulary): Triton then
    checks them on every request; batch and sequence lengths stay variable."""
    return {"num_kv_heads": sidecar.num_kv_heads, "head_dim": sidecar.head_dim, "vocab": sidecar.vocab_size}


def add_graph_tensors(config: Any, sidecar: Sidecar) -> None:
    """The sidecar's IO, in graph order; a symbolic dim is its model constant where it is one, else -1."""
    data_type = model_config_pb2().DataType
    fixed = fixed_dims(sidecar)
    inputs, outputs = sidecar.inputs, sidecar.outputs
    for field, specs in ((config.input, inputs), (config.output, outputs)):
        for name, spec in specs.items():
            if spec.dtype not in TRITON_TYPES:
                raise Awq2TrtError(f"{name}", expected=f"one of {', '.join(TRITON_TYPES)}", got=spec.dtype)
            tensor = field.add()
            tensor.name = name
            tensor.data_type = data_type.Value(TRITON_TYPES[spec.dtype])
            tensor.dims.extend(dim if isinstance(dim, int) else fixed.get(dim, -1) for dim in spec.shape)


def onnxruntime_config(name: str, sidecar: Sidecar, *, device: str, instances: int) -> Any:
    config = new_config(name, "onnxruntime")
    config.default_model_filename = sidecar.model
    add_graph_tensors(config, sidecar)
    add_instances(config, device, instances)
    return config


def tensorrt_config(name: str, sidecar: Sidecar, *, engine: str, instances: int) -> Any:
    """Triton's tensorrt backend runs engines on GPUs only: the instance group is always KIND_GPU."""
    config = new_config(name, "tensorrt")
    config.default_model_filename = engine
    add_graph_tensors(config, sidecar)
    add_instances(config, "gpu", instances)
    return config


def generate_config(name: str, *, decoupled: bool, device: str, instances: int, parameters: Mapping[str, str]) -> Any:
    """The Python-backend text model: text in, text out; *decoupled* streams one response per piece of text."""
    config = new_config(name, "python")
    data_type = model_config_pb2().DataType
    for field, tensors in ((config.input, GENERATE_INPUTS), (config.output, GENERATE_OUTPUTS)):
        for spec in tensors:
            tensor = field.add()
            tensor.name = spec.name
            tensor.data_type = data_type.Value(spec.data_type)
            tensor.dims.extend(spec.dims)
            if spec.optional:
                tensor.optional = True
    config.model_transaction_policy.decoupled = decoupled
    add_instances(config, device, instances)
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    return config


def to_text(config: Any) -> str:
    return str(text_format.MessageToString(config))


def parse_config(text: str) -> Any:
    """A ``config.pbtxt``'s text as a ``ModelConfig``; an unknown field or enum value is one error."""
    try:
        return text_format.Parse(text, model_config_pb2().ModelConfig())
    except text_format.ParseError as error:
        raise Awq2TrtError("config.pbtxt", detail=f"not a Triton model config: {error}") from None
