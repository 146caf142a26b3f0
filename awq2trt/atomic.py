"""Write outputs all-or-nothing: build in a hidden sibling folder (or file), then rename into place.

An interrupted run (Ctrl-C, a crash, a kill) leaves no half-written output under the user's name; the
hidden temporary folder is removed on any exception; one left by a killed process (``.<name>.partial-<pid>-*``)
is removed by the next run that writes the same output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from awq2trt.errors import Awq2TrtError


def check_output_dir(path: Path, *, force: bool) -> None:
    """Refuse a non-empty existing output (or a file in its place) unless *force*."""
    if path.exists() and not path.is_dir():
        raise Awq2TrtError(path, expected="a folder path for the output", got="an existing file")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise Awq2TrtError(
            path, expected="an empty or new output folder", got="a non-empty folder (pass --force to replace it)"
        )
    parent = path.resolve().parent
    if parent.exists() and not parent.is_dir():
        raise Awq2TrtError(parent, expected="a folder to hold the output", got="a file")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Awq2TrtError(parent, expected="a creatable folder", got=exc.strerror) from exc
    if not os.access(parent, os.W_OK):
        raise Awq2TrtError(parent, expected="a writable folder", got="no write permission")


def remove_stale_partials(parent: Path, name: str) -> None:
    """Delete temporary folders left by runs that were killed outright (SIGKILL cannot be caught)."""
    for candidate in parent.glob(f".{name}.partial-*"):
        pid_text = candidate.name.removeprefix(f".{name}.partial-").split("-", 1)[0]
        if not pid_text.isdigit() or not candidate.is_dir():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(candidate, ignore_errors=True)  # its writer is gone
        except PermissionError:
            pass  # alive, someone else's


def write_file_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write *data* to *path* through a temporary sibling and a rename: readers see the old file or the new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.partial-{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; give the user's usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _apply_umask(folder: Path) -> None:
    """mkdtemp (and some writers) create owner-only entries; give the output the user's usual permissions."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


@contextmanager
def atomic_output_dir(path: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces *path*, on failure it is deleted."""
    final = Path(path)
    check_output_dir(final, force=force)
    parent = final.resolve().parent
    remove_stale_partials(parent, final.name)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise Awq2TrtError(parent, expected="a writable folder", got=exc.strerror) from exc
    try:
        yield tmp
        _apply_umask(tmp)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=parent))
            os.replace(final, old / "x")
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
