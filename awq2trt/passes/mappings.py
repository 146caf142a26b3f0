"""Which quantized projections fuse, per architecture: read from the one table in `awq2trt.architectures`.

A fusion mapping names, for one decoder layer, the Linears that read the same activation and so can become
one ``Int4MatMul`` (the group's key names the fused module): q/k/v -> ``qkv_proj``, gate/up -> ``gate_up_proj``.

Where a mapping comes from, first match wins:

1. a user mapping file (``--fuse-mapping FILE``, the format of `awq2trt.architectures`; the older forms
   ``{"qkv_proj": [...], "gate_up_proj": [...]}`` and transformers' ``{"attention": [...], "mlp": [...]}``,
   optionally keyed by model type, are entries of it);
2. ``quantization_config.modules_to_fuse`` in the checkpoint's config.json (transformers' keys);
3. the architecture recorded in config.json by ``quantize --mapping``, or the built-in one, by ``model_type``.

An unknown model type with none of these gets no int4 fusions (a warning says how to supply a mapping);
the graph stays correct, only unfused.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from awq2trt.architectures import (
    ARCHITECTURES,
    BUILT_IN,
    GATE_UP,
    QKV,
    compiled_types,
    find_architecture,
    parse_entry,
)
from awq2trt.architectures import load_mapping_file as load_architectures
from awq2trt.errors import Awq2TrtError

__all__ = ["BUILTIN", "GATE_UP", "QKV", "FusionMapping", "load_mapping_file", "resolve_mapping"]


@dataclass(frozen=True)
class FusionMapping:
    """Fused module name -> the leaf names of the Linears it replaces, in output order."""

    groups: Mapping[str, tuple[str, ...]]
    source: str  # where it came from, for messages

    def members(self, group: str) -> tuple[str, ...]:
        return self.groups.get(group, ())


# The built-in fusion groups, by model type (a view of the architecture table).
BUILTIN: dict[str, dict[str, tuple[str, ...]]] = {name: ARCHITECTURES[name].fusion_groups for name in compiled_types()}


def load_mapping_file(path: str | Path, model_type: str | None) -> FusionMapping:
    """The fusion groups a user mapping file gives *model_type* (the file must describe it)."""
    table = load_architectures(path, model_type)
    if model_type not in table:
        raise Awq2TrtError(path, expected=f"an entry for model type {model_type!r}", got=sorted(table))
    return FusionMapping(table[model_type].fusion_groups, source=str(path))


def resolve_mapping(config: Mapping[str, Any] | None, mapping_file: str | Path | None = None) -> FusionMapping | None:
    """The fusion mapping for a checkpoint's config.json (see the module doc for the order)."""
    config = config or {}
    model_type = config.get("model_type")
    if mapping_file is not None:
        return load_mapping_file(mapping_file, model_type)
    quant = config.get("quantization_config") or {}
    modules_to_fuse = quant.get("modules_to_fuse") if isinstance(quant, Mapping) else None
    if modules_to_fuse:
        where = "quantization_config.modules_to_fuse"
        described = parse_entry(modules_to_fuse, where, model_type=model_type or "model")
        return FusionMapping(next(iter(described.values())).fusion_groups, source="modules_to_fuse")
    arch = find_architecture(config, "config.json")
    if arch is not None:
        source = f"built-in {model_type}" if arch.source == BUILT_IN else arch.source
        return FusionMapping(arch.fusion_groups, source=source)
    warnings.warn(
        f"no fusion mapping for model type {model_type!r} (built in: {', '.join(sorted(BUILTIN))}); "
        "q/k/v and gate/up stay unfused (pass a mapping file to fuse them)",
        stacklevel=2,
    )
    return None
