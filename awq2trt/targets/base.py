"""The interface every export target implements, and the export options targets read.

A target is one backend's view of the optimized IR graph: which passes it wants, how it lowers the
``awq2trt::Int4MatMul`` nodes, what it records in the sidecar (its options, how the KV cache is kept), which
extra files it writes beside the graph, and how its output is verified.  ``frontend/export.py`` drives a target
through these methods only; adding a backend is one module plus one line in ``targets/__init__.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from awq2trt.errors import Awq2TrtError
from awq2trt.ir.int4_op import LAYOUT_TILES16
from awq2trt.sidecar import KernelsSpec, KvCacheSpec, Sidecar

# The Int4MatMul weight layout an ort-kernels export writes at accuracy level 4 when --weight-layout is not given
# (awq2trt.ir.int4_op): the tiles its int8 kernel reads (1.23x the rows layout's decode on SmolLM2).  At level 0 the
# default stays rows: the exact paths read rows, and untiling per call made M = 1 about 2x slower.
DEFAULT_WEIGHT_LAYOUT = LAYOUT_TILES16


@dataclass(frozen=True)
class ExportOptions:
    """Target options as the user gave them (CLI flags or ``export_checkpoint`` keywords)."""

    accuracy_level: int = 4  # MatMulNBits: 4 = int8 activations (fast), 0 = exact
    lm_head: str = "fp"  # fp: the dense output head as is; int8/int4: quantized as well
    # ort-kernels: rows (the IR's) or tiles16 (awq2trt.cpu_layout); None: not given (the target's default), so
    # that any value given to another target is refused
    weight_layout: str | None = None

    def non_default(self) -> dict[str, Any]:
        defaults = ExportOptions()
        return {name: value for name, value in vars(self).items() if value != getattr(defaults, name)}


OPTION_FLAGS = {"accuracy_level": "--accuracy-level", "lm_head": "--lm-head", "weight_layout": "--weight-layout"}


class Target(ABC):
    """One backend.  Subclasses set the class attributes and implement ``lower``."""

    name: ClassVar[str]
    description: ClassVar[str]
    passes: ClassVar[tuple[str, ...]]  # the graph passes it runs (in the pass manager's order)
    options: ClassVar[frozenset[str]] = frozenset()  # the ExportOptions fields it reads
    default_dtype: ClassVar[str] = "fp32"  # activation and scale dtype when --dtype is not given

    def check_options(self, options: ExportOptions) -> None:
        """Refuse, before the slow trace, an option this target ignores or a value it cannot take."""
        for option in options.non_default():
            if option not in self.options:
                users = ", ".join(t.name for t in _registered() if option in t.options) or "no target"
                raise Awq2TrtError(
                    OPTION_FLAGS.get(option, option),
                    expected=f"the default with --target {self.name} (it is for --target {users})",
                    got=getattr(options, option),
                )

    @abstractmethod
    def lower(self, model: Any, options: ExportOptions) -> int:
        """Rewrite the optimized IR graph in place for this backend; returns the number of int4 matmuls."""

    def kv_cache(self, passes_run: Collection[str]) -> KvCacheSpec:
        """How runtimes keep the cache of the graph the given passes produced (default: Concat, left-padded)."""
        return KvCacheSpec(shared_buffer=False)

    def target_options(self, options: ExportOptions) -> dict[str, Any]:
        """What the sidecar records about this target's options."""
        return {name: getattr(options, name) for name in sorted(self.options)}

    def kernels(self) -> KernelsSpec | None:
        """The compiled custom-op library the lowered graph needs at run time (recorded in the sidecar), if any."""
        return None

    def write_extra_files(self, folder: Path, sidecar: Sidecar) -> list[str]:
        """Files besides model.onnx, its data, the tokenizer and the sidecar; returns their names."""
        return []

    def verify(self, model_path: Path) -> None:
        """Check the saved graph: the ONNX checker and strict shape inference, with the schemas it uses."""
        import onnx

        onnx.checker.check_model(str(model_path), full_check=True)
        inferred = model_path.with_name(model_path.name + ".inferred")
        try:
            onnx.shape_inference.infer_shapes_path(str(model_path), str(inferred), strict_mode=True)
        finally:
            inferred.unlink(missing_ok=True)


def _registered() -> list[Target]:
    from awq2trt.targets.registry import all_targets

    return all_targets()
