"""One writer per output: an exclusive ``flock`` on ``.<name>.lock`` beside the output, held for the whole run.

Two runs into one folder at once would otherwise both pass the "is it empty?" check, both work for minutes,
and the second rename would silently replace the first's result (or, with ``--force``, interleave with it).
With the lock the second run stops at once with one error line naming the run that holds it.

The lock is re-entrant within a process (a command takes it for its whole run, and the atomic writer it calls
takes it again), and the kernel drops it when its holder dies, so a SIGKILLed run never blocks the next one.
The file is removed on release; a run that opened it just before then finds its inode gone and tries again.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from awq2trt.errors import Awq2TrtError

_ATTEMPTS = 20  # only lost when another run releases the lock between our open and our flock
_held: dict[Path, int] = {}  # lock file -> how many nested holders in this process
_guard = threading.Lock()


def lock_path(output: str | Path) -> Path:
    """Where the lock of *output* lives: a hidden file beside it, named after it."""
    final = Path(output)
    return final.resolve().parent / f".{final.name}.lock"


@contextmanager
def output_lock(output: str | Path) -> Iterator[Path]:
    """Hold the lock of *output* for the block; ``Awq2TrtError`` at once if another run holds it."""
    path = lock_path(output)
    with _guard:
        nested = path in _held
        if nested:
            _held[path] += 1
    if nested:
        try:
            yield path
        finally:
            with _guard:
                _held[path] -= 1
        return
    fd = _acquire(Path(output), path)
    with _guard:
        _held[path] = 1
    try:
        yield path
    finally:
        with _guard:
            del _held[path]
        # Unlinked while still held: a run that opens the name after this sees a new file (see _acquire).
        path.unlink(missing_ok=True)
        os.close(fd)


def _acquire(output: Path, path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Awq2TrtError(path.parent, expected="a creatable folder", got=exc.strerror) from None
    for _ in range(_ATTEMPTS):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise Awq2TrtError(path.parent, expected="a writable folder", got=exc.strerror) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise Awq2TrtError(
                output,
                expected="no other run writing this output",
                got=f"another run{holder} holds {path.name}; wait for it, or choose another output",
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())  # for the error message of a run that finds it held
            return fd
        os.close(fd)  # the holder released and removed it between our open and our flock: try the new file
    raise Awq2TrtError(output, expected="no other run writing this output", got="the lock kept changing hands")


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""
