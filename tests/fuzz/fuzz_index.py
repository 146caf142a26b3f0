"""Fuzz the shard index: *data* is model.safetensors.index.json beside two small shards.

Next to the checkpoint folder sit files it must never reach (a shard in a sibling folder, a secret, the
parent's own files); the harness records every file opened and fails on any outside the folder, except the
blob store its one symlinked shard points into (the Hugging Face cache layout, which stays allowed).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz._harness import fuzz, instrumented, our_error_only, scratch
from tests.open_audit import OpenAudit

with instrumented(__name__):
    import numpy as np
    from safetensors.numpy import save_file

    from awq2trt.checkpoint.weight_files import WeightFiles

NAME = "index"
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
LINKED = "model-linked.safetensors"  # a symlink into ../blobs, as the Hugging Face cache stores files


def _shard(path: Path, prefix: str) -> None:
    save_file({f"{prefix}.weight": np.arange(4, dtype=np.float16), f"{prefix}.bias": np.ones(2, np.float32)}, path)


def _layout() -> tuple[Path, Path]:
    """The folder (built once per process) and the blob store its link points into."""
    root = scratch(NAME)
    folder, blobs, outside = root / "checkpoint", root / "blobs", root / "outside"
    if not folder.is_dir():
        for where in (folder, blobs, outside):
            where.mkdir()
        _shard(folder / SHARDS[0], "a")
        _shard(folder / SHARDS[1], "b")
        _shard(blobs / "0123abcd", "c")
        (folder / LINKED).symlink_to(Path("..") / "blobs" / "0123abcd")
        _shard(outside / "model.safetensors", "x")
        _shard(root / "model.safetensors", "y")
        (root / "secret.safetensors").write_bytes(b"not for reading")
        (folder / "config.json").write_text("{}")
    return folder, blobs


def one_input(data: bytes) -> None:
    folder, blobs = _layout()
    (folder / "model.safetensors.index.json").write_bytes(data)
    with OpenAudit() as audit, our_error_only():
        weights = WeightFiles(folder)
        for name in weights.names():
            weights.get(name)
    outside = audit.outside(folder, allowed=(blobs,))
    assert not outside, f"read outside the checkpoint folder: {outside}"


if __name__ == "__main__":
    fuzz(one_input, NAME)
