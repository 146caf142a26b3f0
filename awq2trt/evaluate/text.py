"""Reading evaluation text: one clear error for a missing, unreadable or empty file (no torch needed)."""

from __future__ import annotations

from pathlib import Path

from awq2trt.errors import Awq2TrtError


def read_text(path: str | Path) -> str:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise Awq2TrtError(path, expected="a text file", got="no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise Awq2TrtError(path, expected="a readable UTF-8 text file", got=type(exc).__name__) from exc
    if not text.strip():
        raise Awq2TrtError(path, expected="some text", got="an empty file")
    return text
