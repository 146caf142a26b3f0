"""The ``quantization_config`` of a compressed-tensors (llm-compressor) checkpoint.

We accept what a weight-only int4 AWQ/GPTQ-style export looks like: format ``pack-quantized``, status
``compressed``, 4-bit integer weights with group (or channel) strategy, no activation quantization, no
act-order.  Anything else is refused with the field that is unsupported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from awq2trt.errors import Awq2TrtError

SUPPORTED_FORMAT = "pack-quantized"


@dataclass(frozen=True)
class WeightScheme:
    """How the Linears matched by *targets* are quantized."""

    targets: tuple[str, ...]
    group_size: int | None  # None: one group per row ("channel" strategy)
    symmetric: bool


def _name_matches(pattern: str, module_name: str, class_name: str) -> bool:
    """compressed-tensors target/ignore semantics: ``re:`` regex on the name, else a class or exact name."""
    if pattern.startswith("re:"):
        return re.match(pattern[3:], module_name) is not None
    return pattern in (class_name, module_name)


@dataclass(frozen=True)
class CompressedTensorsConfig:
    schemes: tuple[WeightScheme, ...]
    ignore: tuple[str, ...]
    format: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompressedTensorsConfig:
        where = "quantization_config"
        if not isinstance(data, dict):
            raise Awq2TrtError(where, expected="a JSON object", got=type(data).__name__)
        status = data.get("quantization_status", "compressed")
        if status != "compressed":
            raise Awq2TrtError(
                f"{where}.quantization_status", expected="compressed (packed int4 weights on disk)", got=status
            )
        top_format = data.get("format")
        groups = data.get("config_groups")
        if not isinstance(groups, dict) or not groups:
            raise Awq2TrtError(f"{where}.config_groups", expected="at least one quantization group", got=groups)
        schemes = []
        for group_name, group in groups.items():
            gw = f"{where}.config_groups.{group_name}"
            if not isinstance(group, dict):
                raise Awq2TrtError(gw, expected="an object with targets and weights", got=group)
            fmt = group.get("format") or top_format
            if fmt != SUPPORTED_FORMAT:
                raise Awq2TrtError(f"{gw}.format", expected=SUPPORTED_FORMAT, got=fmt)
            if group.get("input_activations") or group.get("output_activations"):
                raise Awq2TrtError(
                    f"{gw}.input_activations", expected="null (weight-only quantization)", got="activation quantization"
                )
            weights = group.get("weights") or {}
            if not isinstance(weights, dict):
                raise Awq2TrtError(f"{gw}.weights", expected="an object", got=weights)
            if weights.get("num_bits") != 4:
                raise Awq2TrtError(f"{gw}.weights.num_bits", expected=4, got=weights.get("num_bits"))
            if weights.get("type", "int") != "int":
                raise Awq2TrtError(f"{gw}.weights.type", expected="int", got=weights.get("type"))
            if weights.get("actorder") not in (None, False):
                raise Awq2TrtError(
                    f"{gw}.weights.actorder",
                    expected="null (act-order / g_idx is not supported)",
                    got=weights["actorder"],
                )
            if weights.get("dynamic", False):
                raise Awq2TrtError(f"{gw}.weights.dynamic", expected="false", got=weights["dynamic"])
            strategy = weights.get("strategy")
            if strategy == "group":
                group_size = weights.get("group_size")
                if not isinstance(group_size, int) or group_size <= 0:
                    raise Awq2TrtError(f"{gw}.weights.group_size", expected="a positive integer", got=group_size)
            elif strategy == "channel":
                group_size = None
            else:
                raise Awq2TrtError(f"{gw}.weights.strategy", expected="group or channel", got=strategy)
            targets = group.get("targets") or []
            if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
                raise Awq2TrtError(f"{gw}.targets", expected="a non-empty list of names", got=targets)
            schemes.append(WeightScheme(tuple(targets), group_size, bool(weights.get("symmetric", True))))
        ignore = data.get("ignore") or []
        if not isinstance(ignore, list) or not all(isinstance(i, str) for i in ignore):
            raise Awq2TrtError(f"{where}.ignore", expected="a list of module names", got=ignore)
        return cls(tuple(schemes), tuple(ignore), SUPPORTED_FORMAT)

    def scheme_for(self, module_name: str, class_name: str = "Linear") -> WeightScheme | None:
        """The scheme that quantizes *module_name*, or None when it is ignored or untargeted."""
        if any(_name_matches(p, module_name, class_name) for p in self.ignore):
            return None
        for scheme in self.schemes:
            if any(_name_matches(t, module_name, class_name) for t in scheme.targets):
                return scheme
        return None
