"""The `awq2trt` command line: one module per command under `commands/`, shared options in `options`.

``awq2trt.cli:main`` is the console script's entry point; ``python -m awq2trt`` runs the same.
"""

from awq2trt.cli.app import build_parser, main
from awq2trt.cli.exit_codes import EXIT_CODE_MEANINGS, ExitCode

# The names the command line exported before it was a package, for scripts and tests that use them.
EXIT_USER_ERROR = ExitCode.USER_ERROR
EXIT_USAGE = ExitCode.USAGE
EXIT_INTERNAL = ExitCode.INTERNAL
EXIT_INTERRUPTED = ExitCode.INTERRUPTED

__all__ = [
    "EXIT_CODE_MEANINGS",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "EXIT_USER_ERROR",
    "ExitCode",
    "build_parser",
    "main",
]
