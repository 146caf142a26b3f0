"""What every ``fuzz_<name>.py`` harness shares.

A harness exposes ``one_input(data: bytes) -> None``: it feeds *data* to one reader and returns when the
reader gave a valid result or an `Awq2TrtError` (our one-line error); anything else escaping is a bug.
pytest replays each harness's corpus (``corpus/<name>/``) through ``one_input`` in-process; run as a
script, a harness hands ``one_input`` to atheris (libFuzzer) with awq2trt's modules instrumented.

Nothing here imports awq2trt at module level: a module imported before ``instrumented()`` would be left
without coverage feedback.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

FUZZ_DIR = Path(__file__).resolve().parent
CORPUS_DIR = FUZZ_DIR / "corpus"
REPO = FUZZ_DIR.parents[1]
FIXTURES = REPO / "tests" / "data" / "peers" / "awq"

_scratch: dict[str, Path] = {}


def instrumented(module_name: str) -> contextlib.AbstractContextManager[Any]:
    """Instrument awq2trt's imports for coverage when the harness runs as the fuzzer, not when pytest replays."""
    if module_name != "__main__":
        return contextlib.nullcontext()
    import atheris

    return atheris.instrument_imports(include=["awq2trt"])


def scratch(name: str) -> Path:
    """A per-process scratch folder (in memory where /dev/shm exists), removed at exit."""
    if name not in _scratch:
        base = "/dev/shm" if Path("/dev/shm").is_dir() else None
        root = Path(tempfile.mkdtemp(prefix=f"awq2trt-fuzz-{name}-", dir=base))
        atexit.register(shutil.rmtree, root, True)
        _scratch[name] = root
    return _scratch[name]


def fresh_folder(name: str, sub: str = "checkpoint") -> Path:
    """An empty folder *sub* inside the scratch area of *name* (emptied anew for every input)."""
    folder = scratch(name) / sub
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    return folder


@contextlib.contextmanager
def our_error_only() -> Iterator[None]:
    """Let a valid result or our one-line error through; re-raise our error only when it is not one line."""
    from awq2trt.errors import Awq2TrtError

    try:
        yield
    except Awq2TrtError as error:
        message = str(error)
        if not message or "\n" in message:
            raise AssertionError(f"not a one-line error: {message!r}") from error


def corpus_of(name: str) -> Path:
    return CORPUS_DIR / name


def fuzz(one_input: Callable[[bytes], None], name: str) -> None:
    """Run *one_input* under atheris with the command line's libFuzzer options (corpus folder defaults to ours)."""
    import atheris

    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):
        argv.append(str(corpus_of(name)))
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
