"""`AwqConfig`: the ``quantization_config`` of an AWQ checkpoint, as transformers' users know it.

Same fields, defaults and validation rules as transformers' AWQ integration, but every failure is an
`Awq2TrtError` naming the field and what is allowed, and nothing here needs a GPU or a CUDA package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from awq2trt.architectures import ARCHITECTURES
from awq2trt.errors import Awq2TrtError

VERSIONS = ("gemm", "gemv", "exllama", "ipex")
BACKENDS = ("autoawq", "llm-awq")
SUPPORTED_BITS = (4,)
FUSE_REQUIRED_KEYS = (
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "mlp",
    "attention",
    "layernorm",
    "use_alibi",
)
FUSE_OPTIONAL_KEYS = ("rope_theta", "max_seq_len")
EXLLAMA_DEFAULTS = {"version": 2, "max_input_len": 2048, "max_batch_size": 8}
DEFAULT_NOT_CONVERT = ("lm_head",)

# Built-in fused mappings, as in transformers' AWQ integration, from the one architecture table.  A model
# type without one needs a user-supplied ``modules_to_fuse``.
FUSED_MAPPINGS: dict[str, dict[str, Any]] = {name: arch.modules_to_fuse() for name, arch in ARCHITECTURES.items()}


def _where(key: str) -> str:
    return f"quantization_config.{key}"


@dataclass
class AwqConfig:
    bits: int = 4
    group_size: int = 128
    zero_point: bool = True
    version: str = "gemm"
    backend: str = "autoawq"
    do_fuse: bool | None = None
    fuse_max_seq_len: int | None = None
    modules_to_fuse: dict[str, Any] | None = None
    modules_to_not_convert: list[str] | None = None
    exllama_config: dict[str, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Apply transformers' rules; normalise case and fill defaults the way it does."""
        if not isinstance(self.bits, int) or self.bits not in SUPPORTED_BITS:
            raise Awq2TrtError(_where("bits"), expected="4 (the only width AWQ kernels and formats use)", got=self.bits)
        if not isinstance(self.group_size, int) or (self.group_size <= 0 and self.group_size != -1):
            raise Awq2TrtError(
                _where("group_size"), expected="a positive integer (or -1 for one group per row)", got=self.group_size
            )
        if not isinstance(self.zero_point, bool):
            raise Awq2TrtError(_where("zero_point"), expected="true or false", got=self.zero_point)
        version = str(self.version).lower()
        if version not in VERSIONS:
            raise Awq2TrtError(_where("version"), expected="one of " + ", ".join(VERSIONS), got=self.version)
        self.version = version
        backend = str(self.backend).lower()
        if backend not in BACKENDS:
            raise Awq2TrtError(_where("backend"), expected="one of " + ", ".join(BACKENDS), got=self.backend)
        self.backend = backend
        if self.do_fuse is None:
            self.do_fuse = bool(self.modules_to_fuse)
        if self.do_fuse and self.fuse_max_seq_len is None:
            raise Awq2TrtError(
                _where("fuse_max_seq_len"),
                expected="an integer when do_fuse is true (the fused cache length)",
                got=None,
            )
        if self.do_fuse and self.backend != "autoawq":
            raise Awq2TrtError(
                _where("do_fuse"), expected="false with backend llm-awq (fusing is autoawq-only)", got=True
            )
        if self.modules_to_fuse is not None:
            if not isinstance(self.modules_to_fuse, dict):
                raise Awq2TrtError(
                    _where("modules_to_fuse"), expected="a mapping", got=type(self.modules_to_fuse).__name__
                )
            missing = [k for k in FUSE_REQUIRED_KEYS if k not in self.modules_to_fuse]
            if missing:
                raise Awq2TrtError(
                    _where("modules_to_fuse"),
                    expected="keys " + ", ".join(FUSE_REQUIRED_KEYS),
                    got="missing " + ", ".join(missing),
                )
        if self.modules_to_not_convert is not None and not (
            isinstance(self.modules_to_not_convert, list)
            and all(isinstance(m, str) for m in self.modules_to_not_convert)
        ):
            raise Awq2TrtError(
                _where("modules_to_not_convert"), expected="a list of module names", got=self.modules_to_not_convert
            )
        if self.version == "exllama":
            if self.exllama_config is not None and not isinstance(self.exllama_config, dict):
                raise Awq2TrtError(_where("exllama_config"), expected="an object", got=self.exllama_config)
            config = dict(EXLLAMA_DEFAULTS, **(self.exllama_config or {}))
            if config["version"] not in (1, 2):
                raise Awq2TrtError(_where("exllama_config.version"), expected="1 or 2", got=config["version"])
            self.exllama_config = config

    @property
    def effective_group_size(self) -> int | None:
        """Group size, or None for -1 (one group per row: the caller substitutes in_features)."""
        return None if self.group_size == -1 else self.group_size

    @property
    def not_converted(self) -> tuple[str, ...]:
        """Names whose Linears stay dense: the user's list plus the output head."""
        return tuple(dict.fromkeys([*(self.modules_to_not_convert or []), *DEFAULT_NOT_CONVERT]))

    def keeps_dense(self, module_name: str) -> bool:
        """True when *module_name* (or any dotted-path part of it) is listed as not converted."""
        return any(entry and entry in module_name for entry in self.not_converted)

    def fused_mapping(self, model_type: str) -> dict[str, Any]:
        """The user's ``modules_to_fuse`` or the built-in one for *model_type*."""
        if self.modules_to_fuse:
            return dict(self.modules_to_fuse)
        if model_type not in FUSED_MAPPINGS:
            raise Awq2TrtError(
                _where("modules_to_fuse"),
                expected=f"a mapping for model_type {model_type!r} (built in: {', '.join(FUSED_MAPPINGS)})",
                got=None,
                detail="pass modules_to_fuse with keys " + ", ".join(FUSE_REQUIRED_KEYS),
            )
        return dict(FUSED_MAPPINGS[model_type])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AwqConfig:
        if not isinstance(data, dict):
            raise Awq2TrtError("quantization_config", expected="a JSON object", got=type(data).__name__)
        method = data.get("quant_method", "awq")
        if str(method).lower() != "awq":
            raise Awq2TrtError(_where("quant_method"), expected="awq", got=method)
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        # AutoAWQ's own quant_config.json spells some fields differently.
        aliases = {"w_bit": "bits", "q_group_size": "group_size"}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            key = aliases.get(key, key)
            if key in known:
                kwargs[key] = value
            elif key != "quant_method":
                extra[key] = value
        if kwargs.get("modules_to_not_convert") is None:
            kwargs.pop("modules_to_not_convert", None)
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The ``quantization_config`` block AutoAWQ writes (fusing fields only when set)."""
        out: dict[str, Any] = {
            "bits": self.bits,
            "group_size": self.group_size,
            "modules_to_not_convert": self.modules_to_not_convert,
            "quant_method": "awq",
            "version": self.version,
            "zero_point": self.zero_point,
        }
        if self.backend != "autoawq":
            out["backend"] = self.backend
        if self.do_fuse:
            out.update(do_fuse=True, fuse_max_seq_len=self.fuse_max_seq_len, modules_to_fuse=self.modules_to_fuse)
        if self.version == "exllama":
            out["exllama_config"] = self.exllama_config
        return out
