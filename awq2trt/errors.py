"""The one user-facing error type.

Every mistake a user can make (a bad checkpoint, a wrong option, an unwritable path) is raised as
`Awq2TrtError`.  The CLI prints it as a single line and exits non-zero; anything else that escapes is
a bug in awq2trt and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path

LISTED_FILES = 6  # enough to recognize what a folder is, short enough for one error line


class Awq2TrtError(Exception):
    """A user error: names *where* it happened and what was expected there.

    The message always reads ``<where>: expected <expected>, got <got>`` when both halves are known,
    or ``<where>: <detail>`` otherwise, so a one-line CLI report is always enough to act on.
    """

    def __init__(
        self,
        where: str | Path,
        *,
        expected: str | None = None,
        got: object = None,
        detail: str | None = None,
    ) -> None:
        self.where = str(where)
        self.expected = expected
        self.got = got
        self.detail = detail
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = []
        if self.expected is not None:
            parts.append(f"expected {self.expected}, got {self.got}")
        if self.detail:
            parts.append(self.detail)
        text = f"{self.where}: " + "; ".join(parts) if parts else self.where
        return " ".join(text.split())  # one line, whatever the wrapped library said

    def __str__(self) -> str:
        return self.message


class MissingPackageError(Awq2TrtError):
    """An optional package a command needs (TensorRT for `awq2trt build`) is not installed, or not a usable
    version: the environment is the problem, not the input, so the CLI exits with its own code."""


def folder_listing(folder: Path, limit: int = LISTED_FILES) -> str:
    """The first names in a folder, saying how many more there are rather than cutting silently."""
    names = sorted(p.name for p in folder.iterdir())
    if not names:
        return "nothing"
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
