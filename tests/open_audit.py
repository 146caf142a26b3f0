"""Record every file a block of code opens, through Python's audit hooks (PEP 578).

Containment tests use it to prove that a hostile checkpoint or exported folder made us read nothing outside
it: ``with OpenAudit() as audit: ...`` then ``audit.outside(folder, allowed=...)`` lists the offending paths.

An audit hook cannot be removed once installed, so one hook is installed on first use and records only while
an `OpenAudit` block is active.  It sees ``open`` events from Python code and from C extensions that go
through Python's I/O (``io.open``, ``os.open``); native libraries that call ``fopen`` themselves (ONNX Runtime's
external-data loader) are not seen, which is why the runtime must check those paths before handing them over.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

_recorders: list[OpenAudit] = []
_installed = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _recorders or event not in ("open", "os.open"):
        return
    target = args[0]
    if isinstance(target, int):  # an already-open file descriptor: nothing new was reached
        return
    try:
        path = os.fsdecode(target)
    except TypeError:
        return
    for recorder in _recorders:
        recorder.opened.append(path)


class OpenAudit:
    """Context manager collecting the paths opened inside it (absolute, as the caller named them)."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    def __enter__(self) -> OpenAudit:
        global _installed
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True
        _recorders.append(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        _recorders.remove(self)

    def outside(self, *roots: str | Path, allowed: tuple[str | Path, ...] = ()) -> list[str]:
        """Opened paths that resolve outside every one of *roots* and are not under an *allowed* prefix.

        Paths are resolved (symlinks followed) before the comparison, so ``folder/../secret`` and a symlink to
        a file elsewhere both count as outside.  What any run reads is always allowed: the Python installation
        and its site-packages, awq2trt's own source (late imports), /proc, /dev and /sys.
        """
        keep = [Path(r).resolve() for r in roots]
        ok = [Path(a).resolve() for a in allowed] + [Path(p).resolve() for p in _system_prefixes()]
        offending = []
        for name in self.opened:
            path = Path(name)
            if not path.is_absolute():
                path = Path.cwd() / path
            resolved = path.resolve()
            if any(resolved.is_relative_to(root) for root in keep + ok):
                continue
            offending.append(name)
        return offending


def _system_prefixes() -> list[str]:
    """Where an interpreter legitimately reads during any run (never /etc or the repository's test data)."""
    import awq2trt

    package = str(Path(awq2trt.__file__).resolve().parent)
    return sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, package, "/proc", "/dev", "/sys"})
