"""The exit codes of the `awq2trt` command, in one table (README's "Exit codes" section mirrors it)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    USER_ERROR = 1
    USAGE = 2
    INTERNAL = 3
    MISSING_PACKAGE = 4  # an optional package the command needs (TensorRT for build) is missing
    INTERRUPTED = 130
    BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader went away


EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.USER_ERROR: "a bad input (checkpoint, folder, file, tensor, value): one line"
    " `error: <file or tensor>: expected <x>, got <y>` on stderr",
    ExitCode.USAGE: "a bad command line (unknown option, a value outside the choices, a missing argument):"
    " the command's usage and the problem on stderr",
    ExitCode.INTERNAL: "a bug in awq2trt: one line naming the exception (`--verbose` shows the traceback)",
    ExitCode.MISSING_PACKAGE: "an optional package the command needs is not installed (TensorRT for `build`):"
    " one line naming what to install",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C or SIGTERM); temporary outputs were removed",
    ExitCode.BROKEN_PIPE: "standard output was closed early (e.g. `| head`); the command stopped quietly",
}
