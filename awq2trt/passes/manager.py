"""The pass manager: a declared order of named passes, each for some targets, selectable by name.

A pass is a function ``run(model, context) -> int`` (the number of rewrites it made) with a name and a one-line
description.  Which passes a target runs is the target's declaration (``awq2trt.targets``: ``Target.passes``);
the manager runs them in its own declared order.
Passes run on the traced graph after cleanup and before a target's lowering, in place, and never read weight
data: new initializers are lazy tensors derived from the old ones (materialized when the model is saved).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from awq2trt.errors import Awq2TrtError
from awq2trt.ir.graph import node_count
from awq2trt.passes.mappings import FusionMapping
from awq2trt.targets.registry import all_targets, get_target

log = logging.getLogger(__name__)


@dataclass
class PassContext:
    """What a pass may know besides the graph."""

    target: str
    mapping: FusionMapping | None = None  # which projections fuse (None: no int4 fusions)
    max_positions: int | None = None  # rotary caches cover positions [0, max_positions)
    config: Mapping[str, Any] = field(default_factory=dict)  # the checkpoint's config.json
    seconds: dict[str, float] = field(default_factory=dict)  # per pass, filled in by the manager
    nodes: dict[str, int] = field(default_factory=dict)  # graph nodes before the passes ("input"), then after each


@dataclass(frozen=True)
class Pass:
    name: str
    description: str
    run: Callable[[Any, PassContext], int]

    def applies_to(self, target: str) -> bool:
        return self.name in get_target(target).passes


class PassManager:
    """Holds passes in their declared order; selects and runs them by name."""

    def __init__(self, passes: Sequence[Pass]) -> None:
        names = [p.name for p in passes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate pass names: {duplicates}")
        self._passes = list(passes)

    @property
    def passes(self) -> list[Pass]:
        return list(self._passes)

    def names(self, target: str | None = None) -> list[str]:
        return [p.name for p in self._passes if target is None or p.applies_to(target)]

    def get(self, name: str) -> Pass:
        for p in self._passes:
            if p.name == name:
                return p
        raise Awq2TrtError("--passes", expected=f"one of {', '.join(self.names())}", got=name)

    def targets_of(self, name: str) -> list[str]:
        return [t.name for t in all_targets() if name in t.passes]

    def describe(self) -> str:
        """One line per pass, in running order (what ``--list-passes`` prints)."""
        width = max(len(p.name) for p in self._passes)
        targets = {
            p.name: "[" + ",".join(t.name for t in all_targets() if p.name in t.passes) + "]" for p in self._passes
        }
        column = max(len(t) for t in targets.values())
        return "\n".join(f"{p.name:<{width}}  {targets[p.name]:<{column}}  {p.description}" for p in self._passes)

    def select(self, target: str, enabled: Sequence[str] | None = None, disabled: Sequence[str] = ()) -> list[Pass]:
        """The passes to run for *target*: all that apply (or just *enabled*), minus *disabled*.

        Naming a pass that does not exist, or enabling one that does not serve *target*, is a user error.
        """
        declared = get_target(target).passes
        unknown = [name for name in declared if name not in self.names()]
        if unknown:  # a target naming a pass nobody registered is a programming error, not a user's
            raise ValueError(f"target {target} names unknown passes {unknown}")
        for name in [*(enabled or ()), *disabled]:
            self.get(name)
        if enabled is not None:
            wrong = [n for n in enabled if not self.get(n).applies_to(target)]
            if wrong:
                targets = ", ".join(f"{n} ({','.join(self.targets_of(n))})" for n in wrong)
                raise Awq2TrtError("--passes", expected=f"passes for target {target}", got=targets)
        chosen = set(enabled) if enabled is not None else set(self.names(target))
        return [p for p in self._passes if p.name in chosen and p.name not in set(disabled) and p.applies_to(target)]

    def run(
        self,
        model: Any,
        context: PassContext,
        enabled: Sequence[str] | None = None,
        disabled: Sequence[str] = (),
    ) -> dict[str, int]:
        counts: dict[str, int] = {}
        context.nodes["input"] = before = node_count(model)
        for p in self.select(context.target, enabled, disabled):
            start = time.perf_counter()
            counts[p.name] = int(p.run(model, context))
            context.seconds[p.name] = time.perf_counter() - start
            context.nodes[p.name] = after = node_count(model)
            log.info(
                "pass %s: %d rewrites, %d -> %d nodes in %.2f s",
                p.name,
                counts[p.name],
                before,
                after,
                context.seconds[p.name],
            )
            before = after
        return counts


def parse_pass_list(text: str | None) -> list[str] | None:
    """``--passes a,b`` -> ["a", "b"]; None or "" -> None (all passes)."""
    if not text:
        return None
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise Awq2TrtError("--passes", expected="comma-separated pass names", got=text)
    return names


def counts_line(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "no passes"
