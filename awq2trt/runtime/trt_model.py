"""A TensorRT engine folder (``awq2trt build``'s output) opened for generation, perplexity and benchmarks.

The folder holds the engine, ``engine.json`` (its limits and profiles), the sidecar and the tokenizer; the
engine is checked before TensorRT sees it (engine.json's fields and the engine's size, the TensorRT version
that built it, a CUDA device), each failure one line.  Generation is the loop every backend shares
(``TextModel.generate``), driven through ``trt_step``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from awq2trt.errors import Awq2TrtError
from awq2trt.runtime.text_model import TextModel, load_tokenizer
from awq2trt.runtime.trt_step import EngineRunner, TrtStepModel
from awq2trt.sidecar import SIDECAR_FILE, Sidecar
from awq2trt.tensorrt.engine_info import ENGINE_INFO_FILE, EngineInfo, check_tensorrt_version
from awq2trt.tensorrt.profiles import TRT_TARGETS


def read_engine_folder(folder: Path) -> tuple[Sidecar, EngineInfo]:
    """The sidecar and engine.json of *folder*, checked against each other (no TensorRT needed)."""
    if not folder.is_dir():
        raise Awq2TrtError(folder, expected="a folder written by `awq2trt build`", got="no such folder")
    info = EngineInfo.read(folder)
    sidecar = Sidecar.read(folder)
    if sidecar.target not in TRT_TARGETS:
        raise Awq2TrtError(folder / SIDECAR_FILE, expected="a graph exported with --target trt", got=sidecar.target)
    if sidecar.dtype != info.dtype:
        raise Awq2TrtError(
            folder / ENGINE_INFO_FILE, expected=f"an engine of the sidecar's {sidecar.dtype} graph", got=info.dtype
        )
    return sidecar, info


class TrtModel(TextModel):
    """A TensorRT engine folder opened for inference on a CUDA device; build it with :meth:`open`."""

    backend = "tensorrt"

    def __init__(
        self, folder: Path, sidecar: Sidecar, info: EngineInfo, runner: EngineRunner, tokenizer: object
    ) -> None:
        self.info = info
        self.runner = runner
        self.steps: TrtStepModel = TrtStepModel(runner, sidecar, info, where=str(folder))
        super().__init__(folder, sidecar, self.steps, tokenizer)

    @classmethod
    def open(cls, folder: str | Path, *, device: int = 0, verbose: bool = False) -> TrtModel:
        """Check the folder, TensorRT and the GPU, then deserialize the engine (one context per profile)."""
        folder = Path(folder)
        sidecar, info = read_engine_folder(folder)
        from awq2trt.tensorrt.builder import import_tensorrt

        import_tensorrt("running a TensorRT engine")
        import tensorrt as trt

        check_tensorrt_version(info, trt.__version__, folder / ENGINE_INFO_FILE)
        import torch

        if not torch.cuda.is_available():
            raise Awq2TrtError(
                folder,
                expected="a CUDA GPU and a CUDA build of torch to run a TensorRT engine",
                got=f"torch {torch.__version__} sees no CUDA device",
            )
        from awq2trt.runtime.trt_engine import TrtEngineRunner

        runner = TrtEngineRunner(info.engine_path(folder), info, device=device, verbose=verbose)
        return cls(folder, sidecar, info, runner, load_tokenizer(folder))

    def model_files(self) -> list[Path]:
        return [self.info.engine_path(self.folder)]

    def logits(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        return self.steps.window_logits(self.window_ids(ids))
