"""Typed access to a JSON object we wrote (the sidecar, engine.json) and read back as untrusted input.

Every wrong value becomes one ``Awq2TrtError`` naming the file and the key; the file-specific readers
(``sidecar``, ``tensorrt.engine_info``) add their own field kinds on top of these.  Standard library only.
"""

from __future__ import annotations

from typing import Any

from awq2trt.errors import Awq2TrtError

JSON_NAMES = {str: "string", int: "integer", float: "number", list: "list", dict: "object", bool: "boolean"}


class JsonFields:
    """The object at *where* (a file name, or ``file: key[i]`` for a nested one)."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise Awq2TrtError(where, expected="a JSON object", got=type(data).__name__)
        self.data = data
        self.where = where

    def fail(self, key: str, expected: str, got: Any) -> Awq2TrtError:
        return Awq2TrtError(f"{self.where}: {key}", expected=expected, got=repr(got)[:80])

    def get(self, key: str, kind: type, *, optional: bool = False) -> Any:
        """The value of *key*, of JSON type *kind* (a bool is not an integer); None if absent and *optional*."""
        if key not in self.data or self.data[key] is None:
            if optional:
                return None
            raise Awq2TrtError(self.where, expected=f'a "{key}" entry', got="none")
        value = self.data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(key, f"a JSON {JSON_NAMES.get(kind, kind.__name__)}", value)
        return value

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value: str = self.get(key, str)
        if value not in choices:
            raise self.fail(key, " or ".join(choices), value)
        return value

    def file_name(self, key: str, folder: str, *, optional: bool = False) -> str | None:
        """A file beside the JSON file: a plain name, never a path that could leave *folder*."""
        value: str | None = self.get(key, str, optional=optional)
        if value is not None and (not value or "/" in value or "\\" in value or value in (".", "..") or "\0" in value):
            raise self.fail(key, f"a file name inside the {folder}", value)
        return value
