"""Calibration text -> token samples [N, L] for the AWQ search.

Default source: the license texts Debian installs in ``/usr/share/common-licenses`` (every distribution
ships them, so the default works offline on a fresh machine), *except* GPL-3, which is the evaluation text
our perplexity figures are quoted on.  Symlinks are skipped (``GPL`` points at GPL-3, ``LGPL`` and ``GFDL`` at
files that are read anyway), and so is any file whose content equals GPL-3, so calibration and evaluation
never share a document.  The files are read in name order and joined by blank lines; on SmolLM2's tokenizer
that is ~44,800 tokens (87 samples of 512).

The text is tokenized once, without special tokens, and cut into consecutive windows of *seqlen* tokens.
When more windows exist than samples are asked for, the samples are spread evenly over the whole text
(rather than the first N windows) so every license contributes.  A user file is plain text, or JSONL with
one ``{"text": ...}`` object per line (``.jsonl`` / ``.json`` suffix, or a first line that parses as one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from awq2trt.errors import Awq2TrtError

LICENSES_DIR = Path("/usr/share/common-licenses")
EVALUATION_TEXT = LICENSES_DIR / "GPL-3"
DEFAULT_SAMPLES = 34
DEFAULT_SEQLEN = 512
DOCUMENT_SEPARATOR = "\n\n"


def default_calibration_files(folder: Path = LICENSES_DIR, exclude: Path = EVALUATION_TEXT) -> list[Path]:
    """The license texts in *folder*, minus *exclude* and anything that is or duplicates it."""
    if not folder.is_dir():
        raise Awq2TrtError(
            folder,
            expected="the license texts every Debian/Ubuntu installs (the default calibration text)",
            got="no such folder",
            detail="pass --calib FILE with your own text",
        )
    excluded_text = exclude.read_bytes() if exclude.is_file() else None
    files = []
    for path in sorted(folder.iterdir()):
        if path.is_symlink() or not path.is_file() or path.resolve() == exclude.resolve():
            continue
        if excluded_text is not None and path.read_bytes() == excluded_text:
            continue
        files.append(path)
    if not files:
        raise Awq2TrtError(folder, expected="license texts other than GPL-3", got="none", detail="pass --calib FILE")
    return files


def _is_jsonl(path: Path, first_line: str) -> bool:
    if path.suffix.lower() in (".jsonl", ".json"):
        return True
    try:
        return isinstance(json.loads(first_line), dict)
    except (ValueError, RecursionError):
        return False


def _jsonl_texts(path: Path, text: str) -> list[str]:
    texts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise Awq2TrtError(
                f"{path}:{number}", expected="one JSON object per line", got=f"invalid JSON ({exc})"
            ) from exc
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise Awq2TrtError(f"{path}:{number}", expected='an object with a "text" string', got=repr(line[:60]))
        texts.append(record["text"])
    return texts


def read_calibration_text(path: str | Path | None) -> str:
    """The calibration text: *path* (plain text or JSONL) or, when None, the default license texts."""
    if path is None:
        return DOCUMENT_SEPARATOR.join(
            p.read_text(encoding="utf-8", errors="replace") for p in default_calibration_files()
        )
    path = Path(path)
    if not path.is_file():
        raise Awq2TrtError(path, expected="a calibration text file (--calib)", got="no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Awq2TrtError(path, expected="a readable UTF-8 calibration file", got=type(exc).__name__) from exc
    if not text.strip():
        raise Awq2TrtError(path, expected="calibration text", got="an empty file")
    if _is_jsonl(path, text.lstrip().split("\n", 1)[0]):
        text = DOCUMENT_SEPARATOR.join(t for t in _jsonl_texts(path, text) if t.strip())
        if not text.strip():
            raise Awq2TrtError(path, expected='calibration text in the "text" fields', got="only empty texts")
    return text


def calibration_samples(
    tokenizer: Any,
    path: str | Path | None = None,
    *,
    samples: int = DEFAULT_SAMPLES,
    seqlen: int = DEFAULT_SEQLEN,
) -> np.ndarray:
    """int64 token ids [samples, seqlen] cut from the calibration text."""
    if samples < 1:
        raise Awq2TrtError("--calib-samples", expected="at least 1", got=samples)
    if seqlen < 2:
        raise Awq2TrtError("--calib-seqlen", expected="at least 2 tokens", got=seqlen)
    ids = np.asarray(tokenizer(read_calibration_text(path), add_special_tokens=False)["input_ids"], dtype=np.int64)
    windows = len(ids) // seqlen
    if windows < samples:
        source = path if path is not None else f"{LICENSES_DIR} (default calibration text)"
        raise Awq2TrtError(
            source,
            expected=f"at least {samples * seqlen} tokens ({samples} samples x {seqlen})",
            got=f"{len(ids)} tokens ({windows} full samples)",
            detail="give more text, or fewer --calib-samples / a shorter --calib-seqlen",
        )
    chosen = np.round(np.linspace(0, windows - 1, samples)).astype(np.int64)
    return np.stack([ids[i * seqlen : (i + 1) * seqlen] for i in chosen])
