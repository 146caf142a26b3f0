"""Which quantized projections fuse, per architecture: data, not code.

A mapping names, for one decoder layer, the Linears that read the same activation and so can become one
``Int4MatMul`` (the group's key names the fused module).  The built-in entries follow the shape of
transformers' AWQ fused mappings (``attention`` = [q, k, v, o], ``mlp`` = [gate, up, down]); only the
projections that share an input fuse: the first three of ``attention`` and the first two of ``mlp``.

Where a mapping comes from, first match wins:

1. a user mapping file (``--fuse-mapping FILE``): JSON, either ``{"qkv_proj": [...], "gate_up_proj": [...]}``
   (our form) or transformers' ``{"attention": [...], "mlp": [...]}``, optionally keyed by model type;
2. ``quantization_config.modules_to_fuse`` in the checkpoint's config.json (transformers' keys);
3. the built-in table below, by ``model_type``.

An unknown model type with none of these gets no int4 fusions (a warning says how to supply a mapping);
the graph stays correct, only unfused.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from awq2trt.errors import Awq2TrtError

QKV = "qkv_proj"
GATE_UP = "gate_up_proj"


@dataclass(frozen=True)
class FusionMapping:
    """Fused module name -> the leaf names of the Linears it replaces, in output order."""

    groups: Mapping[str, tuple[str, ...]]
    source: str  # where it came from, for messages

    def members(self, group: str) -> tuple[str, ...]:
        return self.groups.get(group, ())


_LLAMA = {QKV: ("q_proj", "k_proj", "v_proj"), GATE_UP: ("gate_proj", "up_proj")}
BUILTIN: dict[str, dict[str, tuple[str, ...]]] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,  # same module names; q/k/v carry biases, which fuse too
}


def _from_transformers_keys(entry: Mapping[str, Any], where: str) -> dict[str, tuple[str, ...]]:
    """transformers' ``modules_to_fuse``: attention [q, k, v, o], mlp [gate, up, down]."""
    groups: dict[str, tuple[str, ...]] = {}
    attention, mlp = entry.get("attention"), entry.get("mlp")
    if attention is not None:
        groups[QKV] = tuple(_names(attention, f"{where} attention", minimum=3)[:3])
    if mlp is not None:
        groups[GATE_UP] = tuple(_names(mlp, f"{where} mlp", minimum=2)[:2])
    return groups


def _names(value: object, where: str, minimum: int = 2) -> list[str]:
    if (
        not isinstance(value, list)
        or len(value) < minimum
        or not all(isinstance(v, str) and v and "." not in v for v in value)
    ):
        raise Awq2TrtError(where, expected=f"a list of at least {minimum} module leaf names", got=value)
    if len(set(value)) != len(value):
        raise Awq2TrtError(where, expected="distinct module names", got=value)
    return list(value)


def _parse_entry(entry: object, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(entry, Mapping):
        raise Awq2TrtError(where, expected="a JSON object", got=type(entry).__name__)
    if "attention" in entry or "mlp" in entry:
        return _from_transformers_keys(entry, where)
    unknown = sorted(set(entry) - {QKV, GATE_UP})
    if unknown:
        raise Awq2TrtError(where, expected=f"groups {QKV!r}, {GATE_UP!r} (or 'attention', 'mlp')", got=unknown)
    groups = {key: tuple(_names(value, f"{where} {key}")) for key, value in entry.items()}
    if not groups:
        raise Awq2TrtError(where, expected=f"groups such as {QKV!r} or 'attention'", got="an empty object")
    return groups


def load_mapping_file(path: str | Path, model_type: str | None) -> FusionMapping:
    """Read a user mapping file; a file keyed by model type must hold *model_type*."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise Awq2TrtError(path, expected="a readable JSON fusion mapping", got=type(exc).__name__) from exc
    except json.JSONDecodeError as exc:
        raise Awq2TrtError(path, expected="valid JSON", got=f"{exc.msg} at line {exc.lineno}") from exc
    if isinstance(data, Mapping) and data and all(isinstance(v, Mapping) for v in data.values()):
        if model_type not in data:  # keyed by model type
            raise Awq2TrtError(path, expected=f"an entry for model type {model_type!r}", got=sorted(data))
        data = data[model_type]
    return FusionMapping(_parse_entry(data, str(path)), source=str(path))


def resolve_mapping(config: Mapping[str, Any] | None, mapping_file: str | Path | None = None) -> FusionMapping | None:
    """The fusion mapping for a checkpoint's config.json (see the module doc for the order)."""
    config = config or {}
    model_type = config.get("model_type")
    if mapping_file is not None:
        return load_mapping_file(mapping_file, model_type)
    quant = config.get("quantization_config") or {}
    modules_to_fuse = quant.get("modules_to_fuse") if isinstance(quant, Mapping) else None
    if modules_to_fuse:
        return FusionMapping(
            _parse_entry(modules_to_fuse, "quantization_config.modules_to_fuse"), source="modules_to_fuse"
        )
    if model_type in BUILTIN:
        return FusionMapping(BUILTIN[model_type], source=f"built-in {model_type}")
    warnings.warn(
        f"no fusion mapping for model type {model_type!r} (built in: {', '.join(sorted(BUILTIN))}); "
        "q/k/v and gate/up stay unfused (pass a mapping file to fuse them)",
        stacklevel=2,
    )
    return None
