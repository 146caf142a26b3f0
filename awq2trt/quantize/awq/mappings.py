"""Which Linears share a scale, and what op the scale is folded into: a table per architecture.

A *scaling group* is a set of Linears that read the same input, the op that produces that input
(``prev_op``: a norm, whose weight is divided by the scale, or a Linear, whose output rows are) and the module
whose output measures the search loss (``inspect``; none means the group's Linears themselves).  Names are
relative to one decoder block.  A group whose ``prev_op`` is a Linear applies only when its output width equals
the group's input width (v_proj -> o_proj is skipped under grouped-query attention, where they differ).

New model types come as data: a JSON file (``--mapping FILE``) or a Python `ArchitectureMapping`::

    {"model_type": "my_llama", "blocks": "model.layers",
     "groups": [{"prev_op": "input_layernorm", "linears": ["self_attn.q_proj", "self_attn.k_proj",
                 "self_attn.v_proj"], "inspect": "self_attn"}, ...],
     "skip_clip": ["self_attn.q_proj", "self_attn.k_proj"]}

``model_type`` may also be a list of names sharing one table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from awq2trt.errors import Awq2TrtError


@dataclass(frozen=True)
class ScalingGroup:
    prev_op: str
    linears: tuple[str, ...]
    inspect: str | None = None


@dataclass(frozen=True)
class ArchitectureMapping:
    groups: tuple[ScalingGroup, ...]
    blocks: str = "model.layers"
    # Clipping q/k changes attention scores multiplicatively; AWQ leaves them unclipped.
    skip_clip: tuple[str, ...] = field(default=())


LLAMA_LIKE = ArchitectureMapping(
    groups=(
        ScalingGroup(
            "input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), inspect="self_attn"
        ),
        ScalingGroup("self_attn.v_proj", ("self_attn.o_proj",)),
        ScalingGroup("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj"), inspect="mlp"),
        ScalingGroup("mlp.up_proj", ("mlp.down_proj",)),
    ),
    skip_clip=("self_attn.q_proj", "self_attn.k_proj"),
)

BUILTIN_MAPPINGS: dict[str, ArchitectureMapping] = {"llama": LLAMA_LIKE, "mistral": LLAMA_LIKE, "qwen2": LLAMA_LIKE}

MAPPING_HELP = (
    "pass --mapping FILE (JSON: model_type, blocks, groups of prev_op/linears/inspect, skip_clip) "
    "or mappings={model_type: ArchitectureMapping(...)} in Python"
)


def _strings(where: str, value: Any, *, allow_empty: bool = False) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not all(isinstance(v, str) and v for v in value)
        or (not value and not allow_empty)
    ):
        raise Awq2TrtError(where, expected="a list of module names", got=repr(value))
    return tuple(value)


def _parse_mapping(where: str, data: Any) -> tuple[list[str], ArchitectureMapping]:
    if not isinstance(data, dict):
        raise Awq2TrtError(where, expected="a JSON object", got=type(data).__name__)
    unknown = set(data) - {"model_type", "blocks", "groups", "skip_clip"}
    if unknown:
        raise Awq2TrtError(where, expected="keys model_type, blocks, groups, skip_clip", got=sorted(unknown))
    model_types = data.get("model_type")
    if isinstance(model_types, str):
        model_types = [model_types]
    names = list(_strings(f"{where}: model_type", model_types))
    blocks = data.get("blocks", "model.layers")
    if not isinstance(blocks, str) or not blocks:
        raise Awq2TrtError(f"{where}: blocks", expected="the dotted name of the decoder block list", got=repr(blocks))
    raw_groups = data.get("groups")
    if not isinstance(raw_groups, list) or not raw_groups:
        raise Awq2TrtError(f"{where}: groups", expected="a non-empty list of scaling groups", got=repr(raw_groups))
    groups = []
    for i, raw in enumerate(raw_groups):
        here = f"{where}: groups[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("prev_op"), str) or not raw["prev_op"]:
            raise Awq2TrtError(here, expected='an object with "prev_op" and "linears"', got=repr(raw))
        extra = set(raw) - {"prev_op", "linears", "inspect"}
        if extra:
            raise Awq2TrtError(here, expected="keys prev_op, linears, inspect", got=sorted(extra))
        inspect = raw.get("inspect")
        if inspect is not None and (not isinstance(inspect, str) or not inspect):
            raise Awq2TrtError(f"{here}: inspect", expected="a module name or null", got=repr(inspect))
        groups.append(ScalingGroup(raw["prev_op"], _strings(f"{here}: linears", raw.get("linears")), inspect))
    skip_clip = _strings(f"{where}: skip_clip", data.get("skip_clip", []), allow_empty=True)
    return names, ArchitectureMapping(tuple(groups), blocks, skip_clip)


def load_mapping_file(path: str | Path) -> dict[str, ArchitectureMapping]:
    """{model_type: mapping} from a JSON file holding one mapping object or a list of them."""
    path = Path(path)
    if not path.is_file():
        raise Awq2TrtError(path, expected="a JSON mapping file (--mapping)", got="no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise Awq2TrtError(path, expected="a JSON mapping file", got=f"{type(exc).__name__}: {exc}") from exc
    entries = data if isinstance(data, list) else [data]
    table: dict[str, ArchitectureMapping] = {}
    for i, entry in enumerate(entries):
        names, mapping = _parse_mapping(f"{path}" + (f"[{i}]" if isinstance(data, list) else ""), entry)
        table.update(dict.fromkeys(names, mapping))
    return table


def resolve_mapping(
    model_type: str | None,
    *,
    extra: Mapping[str, ArchitectureMapping] | None = None,
    files: Iterable[str | Path] = (),
    where: str = "config.json",
) -> ArchitectureMapping:
    """The mapping for *model_type*: user-given ones (files, then *extra*) override the built-in table."""
    table = dict(BUILTIN_MAPPINGS)
    for file in files:
        table.update(load_mapping_file(file))
    table.update(extra or {})
    if model_type not in table:
        raise Awq2TrtError(
            where,
            expected="a model_type with an AWQ mapping (" + ", ".join(sorted(table)) + ")",
            got=repr(model_type),
            detail=MAPPING_HELP,
        )
    return table[model_type]
