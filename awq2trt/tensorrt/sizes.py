"""Byte sizes as people write them (``--workspace 4GiB``): binary units, decimal ones, or plain bytes."""

from __future__ import annotations

import math
import re

# KiB/MiB/GiB/TiB and the bare K/M/G/T are powers of 1024 (what memory is sized in); KB/MB/GB/TB powers of 1000.
_BINARY = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_SIZE = re.compile(r"(?P<number>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>(?P<prefix>[kmgt])?(?P<binary>i)?(?P<b>b)?)", re.I)
SIZE_FORMS = "a size such as 4GiB, 512MiB, 2G or 1073741824 (bytes)"


def parse_size(text: str) -> int:
    """``4GiB`` -> 4294967296.  Raises ``ValueError`` (saying which forms are accepted) for anything else."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or (match["binary"] and not match["prefix"]):
        raise ValueError(f"expected {SIZE_FORMS}, got {text!r}")
    prefix = (match["prefix"] or "").lower()
    if not prefix:
        factor = 1
    elif match["b"] and not match["binary"]:
        factor = _DECIMAL[prefix]  # "GB": decimal, as disks are labelled
    else:
        factor = _BINARY[prefix]  # "GiB" or "G"
    value = float(match["number"]) * factor
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"expected a size of at least 1 byte, got {text!r}")
    return int(value)
