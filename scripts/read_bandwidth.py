"""The read-bandwidth probe of scripts/bench_kernels.py and scripts/bench_decode.py: the bound a memory-bound
decode kernel is measured against, probed in the same run as the kernels.

`ReadProbe(bytes, threads).measure()` is one pass of *threads* threads each summing one slice of a buffer far
past the last-level cache, in GB/s.  The loop is C (read_bandwidth.c, built once into the cache folder with
gcc -O3 -march=native); without gcc it falls back to numpy's reduction, which reads markedly slower on this CPU
(8.8 against about 14 GB/s), and `kind` says which one ran.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).with_name("read_bandwidth.c")


def _build() -> Any:
    """The compiled probe, or None where it cannot be built (no gcc)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "awq2trt" / "read-bandwidth"
    library = cache / "libread_bandwidth.so"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if not library.is_file() or library.stat().st_mtime < SOURCE.stat().st_mtime:
            command = ["gcc", "-O3", "-march=native", "-shared", "-fPIC", "-pthread", str(SOURCE), "-o", str(library)]
            subprocess.run(command, check=True, capture_output=True)
        handle = ctypes.CDLL(str(library))
    except (OSError, subprocess.CalledProcessError):
        return None
    handle.read_probe_init.argtypes, handle.read_probe_init.restype = [ctypes.c_size_t], ctypes.c_int
    handle.read_probe_gbps.argtypes, handle.read_probe_gbps.restype = [ctypes.c_int], ctypes.c_double
    return handle


class ReadProbe:
    """One buffer of *size* bytes read by *threads* threads per `measure` call."""

    def __init__(self, size: int, threads: int) -> None:
        self.size, self.threads = size, threads
        self._c = _build()
        if self._c is not None and self._c.read_probe_init(size) != 0:
            self._c = None
        self._numpy: Any = None
        self.kind = f"{threads} threads, C loop" if self._c is not None else f"{threads} threads, numpy (no gcc)"

    def measure(self) -> float:
        """GB/s of one pass over the buffer."""
        if self._c is not None:
            return float(self._c.read_probe_gbps(self.threads))
        import numpy as np

        if self._numpy is None:
            self._numpy = np.ones(self.size // 8, np.float64)
        parts = np.array_split(self._numpy, self.threads)
        workers = [threading.Thread(target=part.sum) for part in parts]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return self._numpy.nbytes / (time.perf_counter() - start) / 1e9
