"""Atomic writes: success renames, failure leaves nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeres._io import atomic_dir, atomic_path, sha256_file, write_text_atomic
import shutil

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


# ---- replacing folders, signals, ownership ---------------------------------------------------------------

import errno  # noqa: E402
import signal  # noqa: E402

import edgeres._io as io_module  # noqa: E402
from edgeres import _interrupt  # noqa: E402
from edgeres._interrupt import Interrupted, handled_signals  # noqa: E402
from edgeres._io import (  # noqa: E402
    OUTPUT_MARKER,
    atomic_files,
    check_not_input,
    check_output_folder,
    exchange_paths,
    marker_text,
    output_dir,
    output_command,
)


def _tree(folder: Path) -> dict[str, str] | None:
    return None if not folder.exists() else {p.name: p.read_text() for p in sorted(folder.iterdir())}


def _old_folder(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("old a")
    (out / "b").write_text("old b")
    return out


def _signal_at(monkeypatch: pytest.MonkeyPatch, name: str, signum: int) -> list[str]:
    """Make ``edgeres._io``'s checkpoint ``name`` send ``signum`` to this process; returns the points reached."""
    reached: list[str] = []

    def fake(point: str) -> None:
        reached.append(point)
        if point == name:
            os.kill(os.getpid(), signum)
            for _ in range(100):  # the handler runs between bytecodes: give it some
                pass

    monkeypatch.setattr(io_module, "checkpoint", fake)
    return reached


def test_exchange_paths_swaps_two_folders(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("in a")
    if not exchange_paths(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available on this kernel/filesystem")
    assert (b / "x").read_text() == "in a" and not (a / "x").exists(), "the two folders traded places in one call"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize(
    "point, exchange, expected",
    [
        ("atomic_dir:staged", True, "old"),  # complete but not committed: the earlier folder stays
        ("atomic_dir:exchanged", True, "new"),  # inside the commit: deferred until the new folder is in place
        ("atomic_dir:aside", False, "new"),  # two-rename fallback, between the renames: deferred too
    ],
)
def test_atomic_dir_under_signals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int, point: str,
                                  exchange: bool, expected: str) -> None:
    out = _old_folder(tmp_path)
    if not exchange:
        monkeypatch.setattr(io_module, "_renameat2_fn", [None])
    reached = _signal_at(monkeypatch, point, signum)
    with pytest.raises(Interrupted) as caught:
        with handled_signals():
            with io_module.atomic_dir(out) as tmp:
                (tmp / "c").write_text("new c")
    assert caught.value.signum == signum, "the signal that arrived is the one reported"
    assert point in reached, f"the case reached {point}: {reached}"
    want = {"a": "old a", "b": "old b"} if expected == "old" else {"c": "new c"}
    assert _tree(out) == want, f"OUT must be the complete {expected} folder: {_tree(out)}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], f"nothing beside OUT: {list(tmp_path.iterdir())}"
    assert signal.getsignal(signal.SIGTERM) is not _interrupt._handler, "previous handlers are restored"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_while_writing_leaves_earlier_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int) -> None:
    """A signal in the middle of the staged writes (atomic_files, atomic_path) leaves every earlier file as it was."""
    out = _old_folder(tmp_path)
    with pytest.raises(Interrupted):
        with handled_signals():
            with atomic_files(out) as staging:
                (staging / "a").write_text("new a")
                os.kill(os.getpid(), signum)
                for _ in range(100):
                    (staging / "b").write_text("new b")
    assert _tree(out) == {"a": "old a", "b": "old b"}, f"no file of the new set was moved in: {_tree(out)}"
    _signal_at(monkeypatch, "atomic_path:staged", signum)
    with pytest.raises(Interrupted):
        with handled_signals():
            io_module.write_text_atomic(out / "a", "new a")
    assert _tree(out) == {"a": "old a", "b": "old b"}, "a staged file is not renamed after a signal"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "nothing beside OUT"


def test_atomic_files_moves_the_set_together(tmp_path: Path) -> None:
    out = _old_folder(tmp_path)
    with atomic_files(out) as staging:
        (staging / "a").write_text("new a")
        (staging / "c").write_text("new c")
        assert (out / "a").read_text() == "old a" and not (out / "c").exists(), "nothing moves in before the end"
    assert _tree(out) == {"a": "new a", "b": "old b", "c": "new c"}, f"the set replaced its names only: {_tree(out)}"
    new = tmp_path / "fresh"
    with atomic_files(new) as staging:
        (staging / "x").write_text("x")
    assert _tree(new) == {"x": "x"}, "a folder that did not exist appears whole"


def test_cleanups_run_when_a_command_unwinds(tmp_path: Path) -> None:
    leftover = tmp_path / "leftover"
    leftover.mkdir()
    with pytest.raises(RuntimeError):
        with handled_signals():
            _interrupt.register(lambda: leftover.rmdir())
            raise RuntimeError("unwind")
    assert not leftover.exists(), "a registered cleanup runs when the command fails"


def test_ignored_signals_stay_ignored() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with handled_signals():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN, "an ignored SIGTERM (nohup) stays ignored"
            assert signal.getsignal(signal.SIGINT) is _interrupt._handler, "SIGINT unwinds"
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN, "restored"
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_enospc_while_staging_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path.write_bytes

    def full_disk(self: Path, data: bytes) -> int:
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    out = _old_folder(tmp_path)
    monkeypatch.setattr(Path, "write_bytes", full_disk)
    for target in (out, tmp_path / "new"):
        with pytest.raises(OutputPathError, match="No space left on device"):
            with atomic_files(target) as staging:
                (staging / "a").write_bytes(b"new a")
        with pytest.raises(OutputPathError, match="No space left on device"):
            with io_module.atomic_dir(target) as staging:
                (staging / "a").write_bytes(b"new a")
        with pytest.raises(OutputPathError, match="No space left on device"):
            io_module.write_bytes_atomic(target / "a" if target.exists() else tmp_path / "f", b"new a")
    assert _tree(out) == {"a": "old a", "b": "old b"}, "the earlier files are untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], f"nothing else left: {list(tmp_path.iterdir())}"


def test_output_folder_ownership(tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    weights.write_text("weights")
    assert check_output_folder(tmp_path / "new", "build") == tmp_path / "new", "a missing folder is fine"
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty", "build")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "manifest.json").write_text('{"format": "edgeres-bundle/1"}')  # any manifest.json is no proof
    with pytest.raises(OutputPathError, match=r"mine exists and is not an edgeres output .*--force"):
        check_output_folder(mine, "build")
    assert check_output_folder(mine, "build", force=True) == mine, "--force replaces a foreign folder"
    (mine / OUTPUT_MARKER).write_text(marker_text("calibrate"))
    assert output_command(mine) == "calibrate", "the marker names its command"
    with pytest.raises(OutputPathError, match=r"is an `edgeres calibrate` output, not an earlier `edgeres build`"):
        check_output_folder(mine, "build")
    check_output_folder(mine, "calibrate")
    (mine / OUTPUT_MARKER).write_text("[" * 5000)
    assert output_command(mine) is None, "a malformed marker proves nothing"
    shutil.copy(weights, mine / "w.pth")
    (mine / OUTPUT_MARKER).write_text(marker_text("build"))
    for inputs in ([mine / "w.pth"], [mine], [tmp_path / "link"]):
        if inputs == [tmp_path / "link"]:
            (tmp_path / "link").symlink_to(mine / "w.pth")  # an input reached through a link still counts
        for force in (False, True):
            with pytest.raises(OutputPathError, match="holds an input of this command .* not even with --force"):
                check_output_folder(mine, "build", inputs=inputs, force=force)
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputPathError, match="is a file"):
        check_output_folder(tmp_path / "file", "build")


def test_force_never_replaces_the_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "notes").write_text("keep")
    monkeypatch.chdir(tmp_path)
    for path in (tmp_path, Path(".")):
        with pytest.raises(OutputPathError, match="never replaced, not even with --force"):
            check_output_folder(path.resolve() if path == Path(".") else path, "build", force=True)


def test_output_dir_writes_the_marker_and_refuses_foreign_folders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with output_dir(out, "calibrate") as tmp:
        (tmp / "x").write_text("1")
    assert output_command(out) == "calibrate" and (out / "x").read_text() == "1", "marker and content"
    with output_dir(out, "calibrate") as tmp:
        (tmp / "y").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "y"], "an own earlier output is replaced whole"
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "model.onnx").write_text("the user's")
    with pytest.raises(OutputPathError, match="--force"):
        with output_dir(tmp_path / "user", "calibrate"):
            pass
    assert (tmp_path / "user" / "model.onnx").read_text() == "the user's", "a foreign folder is untouched"


def test_output_file_that_is_an_input_is_refused(tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    weights.write_text("w")
    with pytest.raises(OutputPathError, match="is an input of this command"):
        check_not_input(weights, [weights])
    (tmp_path / "alias").symlink_to(weights)
    with pytest.raises(OutputPathError, match="is an input of this command"):
        check_not_input(tmp_path / "alias", [weights])
    check_not_input(tmp_path / "other.onnx", [weights, "resnet50"])  # an arch name is not a file
