"""Fuzz config.json and its quantization_config: *data* is one byte choosing a fixture, then config.json.

The chosen fixture's weights sit beside the config (linked, never copied), so a config that parses goes on
through format detection, every Linear's layout and group size, and the architecture checks --check runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz._harness import FIXTURES, fresh_folder, fuzz, instrumented, our_error_only

with instrumented(__name__):
    from awq2trt.checkpoint import describe_checkpoint, open_checkpoint
    from awq2trt.modeling.loader import check_model_config, check_model_type

NAME = "config"
FIXTURE_NAMES = tuple(sorted(p.name for p in FIXTURES.iterdir() if (p / "model.safetensors").is_file()))


def one_input(data: bytes) -> None:
    if not data:
        return
    fixture = FIXTURES / FIXTURE_NAMES[data[0] % len(FIXTURE_NAMES)]
    folder = fresh_folder(NAME)
    (folder / "model.safetensors").symlink_to(fixture / "model.safetensors")
    (folder / "config.json").write_bytes(data[1:])
    with our_error_only():
        ckpt = open_checkpoint(folder)
        describe_checkpoint(ckpt)
        check_model_type(ckpt)
        check_model_config(ckpt)


if __name__ == "__main__":
    fuzz(one_input, NAME)
