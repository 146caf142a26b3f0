"""Write outputs all-or-nothing: build in a hidden sibling folder (or file), then rename into place.

An interrupted run (Ctrl-C, a crash, a kill) leaves no half-written output under the user's name; the
hidden temporary folder is removed on any exception; one left by a killed process (``.<name>.partial-<pid>-*``)
is removed by the next run that writes the same output.  A previous output (``--force``) is swapped for the
new one in a single rename, so a kill at any instant leaves the whole old output or the whole new one; the
output's lock (``awq2trt.output_lock``) keeps a second run from writing the same path meanwhile.  A full disk
(or a file-size limit) is one error line, with the temporary files removed.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from awq2trt.errors import Awq2TrtError
from awq2trt.output_lock import output_lock


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
    """Clean up after runs that were killed outright (SIGKILL cannot be caught).

    A temporary ``.<name>.partial-<pid>-*`` folder or file whose writer is gone is deleted.  A previous output
    moved aside (``.<name>.old-<pid>-*``, only where the filesystem cannot exchange two names) by a run killed
    before the new one took its place is put back when *name* is missing: it is the complete previous output.
    """
    for kind in ("partial", "old"):
        for candidate in sorted(parent.glob(f".{name}.{kind}-*")):
            pid_text = candidate.name.removeprefix(f".{name}.{kind}-").split("-", 1)[0]
            if not pid_text.isdigit() or _alive(int(pid_text)):
                continue
            if kind == "old" and not (parent / name).exists() and candidate.is_dir():
                os.replace(candidate, parent / name)
            elif candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                candidate.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False  # its writer is gone
    except PermissionError:
        return True  # alive, someone else's
    return True


def disk_full(error: BaseException) -> str | None:
    """The reason when *error* (or what caused it) is a full disk or a file-size limit, else None.

    Writers wrap the OSError differently (safetensors reports ``os error 28`` inside its own exception type), so
    the message is checked as well as the errno.
    """
    seen: BaseException | None = error
    for _ in range(8):  # the cause chain; bounded, as a chain can loop
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in _FULL_DISK:
            return os.strerror(seen.errno)
        text = str(seen)
        if isinstance(seen, OSError) and _SHORT_WRITE.search(text):  # numpy's tofile: no errno, only the counts
            return "a short write (a full disk or a file-size limit)"
        for code in _FULL_DISK:
            if f"os error {code})" in text or os.strerror(code) in text:
                return os.strerror(code)
        seen = seen.__cause__ or seen.__context__
    return None


_FULL_DISK = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")


def _full_disk_error(path: Path, reason: str) -> Awq2TrtError:
    return Awq2TrtError(path, expected="room to write the output (nothing was left behind)", got=reason)


def write_file_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write *data* to *path* through a temporary sibling and a rename: readers see the old file or the new one."""
    remove_stale_partials(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.partial-{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; give the user's usual permissions
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if (reason := disk_full(error)) is not None:
            raise _full_disk_error(path, reason) from None
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
    """Yield a temporary folder; on success it replaces *path*, on failure it is deleted.

    The output's lock (`output_lock`) is held throughout, so a second run into the same path fails at once
    instead of racing this one to the rename.
    """
    final = Path(path)
    check_output_dir(final, force=force)
    parent = final.resolve().parent
    with output_lock(final):
        check_output_dir(final, force=force)  # again, under the lock: another run may have finished meanwhile
        remove_stale_partials(parent, final.name)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{os.getpid()}-", dir=parent))
        except OSError as exc:
            raise Awq2TrtError(parent, expected="a writable folder", got=exc.strerror) from exc
        try:
            yield tmp
            _apply_umask(tmp)
            _put_in_place(tmp, final)
        except BaseException as error:
            shutil.rmtree(tmp, ignore_errors=True)
            if (reason := disk_full(error)) is not None:
                raise _full_disk_error(final, reason) from None
            raise


def _put_in_place(tmp: Path, final: Path) -> None:
    """Make *tmp* the output.  A previous output is swapped out in one step where the filesystem can (Linux
    renameat2 RENAME_EXCHANGE), so at every instant *final* is the whole old output or the whole new one; a kill
    after the swap leaves the old one under the temporary name, which the next run removes."""
    if not final.exists() or (final.is_dir() and not any(final.iterdir())):
        os.replace(tmp, final)  # a rename onto an empty folder replaces it
        return
    if _exchange(tmp, final):
        shutil.rmtree(tmp, ignore_errors=True)  # now the previous output
        return
    # No exchange here: move the old output aside first.  A kill between the two renames leaves no *final*, and
    # remove_stale_partials puts the aside copy back.
    aside = final.parent / f".{final.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    os.replace(final, aside)
    os.replace(tmp, final)
    shutil.rmtree(aside, ignore_errors=True)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two names atomically; False where the C library or the filesystem cannot."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)
