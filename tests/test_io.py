"""Atomic writes: success renames, failure leaves nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeres._io import atomic_dir, atomic_path, sha256_file, write_text_atomic
from edgeres.errors import OutputPathError


def test_atomic_path_renames_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("done")
        assert not target.exists(), "the final path appears only after success"
    assert target.read_text() == "done", "content moved into place"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"], "no temporary file left"
    mask = os.umask(0)
    os.umask(mask)
    mode = target.stat().st_mode & 0o777
    assert mode == 0o666 & ~mask, f"outputs get the umask's permissions, not mkstemp's 0600: {oct(mode)}"


def test_atomic_path_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old", "a failed write keeps the previous file"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"], "no temporary file left"


def test_atomic_dir_replaces_only_when_complete(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(ValueError):
        with atomic_dir(out) as tmp:
            (tmp / "b").write_text("2")
            raise ValueError
    assert sorted(p.name for p in out.iterdir()) == ["a"], "failed rebuild leaves the old folder intact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"], "no temporary folder left"
    with atomic_dir(out) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == ["c"], "successful rebuild replaces the folder"


def test_bad_output_paths(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="does not exist"):
        write_text_atomic(tmp_path / "missing" / "x", "")
    with pytest.raises(OutputPathError, match="is a folder"):
        write_text_atomic(tmp_path, "")
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputPathError, match="a file with that name exists"):
        with atomic_dir(tmp_path / "file"):
            pass


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"abc")
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_file(path) == expected, "sha256 of 'abc'"
