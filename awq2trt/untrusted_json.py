"""Read the small JSON files of a downloaded folder (config.json, the shard index, tokenizer_config.json).

These files come from strangers, so reading one is bounded before it starts: a file larger than *max_bytes*
is refused from its size alone (never read into memory), nesting deep enough to exhaust json's recursion
becomes our error, and where a repeated key would silently change the meaning (json keeps the last one) the
caller can ask for it to be refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from awq2trt.errors import Awq2TrtError

# The largest real config.json / index / tokenizer_config.json are well under 1 MB; 64 MB leaves room for
# any honest file while keeping a hostile one from costing gigabytes.
MAX_JSON_BYTES = 64 * 1024 * 1024


def refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that raises on a repeated key instead of keeping the last one."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def parse_json(raw: bytes | str, where: str | Path, *, unique_keys: bool = False) -> Any:
    """*raw* parsed as JSON; every way it can be wrong is an `Awq2TrtError` naming *where*."""
    try:
        return json.loads(raw, object_pairs_hook=refuse_duplicate_keys if unique_keys else None)
    except _DuplicateKey as exc:
        raise Awq2TrtError(where, expected="each JSON key once", got=f"{exc.key!r} repeated") from None
    except UnicodeDecodeError:
        raise Awq2TrtError(where, expected="UTF-8 JSON", got="undecodable bytes") from None
    except json.JSONDecodeError as exc:
        raise Awq2TrtError(
            where, expected="valid JSON", got=f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:  # json recurses per nesting level: a hostile file can exhaust the stack
        raise Awq2TrtError(where, expected="JSON nested at most ~1000 levels", got="deeper nesting") from None


def read_json_file(path: Path, *, max_bytes: int = MAX_JSON_BYTES, unique_keys: bool = False) -> Any:
    """The JSON file at *path*, refused unread when it is larger than *max_bytes*."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise Awq2TrtError(path, expected=f"a JSON file of at most {max_bytes} bytes", got=f"{size} bytes")
        with path.open("rb") as fh:
            # read(n) allocates n bytes up front: ask for what the file holds (+1 to see it grew), not the cap.
            raw = fh.read(size + 1)
    except OSError as exc:
        raise Awq2TrtError(path, expected="a readable JSON file", got=exc.strerror or type(exc).__name__) from None
    if len(raw) > size:  # it grew between stat and read: what it holds now is not what was checked
        raise Awq2TrtError(path, expected="a JSON file that is not being written", got="a file that grew")
    return parse_json(raw, path, unique_keys=unique_keys)
