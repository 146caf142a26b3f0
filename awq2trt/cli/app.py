"""The `awq2trt` command line: the parser made of every command's own, and how failures become exit codes.

Every command module imports only the standard library and light awq2trt modules at the top; the
compiler (torch, transformers, the frontend, the passes) is imported inside the handlers that need it,
so serving an exported folder never loads it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import awq2trt
from awq2trt import __version__
from awq2trt.cli.commands import bench, build, demo, eval, export, inspect, prepare, quantize, run, serve, triton
from awq2trt.cli.exit_codes import ExitCode
from awq2trt.cli.options import UsageError
from awq2trt.cli.quiet import quiet_environment
from awq2trt.errors import Awq2TrtError, MissingPackageError

COMMANDS = (inspect, prepare, quantize, export, build, eval, run, bench, triton, serve, demo)
_PACKAGE_DIR = Path(awq2trt.__file__).resolve().parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="awq2trt",
        description="Compile AWQ int4 language models into ONNX / ONNX Runtime / TensorRT artifacts, and run them.",
    )
    parser.add_argument("--version", action="version", version=f"awq2trt {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_environment(args.verbose)
    # SIGTERM unwinds like Ctrl-C (so temporary outputs are removed); restored on the way out.
    # (Signal handlers can only be set from the main thread; elsewhere the default stays.)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return _dispatch(args)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _dispatch(args: argparse.Namespace) -> int:
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        code = func(args)
        sys.stdout.flush()  # a closed pipe shows up here, inside the handlers below, not at interpreter exit
        return code
    except UsageError as exc:
        args.command_parser.error(str(exc))  # prints the usage and exits 2, as argparse does for its own checks
        raise  # not reached: error() exits
    except MissingPackageError as exc:  # the environment lacks what the command needs: its own code
        _print_error(str(exc))
        return ExitCode.MISSING_PACKAGE
    except Awq2TrtError as exc:
        if args.verbose:
            raise
        _print_error(str(exc))
        return ExitCode.USER_ERROR
    except KeyboardInterrupt:
        _print_error("interrupted (no partial output was left)")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        _discard_stdout()
        return ExitCode.BROKEN_PIPE
    except RecursionError as exc:
        if args.verbose or not _is_json_nesting(exc):
            raise
        # json gives up on nesting deeper than the interpreter's recursion limit: a bad input file, not a bug.
        where = _file_being_read(exc.__traceback__) or "input"
        _print_error(str(Awq2TrtError(where, expected="JSON nested at most ~1000 levels", got="deeper nesting")))
        return ExitCode.USER_ERROR
    except Exception as exc:  # a bug in awq2trt: say so in one line, full traceback with --verbose
        if args.verbose:
            raise
        message = " ".join(str(exc).split())
        _print_error(f"internal error: {type(exc).__name__}: {message} (rerun with --verbose for the traceback)")
        return ExitCode.INTERNAL


def _print_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _discard_stdout() -> None:
    """After the reader of stdout went away (`| head`): send what is still buffered nowhere, silently.

    Python flushes stdout again at exit; pointing the descriptor at /dev/null keeps that flush from
    raising a second BrokenPipeError and printing "Exception ignored".
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (captured, replaced): nothing to do
        pass


def _is_json_nesting(exc: RecursionError) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return "JSON" in str(exc) or any(f"{os.sep}json{os.sep}" in frame.filename for frame in frames)


def _file_being_read(tb: TracebackType | None) -> Path | None:
    """The file an awq2trt frame was reading when json gave up: the innermost one holding a Path to a file."""
    found = None
    while tb is not None:
        frame = tb.tb_frame
        if Path(frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE_DIR):
            for value in frame.f_locals.values():
                if isinstance(value, Path) and value.is_file():
                    found = value
        tb = tb.tb_next
    return found
