"""A TensorRT logger that keeps the build's errors for our one-line report and is quiet unless asked.

TensorRT's own ``trt.Logger`` prints multi-line messages to the terminal; this one prints only with
``--verbose`` (INFO and above, prefixed ``tensorrt:``) and always remembers the errors, so a failed build can
say why in one line.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorrt


class ErrorLog:
    """The messages worth keeping: errors (always), everything at or above the shown level (printed)."""

    def __init__(self, *, verbose: bool) -> None:
        self.verbose = verbose
        self.errors: list[str] = []
        self._lock = threading.Lock()  # TensorRT logs from its own threads

    def add(self, message: str, *, is_error: bool, shown: bool) -> None:
        text = " ".join(message.split())
        with self._lock:
            if is_error:
                self.errors.append(text)
            if shown:
                print(f"tensorrt: {text}", file=sys.stderr, flush=True)

    @property
    def last_error(self) -> str | None:
        with self._lock:
            return self.errors[-1] if self.errors else None


def tensorrt_logger(log: ErrorLog) -> tensorrt.ILogger:
    """An ``ILogger`` forwarding to *log*; made once TensorRT is imported (its base class comes from there)."""
    import tensorrt as trt

    error = trt.ILogger.Severity.ERROR
    info = trt.ILogger.Severity.INFO

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)  # pybind11 trampolines need the base initialised explicitly

        def log(self, severity: tensorrt.ILogger.Severity, msg: str) -> None:
            with contextlib.suppress(Exception):  # nothing may propagate into TensorRT's C++
                log.add(msg, is_error=severity <= error, shown=log.verbose and severity <= info)

    return Logger()
