"""Fuzz the safetensors reader: *data* is a whole model.safetensors (header length, JSON header, tensors).

Every tensor the reader accepts is read back, so a header that passes the checks but misdescribes the bytes
(a shape that disagrees with its range, a range past the end) shows up as a crash here.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz._harness import fresh_folder, fuzz, instrumented, our_error_only

with instrumented(__name__):
    from awq2trt.checkpoint.weight_files import WeightFiles

NAME = "safetensors"


def one_input(data: bytes) -> None:
    folder = fresh_folder(NAME)
    (folder / "model.safetensors").write_bytes(data)
    with our_error_only():
        weights = WeightFiles(folder)
        for name in weights.names():
            array = weights.get(name)
            assert array.nbytes <= len(data) * 2, (name, array.nbytes)  # bf16 widens to fp32: at most 2x
            assert list(array.shape) == weights.shape(name), name


if __name__ == "__main__":
    fuzz(one_input, NAME)
