"""The `awq2trt` command line: one module per command under `commands/`, shared options in `options`.

``awq2trt.cli:main`` is the console script's entry point; ``python -m awq2trt`` runs the same.
"""

from awq2trt.cli.app import build_parser, main
from awq2trt.cli.exit_codes import EXIT_CODE_MEANINGS, ExitCode

__all__ = ["EXIT_CODE_MEANINGS", "ExitCode", "build_parser", "main"]
