"""Options more than one command takes, each defined (and validated) once.

Bad values are argparse errors (``choices``, ``type``), so they exit with the usage code like any other
command-line mistake; a handler that finds a usage problem argparse cannot express raises `UsageError`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "default"
DTYPES = ("fp32", "fp16")
BACKENDS = ("auto", "onnxruntime", "tensorrt")
EVAL_TEXT = Path("/usr/share/common-licenses/GPL-3")  # eval's default text and the demo's
MODEL_HELP = f"checkpoint folder, or '{DEFAULT_MODEL}' for SmolLM2-135M-Instruct"
MODEL_OR_FOLDER_HELP = f"exported folder (ONNX Runtime), checkpoint folder (PyTorch reference), or '{DEFAULT_MODEL}'"
OUTPUT_FOLDER_HELP = "replace a non-empty output folder"

Subparsers = Any  # argparse's _SubParsersAction is private; this is what add_subparsers returns


class UsageError(Exception):
    """A command line argparse accepted but the command cannot run (e.g. a missing -o): exits like argparse."""


def new_command(subparsers: Subparsers, name: str, *, help: str, description: str) -> argparse.ArgumentParser:
    """A subcommand with the options every command has: -v/--verbose, -q/--quiet, --cache-dir."""
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help, description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="show library logs and full tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="where prepared models are cached (default: $AWQ2TRT_CACHE or ~/.cache/awq2trt)",
    )
    # The dispatcher reports a handler's UsageError through the parser of the command that raised it.
    parser.set_defaults(command_parser=parser)
    return parser


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")


def add_dtype(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--dtype", default=DTYPES[0], choices=DTYPES, help=f"{what} (default {DTYPES[0]})")


def add_force(parser: argparse.ArgumentParser, help: str = OUTPUT_FOLDER_HELP) -> None:
    parser.add_argument("--force", action="store_true", help=help)


def add_low_memory(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--low-memory",
        action="store_true",
        help="checkpoints: dequantize each layer on the fly instead of keeping dense copies"
        " (slower, int4-sized memory)",
    )


def add_allow_pickle(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read .bin/.pt weights (pickle can run code: only for trusted files)",
    )


def add_runtime(parser: argparse.ArgumentParser) -> None:
    """ONNX Runtime session options for exported folders."""
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="exported folders: ONNX Runtime intra-op threads"
    )
    # No `choices`: which providers exist depends on the installed onnxruntime, and the runtime names them.
    parser.add_argument("--provider", default="cpu", help="exported folders: execution provider, cpu (default) or cuda")
    add_kernels(parser)
    parser.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="exported folders: auto (default: the TensorRT engine where `awq2trt build` wrote one, else ONNX"
        " Runtime), onnxruntime, or tensorrt",
    )


def add_kernels(parser: argparse.ArgumentParser) -> None:
    """``--kernels PATH``: awq2trt's ONNX Runtime kernel library (what --target ort-kernels exports need)."""
    parser.add_argument(
        "--kernels",
        default=None,
        metavar="PATH",
        help="exported folders: awq2trt's kernel library libawq2trt_ort.so for --target ort-kernels (or ir) graphs"
        " (default: $AWQ2TRT_ORT_KERNELS, else the copy `pip install .` built into the package)",
    )


def add_folder_or_checkpoint(parser: argparse.ArgumentParser) -> None:
    """The options of commands that run an exported folder (ONNX Runtime) or a checkpoint (PyTorch reference)."""
    add_dtype(parser, "checkpoints: the reference model's dtype")
    add_json(parser)
    add_runtime(parser)
    add_low_memory(parser)
    add_allow_pickle(parser)


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text}") from None
