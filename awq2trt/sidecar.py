"""``awq2trt.json``: the typed description of an exported folder, written by export and read by every runtime.

One dataclass, ``Sidecar``, with a format version.  Export builds it from the checkpoint, the traced layout and
the target; runtimes (ONNX Runtime, TensorRT, Triton) read it back with ``Sidecar.read`` and get either a
checked object or one clear error naming the file and the key.  This module imports only the standard library,
so a serving environment can read a sidecar without torch, onnx or the compiler.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from awq2trt.errors import Awq2TrtError
from awq2trt.ir import io_names
from awq2trt.json_fields import JsonFields

SIDECAR_FILE = "awq2trt.json"
EXPORTED_FOLDER = "exported folder"  # how errors name where the sidecar's files must stay
SIDECAR_FORMAT = "awq2trt-onnx"
FORMAT_VERSION = 2  # 2: typed sidecar; target options under "target_options"
FLOAT_DTYPES = ("float32", "float16")
TENSOR_DTYPES = (*FLOAT_DTYPES, "int64", "int32")
PADDING_SIDES = ("left", "right")
MAX_LAYERS = 4096  # far beyond any model; bounds what a tampered file can make a runtime allocate
MAX_CONTEXT = 1 << 24


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: element type and symbolic or fixed dims."""

    dtype: str
    shape: tuple[str | int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class KvCacheSpec:
    """How the runtime keeps the cache: names of past/present, and whether past and present are one buffer.

    ``shared_buffer`` true: attention appends the new keys in place into a max-length buffer bound as both
    past and present (rows right-padded); false: present = Concat(past, new) (rows left-padded).
    """

    shared_buffer: bool
    past: str = io_names.PAST_TEMPLATE
    present: str = io_names.PRESENT_TEMPLATE

    @property
    def padding(self) -> str:
        return "right" if self.shared_buffer else "left"

    def to_json(self) -> dict[str, Any]:
        return {
            "past": self.past,
            "present": self.present,
            "shared_buffer": self.shared_buffer,
            "padding": self.padding,
        }


@dataclass(frozen=True)
class KernelsSpec:
    """A compiled custom-op library the graph needs (``--target ort-kernels``): a runtime checks for it before
    it creates a session, so a missing library is one clear error rather than a slow fallback or a crash."""

    library: str  # the library's base name: libawq2trt_ort (.so on Linux)
    abi_version: int  # what the library's awq2trt_ort_abi_version() must return

    def to_json(self) -> dict[str, Any]:
        return {"library": self.library, "abi_version": self.abi_version}


# The one kernel library this awq2trt knows (plugins/onnxruntime): what ort-kernels exports record and what
# runtimes check a library against before ONNX Runtime loads it.  Bump the ABI with the library's.
# 2: Int4MatMul gained the epilogue attribute (fuse_silu_mul).
ORT_KERNELS = KernelsSpec(library="libawq2trt_ort", abi_version=3)


@dataclass(frozen=True)
class QuantizationInfo:
    bits: int
    group_sizes: tuple[int, ...]
    zero_point: bool | None
    source_format: str
    int4_nodes: int


@dataclass(frozen=True)
class Sidecar:
    """Everything a runtime needs to drive an exported graph without reading the checkpoint again."""

    target: str
    dtype: str  # activations and KV cache: float32 or float16
    model_type: str
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    vocab_size: int
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    kv_cache: KvCacheSpec
    quantization: QuantizationInfo
    model: str = "model.onnx"
    external_data: str | None = "model.onnx.data"
    max_position_embeddings: int | None = None
    rope_theta: float | None = None
    sliding_window: int | None = None
    sliding_layers: tuple[int, ...] = ()
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None
    passes: Mapping[str, int] = field(default_factory=dict)  # rewrites per pass, in running order
    pass_nodes: Mapping[str, int] = field(default_factory=dict)  # nodes before the passes ("input"), after each
    target_options: Mapping[str, Any] = field(default_factory=dict)  # what the target was exported with
    kernels: KernelsSpec | None = None  # a custom-op library ONNX Runtime must load for this graph
    format_version: int = FORMAT_VERSION

    # -- names ------------------------------------------------------------------------------------------------

    def past_names(self) -> list[str]:
        return io_names.past_names(self.num_layers, self.kv_cache.past)

    def present_names(self) -> list[str]:
        return io_names.present_names(self.num_layers, self.kv_cache.present)

    @property
    def keeps_logits(self) -> bool:
        """Whether the graph takes ``num_logits_to_keep`` (prefill can compute the last position's head only)."""
        return io_names.LOGITS_TO_KEEP in self.inputs

    # -- JSON -------------------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SIDECAR_FORMAT,
            "format_version": self.format_version,
            "target": self.target,
            "model": self.model,
            "external_data": self.external_data,
            "dtype": self.dtype,
            "model_type": self.model_type,
            "num_layers": self.num_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_size": self.hidden_size,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "rope_theta": self.rope_theta,
            "sliding_window": self.sliding_window,
            "sliding_layers": list(self.sliding_layers),
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_ids),
            "pad_token_id": self.pad_token_id,
            "inputs": {name: spec.to_json() for name, spec in self.inputs.items()},
            "outputs": {name: spec.to_json() for name, spec in self.outputs.items()},
            "kv_cache": self.kv_cache.to_json(),
            "quantization": {
                **dataclasses.asdict(self.quantization),
                "group_sizes": list(self.quantization.group_sizes),
            },
            "passes": dict(self.passes),
            "pass_nodes": dict(self.pass_nodes),
            "target_options": dict(self.target_options),
            "kernels": self.kernels.to_json() if self.kernels else None,
        }

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / SIDECAR_FILE
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, folder: str | Path) -> Sidecar:
        """Read and check ``FOLDER/awq2trt.json``: one ``Awq2TrtError`` naming the file and key if it is wrong."""
        path = Path(folder) / SIDECAR_FILE
        if not path.is_file():
            raise Awq2TrtError(
                path, expected="the sidecar `awq2trt export` writes beside model.onnx", got="no such file"
            )
        try:
            text = path.read_text()
            data = json.loads(text)
        # ValueError besides JSONDecodeError: json refuses integers of more than 4300 digits with a plain one.
        except (OSError, ValueError, RecursionError) as error:
            raise Awq2TrtError(path, expected="readable JSON", got=str(error)[:200] or type(error).__name__) from None
        return cls.from_json(data, path)

    @classmethod
    def from_json(cls, data: Any, path: str | Path = SIDECAR_FILE) -> Sidecar:
        reader = _Reader(data, str(path))
        fmt = reader.get("format", str)
        if fmt != SIDECAR_FORMAT:
            raise Awq2TrtError(path, expected=f'"format": "{SIDECAR_FORMAT}"', got=fmt)
        version = reader.get("format_version", int)
        if version != FORMAT_VERSION:
            raise Awq2TrtError(
                path,
                expected=f"format_version {FORMAT_VERSION} (export the checkpoint again with this awq2trt)",
                got=version,
            )
        num_layers = reader.count("num_layers", MAX_LAYERS)
        sidecar = cls(
            target=reader.get("target", str),
            dtype=reader.choice("dtype", FLOAT_DTYPES),
            model_type=reader.get("model_type", str),
            num_layers=num_layers,
            num_attention_heads=reader.count("num_attention_heads", 1 << 16),
            num_kv_heads=reader.count("num_kv_heads", 1 << 16),
            head_dim=reader.count("head_dim", 1 << 16),
            hidden_size=reader.count("hidden_size", 1 << 24),
            vocab_size=reader.count("vocab_size", 1 << 24),
            inputs=reader.tensors("inputs"),
            outputs=reader.tensors("outputs"),
            kv_cache=reader.kv_cache(),
            quantization=reader.quantization(),
            model=reader.file_name("model", EXPORTED_FOLDER),
            external_data=reader.file_name("external_data", EXPORTED_FOLDER, optional=True),
            max_position_embeddings=reader.count("max_position_embeddings", MAX_CONTEXT, optional=True),
            rope_theta=reader.number("rope_theta", optional=True),
            sliding_window=reader.count("sliding_window", MAX_CONTEXT, optional=True),
            sliding_layers=tuple(reader.int_list("sliding_layers", below=num_layers)),
            bos_token_id=reader.token("bos_token_id"),
            eos_token_ids=tuple(reader.int_list("eos_token_id")),
            pad_token_id=reader.token("pad_token_id"),
            passes=reader.int_map("passes"),
            pass_nodes=reader.int_map("pass_nodes"),
            target_options=reader.get("target_options", dict, optional=True) or {},
            kernels=reader.kernels(),
            format_version=version,
        )
        _check_names(sidecar, str(path))
        return sidecar


def _check_names(sidecar: Sidecar, where: str) -> None:
    """The declared IO must be exactly what this layer count calls for (runtimes bind by these names)."""
    expected_inputs = {*io_names.TOKEN_INPUTS, *sidecar.past_names()}
    declared = set(sidecar.inputs) - {io_names.LOGITS_TO_KEEP}
    expected_outputs = {io_names.LOGITS, *sidecar.present_names()}
    for side, names, expected in (
        ("inputs", declared, expected_inputs),
        ("outputs", set(sidecar.outputs), expected_outputs),
    ):
        if names != expected:
            raise Awq2TrtError(
                where, expected=f"{side} for num_layers = {sidecar.num_layers}", got=name_difference(names, expected)
            )


def name_difference(declared: set[str], actual: set[str]) -> str:
    """``unknown a, b; missing c``: what a declared name set has too much and too little."""
    parts = []
    if extra := sorted(declared - actual):
        parts.append("unknown " + ", ".join(extra[:8]) + (" ..." if len(extra) > 8 else ""))
    if missing := sorted(actual - declared):
        parts.append("missing " + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    return "; ".join(parts)


class _Reader(JsonFields):
    """The sidecar's fields: every wrong value is one error naming the file and the key."""

    def count(self, key: str, limit: int, *, optional: bool = False) -> Any:
        value = self.get(key, int, optional=optional)
        if value is not None and not 1 <= value <= limit:
            raise self.fail(key, f"an integer in [1, {limit}]", value)
        return value

    def number(self, key: str, *, optional: bool = False) -> float | None:
        value = self.data.get(key)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, "a finite number", value)
        return float(value)

    def token(self, key: str) -> int | None:
        value = self.get(key, int, optional=True)
        if value is not None and value < 0:
            raise self.fail(key, "a token id >= 0", value)
        return value

    def int_list(self, key: str, *, below: int | None = None) -> list[int]:
        value = self.get(key, list, optional=True) or []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or item < 0 or (below is not None and item >= below):
                bound = f" below {below}" if below is not None else ""
                raise self.fail(key, f"a list of integers >= 0{bound}", item)
        return list(value)

    def int_map(self, key: str) -> dict[str, int]:
        value = self.get(key, dict, optional=True) or {}
        for name, count in value.items():
            if isinstance(count, bool) or not isinstance(count, int):
                raise self.fail(f"{key}.{name}", "an integer", count)
        return dict(value)

    def tensors(self, key: str) -> dict[str, TensorSpec]:
        table = self.get(key, dict)
        out = {}
        for name, spec in table.items():
            where = f"{key}.{name}"
            if not isinstance(spec, dict):
                raise self.fail(where, "an object with dtype and shape", spec)
            dtype, shape = spec.get("dtype"), spec.get("shape")
            if dtype not in TENSOR_DTYPES:
                raise self.fail(f"{where}.dtype", " or ".join(TENSOR_DTYPES), dtype)
            if not isinstance(shape, list) or not all(
                isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in shape
            ):
                raise self.fail(f"{where}.shape", "a list of dim names or sizes", shape)
            out[name] = TensorSpec(dtype, tuple(shape))
        return out

    def kv_cache(self) -> KvCacheSpec:
        raw = self.get("kv_cache", dict)
        sub = _Reader(raw, f"{self.where}: kv_cache")
        shared = sub.get("shared_buffer", bool)
        past = sub.get("past", str)
        present = sub.get("present", str)
        for key, template in (("past", past), ("present", present)):
            if "{layer}" not in template or "{kind}" not in template:
                raise self.fail(f"kv_cache.{key}", "a name with {layer} and {kind}", template)
            try:
                template.format(layer=0, kind="key")
            except (KeyError, IndexError, ValueError):
                raise self.fail(f"kv_cache.{key}", "a name with {layer} and {kind} only", template) from None
        padding = raw.get("padding", "right" if shared else "left")
        if padding != ("right" if shared else "left"):
            raise self.fail("kv_cache.padding", "right with a shared buffer, left without", padding)
        return KvCacheSpec(shared_buffer=shared, past=past, present=present)

    def kernels(self) -> KernelsSpec | None:
        """Optional (absent in exports that need no library, and in those written before the field existed)."""
        raw = self.get("kernels", dict, optional=True)
        if raw is None:
            return None
        sub = _Reader(raw, f"{self.where}: kernels")
        library = sub.get("library", str)
        if not library or "/" in library or library.startswith("."):
            raise self.fail("kernels.library", "a library base name such as libawq2trt_ort", library)
        return KernelsSpec(library=library, abi_version=sub.get("abi_version", int))

    def quantization(self) -> QuantizationInfo:
        raw = self.get("quantization", dict)
        sub = _Reader(raw, f"{self.where}: quantization")
        zero_point = raw.get("zero_point")
        if zero_point is not None and not isinstance(zero_point, bool):
            raise self.fail("quantization.zero_point", "true, false or null", zero_point)
        return QuantizationInfo(
            bits=sub.count("bits", 8),
            group_sizes=tuple(sub.int_list("group_sizes")),
            zero_point=zero_point,
            source_format=sub.get("source_format", str),
            int4_nodes=sub.get("int4_nodes", int),
        )
