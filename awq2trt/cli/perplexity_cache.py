"""Perplexity figures the demo has measured before, kept in a small JSON file in the cache.

A figure is keyed by what determines it: the model folder's files (names, sizes, modification times),
the engine that ran it, the text file and the window protocol.  Changing any of them (a re-export, a
re-quantized checkpoint, another text) misses the cache and measures again, as the demo's other cached
steps do.  A missing or unreadable cache file is simply empty.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

CACHE_FILE = "perplexity.json"


class _Measured(Protocol):
    perplexity: float
    tokens_scored: int
    windows: int


@dataclass(frozen=True)
class CachedPerplexity:
    perplexity: float
    tokens_scored: int
    windows: int
    cached: bool  # read from the cache rather than measured in this run


def cached_perplexity(
    cache_root: Path,
    *,
    model: Path,
    engine: str,
    text: Path,
    window: int,
    stride: int,
    measure: Callable[[], _Measured],
) -> CachedPerplexity:
    """The figure for this model, engine, text and protocol: from the cache, or *measure*d and stored."""
    key = _key(model=model, engine=engine, text=text, window=window, stride=stride)
    path = cache_root / CACHE_FILE
    entries = _load(path)
    hit = entries.get(key)
    if isinstance(hit, dict):
        try:
            return CachedPerplexity(float(hit["perplexity"]), int(hit["tokens_scored"]), int(hit["windows"]), True)
        except (KeyError, TypeError, ValueError):
            pass  # a damaged entry is measured again and overwritten
    result = measure()
    fresh = CachedPerplexity(result.perplexity, result.tokens_scored, result.windows, False)
    entry = {k: v for k, v in asdict(fresh).items() if k != "cached"}
    entries[key] = {**entry, "model": str(model), "engine": engine, "text": str(text)}
    _store(path, entries)
    return fresh


def _key(**parts: Any) -> str:
    description = {
        **{k: str(v) for k, v in parts.items()},
        "model_files": _fingerprint(Path(parts["model"])),
        "text_file": _fingerprint(Path(parts["text"])),
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def _fingerprint(path: Path) -> list[tuple[str, int, int]]:
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _store(path: Path, entries: dict[str, Any]) -> None:
    """Write beside the target and rename, so a concurrent or interrupted run never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(entries, fh, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
