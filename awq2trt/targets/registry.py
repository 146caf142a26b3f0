"""The registry of export targets: the CLI's ``--target`` choices and the pass manager read it."""

from __future__ import annotations

from awq2trt.errors import Awq2TrtError
from awq2trt.targets.base import Target

_TARGETS: dict[str, Target] = {}


def register(target: Target) -> Target:
    if target.name in _TARGETS:
        raise ValueError(f"target {target.name} registered twice")
    _TARGETS[target.name] = target
    return target


def _load() -> None:
    import awq2trt.targets  # noqa: F401  (its __init__ registers the built-in targets)

    if not _TARGETS:  # a partial import (registry imported while the package initializes) must not pass silently
        raise RuntimeError("no export targets registered")


def target_names() -> tuple[str, ...]:
    _load()
    return tuple(_TARGETS)


def all_targets() -> list[Target]:
    _load()
    return list(_TARGETS.values())


def get_target(name: str) -> Target:
    _load()
    if name not in _TARGETS:
        raise Awq2TrtError("--target", expected=" or ".join(_TARGETS), got=name)
    return _TARGETS[name]
