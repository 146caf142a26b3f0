"""AWQ's view of the architecture table: which Linears share a scale, and what op the scale folds into.

A *scaling group* is a set of Linears that read the same input, the op that produces that input
(``prev_op``: a norm, whose weight is divided by the scale, or a Linear, whose output rows are) and the module
whose output measures the search loss (``inspect``; none means the group's Linears themselves).  Names are
relative to one decoder block.  A group whose ``prev_op`` is a Linear applies only when its output width equals
the group's input width (v_proj -> o_proj is skipped under grouped-query attention, where they differ).

The groups of every architecture are derived in `awq2trt.architectures` from its module names; new model
types come as a mapping file there (``--mapping FILE``, whose ``groups`` and ``skip_clip`` keys set them
explicitly) or as a Python `ArchitectureMapping` (``mappings={model_type: ...}``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from awq2trt.architectures import (
    ARCHITECTURES,
    MAPPING_HELP,
    ArchitectureMapping,
    ScalingGroup,
    compiled_types,
    resolve_architecture,
)
from awq2trt.architectures import load_mapping_file as load_architectures

__all__ = [
    "BUILTIN_MAPPINGS",
    "LLAMA_LIKE",
    "MAPPING_HELP",
    "ArchitectureMapping",
    "ScalingGroup",
    "load_mapping_file",
    "resolve_mapping",
]

BUILTIN_MAPPINGS: dict[str, ArchitectureMapping] = {name: ARCHITECTURES[name].awq for name in compiled_types()}
LLAMA_LIKE = BUILTIN_MAPPINGS["llama"]


def load_mapping_file(path: str | Path) -> dict[str, ArchitectureMapping]:
    """{model_type: AWQ mapping} for every model type a mapping file describes."""
    return {name: arch.awq for name, arch in load_architectures(path).items()}


def resolve_mapping(
    model_type: str | None,
    *,
    extra: Mapping[str, ArchitectureMapping] | None = None,
    files: Iterable[str | Path] = (),
    where: str = "config.json",
) -> ArchitectureMapping:
    """The AWQ mapping for *model_type*: user-given ones (files, then *extra*) override the built-in table."""
    return resolve_architecture({"model_type": model_type}, where, files, extra).awq
