"""What a MODEL argument names: the default model, a checkpoint folder, or an exported folder.

Deciding that needs only the file system and `awq2trt.sidecar`'s file name, so the serving commands
(run, eval, bench on an exported folder) never import torch or the compiler to find out.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from awq2trt.cli.options import DEFAULT_MODEL
from awq2trt.cli.quiet import quiet_compiler_logs
from awq2trt.errors import Awq2TrtError
from awq2trt.sidecar import SIDECAR_FILE


def model_path(value: str, cache: str | None) -> Path:
    """``default`` means the prepared default model; anything else must be an existing folder."""
    if value == DEFAULT_MODEL:
        from awq2trt.models import prepare_default_model

        return prepare_default_model(cache)
    path = Path(value)
    if not path.exists():
        raise Awq2TrtError(path, expected="a checkpoint or exported folder", got="no such path")
    if not path.is_dir():
        raise Awq2TrtError(path, expected="a checkpoint or exported folder", got="a file")
    return path


def is_exported(path: Path) -> bool:
    """An `awq2trt export` output folder (run in ONNX Runtime) rather than a checkpoint (PyTorch reference)."""
    return (path / SIDECAR_FILE).is_file()


def open_exported(path: Path, args: argparse.Namespace) -> Any:
    """The folder's model on the backend --backend picks: ``auto`` runs an engine where one was built."""
    from awq2trt.tensorrt.engine_info import ENGINE_INFO_FILE  # standard library only: no torch for ONNX Runtime

    backend = getattr(args, "backend", "auto")
    if backend == "tensorrt" or (backend == "auto" and (path / ENGINE_INFO_FILE).is_file()):
        for name in ("threads", "provider", "kernels"):
            if getattr(args, name) not in (None, "cpu"):
                flag, value = "--" + name, getattr(args, name)
                raise Awq2TrtError(flag, expected="an ONNX Runtime option (not for a TensorRT engine)", got=value)
        from awq2trt.errors import MissingPackageError
        from awq2trt.runtime.trt_model import TrtModel

        try:
            return TrtModel.open(path, verbose=args.verbose)
        except MissingPackageError as error:
            if backend == "auto" and (path / "model.onnx").is_file():  # the exported graph is still there
                error.detail = f"{error.detail}; or run the exported graph with --backend onnxruntime"
            raise
    from awq2trt.runtime import OrtModel
    from awq2trt.runtime.providers import execution_providers

    return OrtModel.open(
        path, providers=execution_providers(args.provider), threads=args.threads, kernels=getattr(args, "kernels", None)
    )


def backend_label(model: Any, args: argparse.Namespace) -> str:
    """How reports name what ran: "ONNX Runtime cpu" or "TensorRT"."""
    return "TensorRT" if model.backend == "tensorrt" else f"ONNX Runtime {args.provider}"


def refuse_runtime_options(args: argparse.Namespace, names: Sequence[str]) -> None:
    """Options that only exported folders take must not be silently ignored for a checkpoint."""
    for name in names:
        value = getattr(args, name)
        if value not in (None, False, "cpu", "auto"):
            flag = "--" + name.replace("_", "-")
            raise Awq2TrtError(flag, expected="an exported folder (see `awq2trt export --target ort`)", got=args.model)


def reference_model_and_tokenizer(path: Path, args: argparse.Namespace) -> tuple[Any, Any]:
    """The PyTorch reference of a checkpoint, as `eval` and `run` load it (dtype, pickle and memory policy)."""
    quiet_compiler_logs(args.verbose)
    from awq2trt.evaluate.reference import load_tokenizer
    from awq2trt.modeling import load_reference_model

    tokenizer = load_tokenizer(path)
    model = load_reference_model(
        path, dtype=args.dtype, allow_pickle=args.allow_pickle, progress=not args.quiet, cache_dense=not args.low_memory
    )
    return model, tokenizer
