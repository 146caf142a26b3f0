"""Fuzz ``awq2trt.json`` as a runtime reads it (``Sidecar.read``): any bytes give a checked sidecar or one
``Awq2TrtError``; anything else escaping is a bug.  A sidecar that reads must also survive the way the
runtimes use it: its cache names, and a write / read round trip to an equal object.

``python tests/fuzz/fuzz_sidecar.py tests/fuzz/corpus/sidecar -max_total_time=240 -rss_limit_mb=2048`` runs
atheris; ``one_input`` is what the corpus replay test calls for every file of ``corpus/sidecar/``.
"""

from __future__ import annotations

import sys
import tempfile
from functools import cache
from pathlib import Path

from awq2trt.errors import Awq2TrtError
from awq2trt.sidecar import SIDECAR_FILE, Sidecar


@cache
def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="fuzz-sidecar-"))


def one_input(data: bytes) -> None:
    folder = _folder()
    (folder / SIDECAR_FILE).write_bytes(data)
    try:
        sidecar = Sidecar.read(folder)
    except Awq2TrtError:
        return
    assert len(sidecar.past_names()) == 2 * sidecar.num_layers
    assert len(set(sidecar.present_names())) == 2 * sidecar.num_layers
    sidecar.write(folder)
    again = Sidecar.read(folder)
    assert again == sidecar, "a sidecar read back differs from the one written"


def main() -> None:
    import atheris

    atheris.instrument_all()  # the sidecar modules are imported above already, so instrument what is loaded
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
