"""``engine.json``: what ``awq2trt build`` records beside a TensorRT engine, for the engine runtime to check.

The engine file itself says nothing a runtime can read without TensorRT (and a wrong TensorRT refuses it with
an opaque message), so the build writes its limits, its optimization profiles, the plugin libraries it needs
and the engine's size here.  ``EngineInfo.read`` checks every field and gives one ``Awq2TrtError`` naming the
file and the key; the size check makes a half-copied folder fail clearly instead of deep inside TensorRT.
Standard library only: a serving environment reads this without numpy or the compiler.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from awq2trt.atomic import write_file_atomic
from awq2trt.errors import Awq2TrtError
from awq2trt.json_fields import JsonFields

ENGINE_INFO_FILE = "engine.json"
ENGINE_INFO_FORMAT = "awq2trt-engine"
FORMAT_VERSION = 1
FLOAT_DTYPES = ("float32", "float16")  # the sidecar's graph dtypes (awq2trt.sidecar.FLOAT_DTYPES)
PROFILE_NAMES = ("prefill", "decode")  # in profile-index order
MAX_DIM = 1 << 31  # beyond any real limit; bounds what a tampered file can make a runtime allocate
MAX_PROFILES = 64  # TensorRT allows far fewer per engine in practice


@dataclass(frozen=True)
class ShapeRange:
    """The min/opt/max dims (or, for shape tensors, values) of one input in one optimization profile."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def contains(self, dims: tuple[int, ...]) -> bool:
        """Whether *dims* (same rank) lies inside the range, element by element."""
        return len(dims) == len(self.min) and all(
            lo <= d <= hi for lo, d, hi in zip(self.min, dims, self.max, strict=True)
        )

    def to_json(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


@dataclass(frozen=True)
class Profile:
    """One optimization profile: ``prefill`` (index 0) or ``decode`` (index 1)."""

    name: str
    shapes: dict[str, ShapeRange]  # every dynamic input's min/opt/max dims
    # min/opt/max values of inputs TensorRT may treat as shape tensors (num_logits_to_keep); the builder applies
    # them only to inputs the parsed network reports as shape tensors.
    values: dict[str, ShapeRange]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shapes": {name: r.to_json() for name, r in self.shapes.items()},
            "values": {name: r.to_json() for name, r in self.values.items()},
        }


@dataclass(frozen=True)
class EngineInfo:
    format_version: int
    tensorrt_version: str  # trt.__version__ at build time: engines only load in that exact version
    engine: str  # engine file name, inside the folder holding engine.json
    dtype: str  # the graph's float dtype, from the sidecar ("float16" / "float32")
    max_batch: int
    max_seq: int
    max_context: int
    profiles: tuple[Profile, ...]
    plugin_libs: tuple[str, ...]  # absolute paths given with --plugin-lib, loaded before deserializing
    engine_bytes: int  # size of the engine file, checked on read

    def engine_path(self, folder: str | Path) -> Path:
        return Path(folder) / self.engine

    def profile_index(self, name: str) -> int:
        """The optimization-profile index of the profile called *name* (what the execution context selects)."""
        for index, profile in enumerate(self.profiles):
            if profile.name == name:
                return index
        raise Awq2TrtError(
            ENGINE_INFO_FILE, expected=f"a profile named {name!r}", got=", ".join(p.name for p in self.profiles)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": ENGINE_INFO_FORMAT,
            "format_version": self.format_version,
            "tensorrt_version": self.tensorrt_version,
            "engine": self.engine,
            "engine_bytes": self.engine_bytes,
            "dtype": self.dtype,
            "max_batch": self.max_batch,
            "max_seq": self.max_seq,
            "max_context": self.max_context,
            "profiles": [p.to_json() for p in self.profiles],
            "plugin_libs": list(self.plugin_libs),
        }

    def write(self, folder: str | Path) -> Path:
        """Write ``FOLDER/engine.json`` all-or-nothing (a temporary file renamed into place)."""
        path = Path(folder) / ENGINE_INFO_FILE
        write_file_atomic(path, self.to_text().encode())
        return path

    def to_text(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    @classmethod
    def read(cls, folder: str | Path) -> EngineInfo:
        """Read and check ``FOLDER/engine.json`` and the size of the engine it names."""
        path = Path(folder) / ENGINE_INFO_FILE
        if not path.is_file():
            raise Awq2TrtError(path, expected="the file `awq2trt build` writes beside the engine", got="no such file")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise Awq2TrtError(path, expected="readable JSON", got=str(error)[:200] or type(error).__name__) from None
        info = cls.from_json(data, path)
        engine = Path(folder) / info.engine
        if not engine.is_file():
            raise Awq2TrtError(f"{path}: engine", expected=f"an engine file {engine}", got="no such file")
        size = engine.stat().st_size
        if size != info.engine_bytes:
            raise Awq2TrtError(
                f"{path}: engine_bytes",
                expected=f"{info.engine_bytes} bytes in {engine}",
                got=f"{size} (a partly copied or replaced engine: copy the folder again or rebuild it)",
            )
        return info

    @classmethod
    def from_json(cls, data: Any, path: str | Path = ENGINE_INFO_FILE) -> EngineInfo:
        reader = _Reader(data, str(path))
        if (fmt := reader.get("format", str)) != ENGINE_INFO_FORMAT:
            raise reader.fail("format", f'"{ENGINE_INFO_FORMAT}"', fmt)
        version = reader.get("format_version", int)
        if version != FORMAT_VERSION:
            raise reader.fail("format_version", f"{FORMAT_VERSION} (build the engine again with this awq2trt)", version)
        max_seq = reader.count("max_seq")
        max_context = reader.count("max_context")
        if max_seq > max_context:
            raise reader.fail("max_seq", f"at most max_context = {max_context}", max_seq)
        return cls(
            format_version=version,
            tensorrt_version=reader.text("tensorrt_version"),
            engine=reader.engine_file("engine"),
            dtype=reader.choice("dtype", FLOAT_DTYPES),
            max_batch=reader.count("max_batch"),
            max_seq=max_seq,
            max_context=max_context,
            profiles=reader.profiles("profiles"),
            plugin_libs=reader.plugin_libs("plugin_libs"),
            engine_bytes=reader.size("engine_bytes"),
        )


def check_tensorrt_version(info: EngineInfo, running: str, path: str | Path) -> None:
    """Refuse an engine another TensorRT built: serialized engines load only in the version that wrote them."""
    if info.tensorrt_version != running:
        raise Awq2TrtError(
            path,
            expected=f"an engine built by the installed TensorRT {running}",
            got=f"one built by TensorRT {info.tensorrt_version} (rebuild it with `awq2trt build`)",
        )


class _Reader(JsonFields):
    """engine.json's fields: every wrong value is one error naming the file and the key."""

    def text(self, key: str) -> str:
        value: str = self.get(key, str)
        if not value.strip():
            raise self.fail(key, "a non-empty string", value)
        return value

    def count(self, key: str) -> int:
        value: int = self.get(key, int)
        if not 1 <= value <= MAX_DIM:
            raise self.fail(key, f"an integer in [1, {MAX_DIM}]", value)
        return value

    def size(self, key: str) -> int:
        value: int = self.get(key, int)
        if value < 0:
            raise self.fail(key, "a byte count >= 0", value)
        return value

    def engine_file(self, key: str) -> str:
        value: str | None = self.file_name(key, "engine's folder")
        assert value is not None  # not optional: get() raised otherwise
        return value

    def plugin_libs(self, key: str) -> tuple[str, ...]:
        value: list[Any] = self.get(key, list)
        for index, item in enumerate(value):
            if not isinstance(item, str) or not Path(item).is_absolute():
                raise self.fail(f"{key}[{index}]", "an absolute path to a plugin library", item)
        return tuple(value)

    def profiles(self, key: str) -> tuple[Profile, ...]:
        value: list[Any] = self.get(key, list)
        if not 1 <= len(value) <= MAX_PROFILES:
            raise self.fail(key, f"a list of 1 to {MAX_PROFILES} profiles", f"{len(value)} profiles")
        profiles = []
        for index, raw in enumerate(value):
            sub = _Reader(raw, f"{self.where}: {key}[{index}]")
            shapes = sub.ranges("shapes")
            values = sub.ranges("values")
            profiles.append(Profile(name=sub.text("name"), shapes=shapes, values=values))
        names = [p.name for p in profiles]
        if len(set(names)) != len(names):
            raise self.fail(key, "profiles with distinct names", names)
        return tuple(profiles)

    def ranges(self, key: str) -> dict[str, ShapeRange]:
        table: dict[str, Any] = self.get(key, dict)
        out = {}
        for name, raw in table.items():
            where = f"{key}.{name}"
            if not isinstance(raw, dict):
                raise self.fail(where, "an object with min, opt and max", raw)
            bounds = []
            for part in ("min", "opt", "max"):
                dims = raw.get(part)
                if not isinstance(dims, list) or not all(
                    isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIM for d in dims
                ):
                    raise self.fail(f"{where}.{part}", f"a list of integers in [0, {MAX_DIM}]", dims)
                bounds.append(tuple(dims))
            low, opt, high = bounds
            if not len(low) == len(opt) == len(high):
                raise self.fail(where, "min, opt and max of one length", raw)
            if not all(a <= b <= c for a, b, c in zip(low, opt, high, strict=True)):
                raise self.fail(where, "min <= opt <= max in every dim", raw)
            out[name] = ShapeRange(low, opt, high)
        return out
