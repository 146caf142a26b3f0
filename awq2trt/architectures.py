"""Every decoder architecture awq2trt knows, described once, and the one mapping file that adds a new one.

An `Architecture` names, for one model type, what every stage needs to know about it:

- the loader: which transformers classes build it (``transformers_model_type``) and its module names;
- RTN quantization: which Linears of a decoder block become int4 (``attention`` and ``mlp`` projections);
- AWQ: the scaling groups (a norm or Linear whose output feeds a group of Linears) and what is not clipped;
- the graph passes: which projections fuse (q/k/v -> ``qkv_proj``, gate/up -> ``gate_up_proj``);
- ``AwqConfig``: transformers' ``modules_to_fuse`` default for the type.

The fusion and scaling groups follow from the module names unless a description gives them explicitly.

A mapping file (``quantize --mapping FILE``, ``export --fuse-mapping FILE``, ``load_reference_model(...,
mapping_file=FILE)``) is JSON: one entry, a list of entries, or an object keyed by model type whose values are
entries.  Every key of an entry is optional; what is left out comes from the built-in description of the type,
or Llama's for a new type::

    {"model_type": "my_llama",                 # or a list of names; implied when keyed by model type
     "transformers_model_type": "llama",      # the transformers classes that build it (default: model_type)
     "blocks": "model.layers",
     "attention_module": "self_attn", "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
     "mlp_module": "mlp", "mlp": ["gate_proj", "up_proj", "down_proj"],
     "layernorm": ["input_layernorm", "post_attention_layernorm", "norm"],
     "qkv_proj": [...], "gate_up_proj": [...],          # fusion groups (leaf names), if not the derived ones
     "groups": [{"prev_op": "input_layernorm", "linears": ["self_attn.q_proj", ...], "inspect": "self_attn"}],
     "skip_clip": ["self_attn.q_proj", "self_attn.k_proj"]}   # AWQ, if not the derived ones

An entry without ``model_type`` applies to the checkpoint's own type (the older fusion-file form
``{"qkv_proj": [...]}`` or transformers' ``{"attention": [...], "mlp": [...]}``).  transformers' size keys
(``hidden_size``, ``num_attention_heads``, ``num_key_value_heads``, ``max_seq_len``) are accepted and ignored:
config.json states them.  Quantizing with a mapping file records the description in the written config.json
(``awq2trt_architecture``), so exporting and loading that checkpoint need no file.

Importable without torch: the passes and the quantizer's front door read it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from awq2trt.errors import Awq2TrtError

QKV = "qkv_proj"
GATE_UP = "gate_up_proj"
CONFIG_KEY = "awq2trt_architecture"  # where a user-described architecture travels inside config.json
BUILT_IN = "built-in"
MAPPING_HELP = (
    "describe it in a mapping file (--mapping FILE for quantize, which records it in the checkpoint; "
    "--fuse-mapping FILE for export; mapping_file= for load_reference_model)"
)


@dataclass(frozen=True)
class ScalingGroup:
    """Linears reading one input, the op producing it (the scale folds into it) and the module whose
    output measures the search loss (None: the Linears themselves).  Names are relative to a decoder block."""

    prev_op: str
    linears: tuple[str, ...]
    inspect: str | None = None


@dataclass(frozen=True)
class ArchitectureMapping:
    """AWQ's view of an architecture: its scaling groups, where the decoder blocks are, what is not clipped."""

    groups: tuple[ScalingGroup, ...]
    blocks: str = "model.layers"
    # Clipping q/k changes attention scores multiplicatively; AWQ leaves them unclipped.
    skip_clip: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Architecture:
    """One model type.  ``fusion``, ``scaling_groups`` and ``skip_clip`` are None when derived from the names."""

    model_type: str
    transformers_model_type: str
    attention_module: str = "self_attn"
    attention: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")  # q, k, v, o
    mlp_module: str = "mlp"
    mlp: tuple[str, ...] = ("gate_proj", "up_proj", "down_proj")  # gate, up, down
    layernorm: tuple[str, ...] = ("input_layernorm", "post_attention_layernorm", "norm")  # before attn, mlp; final
    blocks: str = "model.layers"
    fusion: Mapping[str, tuple[str, ...]] | None = None
    scaling_groups: tuple[ScalingGroup, ...] | None = None
    skip_clip: tuple[str, ...] | None = None
    rope_theta: float | None = None
    use_alibi: bool = False
    # False: described only for transformers' modules_to_fuse default; quantize, export and load refuse it.
    compiled: bool = True
    source: str = BUILT_IN

    def _in_attention(self, leaf: str) -> str:
        return f"{self.attention_module}.{leaf}"

    def _in_mlp(self, leaf: str) -> str:
        return f"{self.mlp_module}.{leaf}"

    @property
    def linears(self) -> tuple[str, ...]:
        """The Linears of one decoder block that become int4, relative to the block."""
        return (*map(self._in_attention, self.attention), *map(self._in_mlp, self.mlp))

    @property
    def fusion_groups(self) -> dict[str, tuple[str, ...]]:
        """Fused module name -> leaf names of the Linears that read the same input, in output order."""
        if self.fusion is not None:
            return dict(self.fusion)
        return {QKV: self.attention[:3], GATE_UP: self.mlp[:2]}

    @property
    def awq(self) -> ArchitectureMapping:
        q, k, v, o = map(self._in_attention, self.attention)
        gate, up, down = map(self._in_mlp, self.mlp)
        before_attention, before_mlp, _ = self.layernorm
        groups = self.scaling_groups or (
            ScalingGroup(before_attention, (q, k, v), inspect=self.attention_module),
            ScalingGroup(v, (o,)),  # skipped under grouped-query attention, where widths differ
            ScalingGroup(before_mlp, (gate, up), inspect=self.mlp_module),
            ScalingGroup(up, (down,)),
        )
        return ArchitectureMapping(groups, self.blocks, (q, k) if self.skip_clip is None else self.skip_clip)

    def modules_to_fuse(self) -> dict[str, Any]:
        """transformers' ``modules_to_fuse`` form of this architecture."""
        out: dict[str, Any] = {
            "attention": list(self.attention),
            "mlp": list(self.mlp),
            "layernorm": list(self.layernorm),
            "use_alibi": self.use_alibi,
        }
        if self.rope_theta is not None:
            out["rope_theta"] = self.rope_theta
        return out

    def to_entry(self) -> dict[str, Any]:
        """This description as a mapping-file entry (what quantize records in config.json)."""
        entry: dict[str, Any] = {
            "model_type": self.model_type,
            "transformers_model_type": self.transformers_model_type,
            "blocks": self.blocks,
            "attention_module": self.attention_module,
            "mlp_module": self.mlp_module,
            **self.modules_to_fuse(),
        }
        if self.fusion is not None:
            entry.update({name: list(leaves) for name, leaves in self.fusion.items()})
        if self.scaling_groups is not None:
            entry["groups"] = [
                {"prev_op": g.prev_op, "linears": list(g.linears), "inspect": g.inspect} for g in self.scaling_groups
            ]
        if self.skip_clip is not None:
            entry["skip_clip"] = list(self.skip_clip)
        return entry


def _llama_like(model_type: str, **changes: Any) -> Architecture:
    return Architecture(model_type, model_type, **changes)


ARCHITECTURES: dict[str, Architecture] = {
    arch.model_type: arch
    for arch in (
        _llama_like("llama"),
        _llama_like("mistral"),
        _llama_like("qwen2"),  # same module names; q/k/v carry biases, which fuse too
        # transformers' fused-mapping defaults for types awq2trt does not compile (multimodal; mixture of experts).
        _llama_like("llava", compiled=False),
        _llama_like("mixtral", mlp=("w1", "w3", "w2"), rope_theta=1_000_000.0, compiled=False),
    )
}


def compiled_types(table: Mapping[str, Architecture] = ARCHITECTURES) -> tuple[str, ...]:
    return tuple(sorted(name for name, arch in table.items() if arch.compiled))


# --- the mapping file ---------------------------------------------------------------------------------

_NAME_KEYS = ("transformers_model_type", "blocks", "attention_module", "mlp_module")
_LIST_KEYS = {"attention": 4, "mlp": 3, "layernorm": 3}  # transformers' modules_to_fuse lists and their lengths
_IGNORED_KEYS = ("hidden_size", "num_attention_heads", "num_key_value_heads", "max_seq_len")
_ENTRY_KEYS = frozenset(
    {"model_type", *_NAME_KEYS, *_LIST_KEYS, QKV, GATE_UP, "groups", "skip_clip", "rope_theta", "use_alibi"}
    | set(_IGNORED_KEYS)
)
_KEYS_HELP = (
    f"model_type, transformers_model_type, blocks, attention_module, attention, mlp_module, mlp, layernorm, "
    f"fusion groups {QKV!r}, {GATE_UP!r}, AWQ groups, skip_clip"
)


def _leaves(value: object, where: str, *, exactly: int | None = None, minimum: int = 2) -> tuple[str, ...]:
    """Module leaf names (no dots), distinct."""
    count_ok = len(value) == exactly if exactly is not None and isinstance(value, list) else True
    if (
        not isinstance(value, list)
        or len(value) < minimum
        or not count_ok
        or not all(isinstance(v, str) and v and "." not in v for v in value)
    ):
        wanted = f"exactly {exactly}" if exactly is not None else f"at least {minimum}"
        raise Awq2TrtError(where, expected=f"a list of {wanted} module leaf names", got=value)
    if len(set(value)) != len(value):
        raise Awq2TrtError(where, expected="distinct module names", got=value)
    return tuple(value)


def _paths(value: object, where: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    """Dotted module names relative to a decoder block."""
    if (
        not isinstance(value, list)
        or not all(isinstance(v, str) and v for v in value)
        or (not value and not allow_empty)
    ):
        raise Awq2TrtError(where, expected="a list of module names", got=repr(value))
    return tuple(value)


def _scaling_groups(value: object, where: str) -> tuple[ScalingGroup, ...]:
    if not isinstance(value, list) or not value:
        raise Awq2TrtError(where, expected="a non-empty list of scaling groups", got=repr(value))
    groups = []
    for i, raw in enumerate(value):
        here = f"{where}[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("prev_op"), str) or not raw["prev_op"]:
            raise Awq2TrtError(here, expected='an object with "prev_op" and "linears"', got=repr(raw))
        extra = set(raw) - {"prev_op", "linears", "inspect"}
        if extra:
            raise Awq2TrtError(here, expected="keys prev_op, linears, inspect", got=sorted(extra))
        inspect = raw.get("inspect")
        if inspect is not None and (not isinstance(inspect, str) or not inspect):
            raise Awq2TrtError(f"{here}: inspect", expected="a module name or null", got=repr(inspect))
        groups.append(ScalingGroup(raw["prev_op"], _paths(raw.get("linears"), f"{here}: linears"), inspect))
    return tuple(groups)


def _entry_changes(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The `Architecture` fields an entry sets (model_type aside), each checked."""
    changes: dict[str, Any] = {}
    for key in _NAME_KEYS:
        if key in entry:
            value = entry[key]
            if not isinstance(value, str) or not value:
                raise Awq2TrtError(f"{where}: {key}", expected="a non-empty name", got=repr(value))
            changes[key] = value
    for key, length in _LIST_KEYS.items():
        if key in entry:
            changes[key] = _leaves(entry[key], f"{where}: {key}", exactly=length)
    fusion = {key: _leaves(entry[key], f"{where} {key}") for key in (QKV, GATE_UP) if key in entry}
    if fusion:
        changes["fusion"] = fusion
    if "groups" in entry:
        changes["scaling_groups"] = _scaling_groups(entry["groups"], f"{where}: groups")
    if "skip_clip" in entry:
        changes["skip_clip"] = _paths(entry["skip_clip"], f"{where}: skip_clip", allow_empty=True)
    if "rope_theta" in entry:
        theta = entry["rope_theta"]
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or theta <= 0:
            raise Awq2TrtError(f"{where}: rope_theta", expected="a positive number", got=repr(theta))
        changes["rope_theta"] = float(theta)
    if "use_alibi" in entry:
        if not isinstance(entry["use_alibi"], bool):
            raise Awq2TrtError(f"{where}: use_alibi", expected="true or false", got=repr(entry["use_alibi"]))
        if entry["use_alibi"]:
            raise Awq2TrtError(f"{where}: use_alibi", expected="false (awq2trt compiles rotary models)", got=True)
    return changes


def parse_entry(
    entry: object,
    where: str,
    *,
    model_type: str | None = None,
    known: Mapping[str, Architecture] = ARCHITECTURES,
) -> dict[str, Architecture]:
    """{model_type: Architecture} for one entry; *model_type* is the type an entry without one describes.

    Fields the entry leaves out come from *known*'s description of the type, or Llama's for a new type."""
    if not isinstance(entry, Mapping):
        raise Awq2TrtError(where, expected="a JSON object", got=type(entry).__name__)
    if not entry:
        raise Awq2TrtError(where, expected=f"keys such as {QKV!r}, 'attention' or 'model_type'", got="an empty object")
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise Awq2TrtError(where, expected="keys " + _KEYS_HELP, got=unknown)
    names = entry.get("model_type", model_type)
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise Awq2TrtError(f"{where}: model_type", expected="a model type name or a list of them", got=repr(names))
    changes = _entry_changes(entry, where)
    table = {}
    for name in names:
        # A user's description is one the user asks awq2trt to compile, whatever the built-in table says.
        base = known.get(name) or _llama_like(name)
        table[name] = dataclasses.replace(base, model_type=name, compiled=True, source=where, **changes)
    return table


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise Awq2TrtError(path, expected="a JSON mapping file", got="no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise Awq2TrtError(path, expected="a readable JSON mapping file", got=type(exc).__name__) from exc
    except json.JSONDecodeError as exc:
        raise Awq2TrtError(path, expected="valid JSON", got=f"{exc.msg} at line {exc.lineno}") from exc
    except RecursionError as exc:  # json recurses per nesting level: a hostile file can exhaust the stack
        raise Awq2TrtError(path, expected="JSON nested at most ~1000 levels", got="deeper nesting") from exc


def _keyed_by_model_type(data: object) -> bool:
    return isinstance(data, Mapping) and bool(data) and all(isinstance(v, Mapping) for v in data.values())


def load_mapping_file(
    path: str | Path, model_type: str | None = None, *, known: Mapping[str, Architecture] = ARCHITECTURES
) -> dict[str, Architecture]:
    """{model_type: Architecture} from a mapping file (see the module doc for its forms).

    *model_type* (the checkpoint's) is what an entry without ``model_type`` describes; a file keyed by model
    type must then hold it."""
    path = Path(path)
    data = _read_json(path)
    if _keyed_by_model_type(data):
        if model_type is not None and model_type not in data:
            raise Awq2TrtError(path, expected=f"an entry for model type {model_type!r}", got=sorted(data))
        table: dict[str, Architecture] = {}
        for name, entry in data.items():
            table.update(parse_entry(entry, f"{path}: {name}", model_type=name, known=known))
        return table
    entries = data if isinstance(data, list) else [data]
    table = {}
    for i, entry in enumerate(entries):
        where = f"{path}[{i}]" if isinstance(data, list) else str(path)
        table.update(parse_entry(entry, where, model_type=model_type, known=known))
    return table


# --- resolution: the one answer, and the one refusal ----------------------------------------------------


def unknown_model_type(model_type: str | None, where: str | Path, table: Mapping[str, Architecture]) -> Awq2TrtError:
    """The refusal quantize, export and load all give for a model type nothing describes."""
    return Awq2TrtError(
        f"{where}: model_type",
        expected="a model_type with an AWQ mapping (" + ", ".join(compiled_types(table)) + ")",
        got=repr(model_type or None),
        detail=MAPPING_HELP,
    )


def architecture_table(
    config: Mapping[str, Any],
    config_path: str | Path,
    files: Iterable[str | Path] = (),
    extra: Mapping[str, ArchitectureMapping] | None = None,
) -> dict[str, Architecture]:
    """Built-in descriptions, then the one recorded in config.json, then each file, then Python AWQ mappings."""
    model_type = config.get("model_type") or None
    table = dict(ARCHITECTURES)
    recorded = config.get(CONFIG_KEY)
    if recorded is not None:
        table.update(parse_entry(recorded, f"{config_path}: {CONFIG_KEY}", model_type=model_type, known=table))
    for file in files:
        table.update(load_mapping_file(file, model_type, known=table))
    for name, mapping in (extra or {}).items():
        base = table.get(name) or _llama_like(name)
        table[name] = dataclasses.replace(
            base,
            scaling_groups=mapping.groups,
            blocks=mapping.blocks,
            skip_clip=mapping.skip_clip,
            compiled=True,
            source="mappings=",
        )
    return table


def find_architecture(
    config: Mapping[str, Any], config_path: str | Path, files: Iterable[str | Path] = ()
) -> Architecture | None:
    """The compiled description of config.json's model type, or None when nothing describes it."""
    arch = architecture_table(config, config_path, files).get(config.get("model_type") or "")
    return arch if arch is not None and arch.compiled else None


def resolve_architecture(
    config: Mapping[str, Any],
    config_path: str | Path,
    files: Iterable[str | Path] = (),
    extra: Mapping[str, ArchitectureMapping] | None = None,
) -> Architecture:
    """The description of config.json's model type, or the one refusal (see `unknown_model_type`)."""
    model_type = config.get("model_type") or None
    if model_type is not None and not isinstance(model_type, str):  # a config not read through read_config
        raise Awq2TrtError(f"{config_path}: model_type", expected="a string", got=type(model_type).__name__)
    table = architecture_table(config, config_path, files, extra)
    arch = table.get(model_type or "")
    if arch is None or not arch.compiled:
        raise unknown_model_type(model_type, config_path, table)
    return arch


def with_recorded_architecture(config: Mapping[str, Any], arch: Architecture) -> dict[str, Any]:
    """config.json for a written checkpoint: a description that is not built in travels inside it."""
    out = {k: v for k, v in config.items() if k != CONFIG_KEY}
    if ARCHITECTURES.get(arch.model_type) != arch:
        out[CONFIG_KEY] = arch.to_entry()
    return out
