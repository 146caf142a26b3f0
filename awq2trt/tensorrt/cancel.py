"""Ctrl-C and SIGTERM during a TensorRT build: ask TensorRT to stop instead of raising inside it.

TensorRT builds with Python's lock released, in C++, for minutes; a KeyboardInterrupt can only be raised once
control is back in Python, and raising it inside a progress callback would abort the build from the wrong
place.  While a build runs, both signals only call *cancel* (the progress monitor then answers "stop" at the
next step) and the builder raises KeyboardInterrupt once TensorRT has returned.  A watcher thread reading the
signal wake-up descriptor calls *cancel* at once, even while the main thread sits inside TensorRT.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def cancel_on_signals(cancel: Callable[[], None]) -> Iterator[None]:
    """Route SIGINT/SIGTERM to *cancel* inside the block (main thread only; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        cancel()

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    old_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    stop = threading.Event()

    def watch() -> None:
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if stop.is_set() or not data:
                return
            if any(byte in SIGNALS for byte in data):
                cancel()

    watcher = threading.Thread(target=watch, name="awq2trt-build-signals", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(old_wakeup)
        stop.set()
        os.write(write_fd, b"\0")  # wake the watcher so it sees stop
        watcher.join(timeout=5)
        os.close(write_fd)
        os.close(read_fd)
        for sig, old in previous.items():
            signal.signal(sig, old)
