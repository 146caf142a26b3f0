"""All-or-nothing outputs: the temporary folder becomes the output only on success."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from awq2trt.atomic import atomic_output_dir
from awq2trt.errors import Awq2TrtError


def test_success_renames_with_normal_permissions(tmp_path: Path) -> None:
    with atomic_output_dir(tmp_path / "out") as tmp:
        fd = os.open(tmp / "data.bin", os.O_CREAT | os.O_WRONLY, 0o600)  # as some writers create files
        os.close(fd)
    out = tmp_path / "out"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == 0o777 & ~umask
    assert ((out / "data.bin").stat().st_mode & 0o777) == 0o666 & ~umask


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_output_dir(tmp_path / "out") as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force_and_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(Awq2TrtError, match="--force"), atomic_output_dir(out):
        pass
    with atomic_output_dir(out, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_file_in_the_way_and_unwritable_parent(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(Awq2TrtError, match="existing file"), atomic_output_dir(tmp_path / "file"):
        pass
    # A parent that cannot hold folders (a file) is unwritable even for root.
    with pytest.raises(Awq2TrtError, match="file"), atomic_output_dir(tmp_path / "file" / "out"):
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
