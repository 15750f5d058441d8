"""Atomic file and folder writes, and ownership of output folders.

Every output is staged under a temporary name beside its final path and
renamed into place in one step, so after any error or interruption (SIGINT,
SIGTERM: see :mod:`edgeres._interrupt`) the path holds nothing, the complete
earlier result, or the complete new one, and no temporary name is left:

* :func:`atomic_path` / :func:`write_bytes_atomic` / :func:`write_text_atomic`: one file;
* :func:`atomic_dir`: one folder, replacing an earlier one by an atomic exchange
  (Linux ``renameat2(RENAME_EXCHANGE)``), else by two renames that put the old
  folder back if the second fails;
* :func:`atomic_files`: several files that appear in an existing folder together
  (a plan and its sidecar, the calibration outputs);
* :func:`output_dir`: a command's output folder (``build -o``, ``calibrate -o``, config
  folders): :func:`atomic_dir` plus the ownership rule of :func:`check_output_folder`.

Creating, committing and removing temporaries run with SIGINT/SIGTERM deferred
(:func:`edgeres._interrupt.deferred`). Files are not fsync'ed: the guarantee is
for errors and signals, not for power loss. A process killed with SIGKILL can
still leave a ``.NAME.*.tmp`` beside its output.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from edgeres import _interrupt
from edgeres._interrupt import checkpoint, deferred
from edgeres.errors import OutputPathError

#: The marker :func:`output_dir` writes into every output folder: proof that edgeres made it, and with which command.
OUTPUT_MARKER = ".edgeres-output.json"
OUTPUT_MARKER_FORMAT = 1
_MARKER_MAX_BYTES = 4096
#: errno values that mean "the output could not be written" (rather than a bug or a missing input).
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM})
_COMMITTED: list[Path] = []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def committed_outputs() -> tuple[Path, ...]:
    """Every path this process has renamed into place so far (the CLI's "what was written")."""
    return tuple(_COMMITTED)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _remove(path: Path) -> None:
    """Remove a file, a symlink or a folder tree; a missing path is fine."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path, ignore_errors=True)


def check_writable_parent(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path after checking its folder exists and is writable.

    Raises:
        OutputPathError: the folder is missing, not a folder, or read-only.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise OutputPathError(f"cannot write {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise OutputPathError(f"cannot write {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {path}: folder {parent} is read-only")
    if path.is_dir():
        raise OutputPathError(f"cannot write {path}: it is a folder, expected a file path")
    return path


def _check_parent_folder(path: Path) -> Path:
    """The folder that will hold the output folder ``path``, checked to exist and be writable."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputPathError(f"cannot write folder {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write folder {path}: folder {parent} is read-only")
    return parent


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception (or SIGINT/SIGTERM under the CLI) the temporary file is
    removed and ``path`` is untouched.
    """
    path = check_writable_parent(path)
    tmp_path: Path | None = None
    token = None

    def cleanup() -> None:
        with deferred():
            if tmp_path is not None:
                _remove(tmp_path)
            if token is not None:
                _interrupt.unregister(token)

    try:
        with deferred():
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            tmp_path = Path(tmp)
            token = _interrupt.register(lambda: _remove(Path(tmp)))
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        yield tmp_path
        checkpoint("atomic_path:staged")
        with deferred():
            os.replace(tmp_path, path)
            _COMMITTED.append(path)
            _interrupt.unregister(token)
    except OSError as exc:
        cleanup()
        raise OutputPathError(f"cannot write {path}: {_why(exc)}") from exc
    except BaseException:
        cleanup()
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


# ---- replacing a folder in one step -----------------------------------------------------------

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/include/uapi/linux/fs.h: #define RENAME_EXCHANGE (1 << 1)
_SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276}  # arch/x86/entry/syscalls/syscall_64.tbl; include/uapi/asm-generic/unistd.h
_renameat2_fn: list = []


def _renameat2() -> object | None:
    """libc's ``renameat2`` (glibc 2.28+), else a ``syscall`` wrapper on x86_64/aarch64 Linux, else None."""
    if _renameat2_fn:
        return _renameat2_fn[0]
    fn = None
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if hasattr(libc, "renameat2"):
                fn = libc.renameat2
                fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            elif os.uname().machine in _SYS_RENAMEAT2:
                number = _SYS_RENAMEAT2[os.uname().machine]
                syscall = libc.syscall

                def fn(a: int, old: bytes, b: int, new: bytes, flags: int) -> int:
                    return syscall(ctypes.c_long(number), ctypes.c_int(a), ctypes.c_char_p(old), ctypes.c_int(b),
                                   ctypes.c_char_p(new), ctypes.c_uint(flags))
        except (OSError, AttributeError):
            fn = None
    _renameat2_fn.append(fn)
    return fn


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (``renameat2(RENAME_EXCHANGE)``); False where unsupported.

    Raises:
        OSError: the exchange is supported but failed.
    """
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:  # type: ignore[operator]
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):  # old kernel, or a filesystem without it
        return False
    raise OSError(code, os.strerror(code), str(b))


def _replace_folder(new: Path, path: Path) -> None:
    """Put the complete folder ``new`` at ``path`` (which may hold an earlier result); call with signals deferred."""
    if not os.path.lexists(path):
        os.rename(new, path)
        return
    if exchange_paths(new, path):
        checkpoint("atomic_dir:exchanged")
        _remove(new)  # now the earlier result
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    try:
        os.replace(path, aside / "old")
        try:
            checkpoint("atomic_dir:aside")
            os.rename(new, path)
        except BaseException:
            os.replace(aside / "old", path)  # put the earlier result back
            raise
    finally:
        _remove(aside)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it onto ``path`` on success.

    An existing ``path`` is replaced only after the new folder is complete
    (when ``overwrite``), in one exchange where the OS has one; on failure or
    interruption the temporary folder is removed and ``path`` is as it was. No
    ownership check here: commands use :func:`output_dir`.
    """
    path = Path(path)
    parent = _check_parent_folder(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"cannot write folder {path}: a file with that name exists")
    if path.exists() and not overwrite:
        raise OutputPathError(f"cannot write folder {path}: it exists (pass overwrite)")
    tmp: Path | None = None
    token = None

    def cleanup() -> None:
        with deferred():
            if tmp is not None:
                _remove(tmp)
            if token is not None:
                _interrupt.unregister(token)

    in_body = False  # an OSError of the caller's own (a missing input) passes through as it is
    try:
        with deferred():
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
            token = _interrupt.register(lambda: _remove(Path(str(tmp))))
        os.chmod(tmp, 0o777 & ~_umask())
        in_body = True
        yield tmp
        in_body = False
        checkpoint("atomic_dir:staged")
        with deferred():
            _replace_folder(tmp, path)
            _COMMITTED.append(path)
            _interrupt.unregister(token)
    except OSError as exc:
        cleanup()
        if not in_body or exc.errno in _WRITE_ERRNOS:
            raise OutputPathError(f"cannot write folder {path}: {_why(exc)}") from exc
        raise
    except BaseException:
        cleanup()
        raise


@contextlib.contextmanager
def atomic_files(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a staging folder; on success move every file in it into ``folder`` together.

    For several files that belong together in a folder that also holds other
    things (a plan and its sidecar inside a bundle). The staging folder lives
    inside ``folder`` (same filesystem, so each move is a rename); the renames
    run with signals deferred, so an interruption lands before all of them or
    after all of them. A ``folder`` that does not exist yet is made whole by
    :func:`atomic_dir` instead.
    """
    folder = Path(folder)
    if not folder.exists():
        with atomic_dir(folder) as tmp:
            yield tmp
        return
    if not folder.is_dir():
        raise OutputPathError(f"cannot write into {folder}: it is not a folder")
    staging: Path | None = None
    token = None

    def cleanup() -> None:
        with deferred():
            if staging is not None:
                _remove(staging)
            if token is not None:
                _interrupt.unregister(token)

    in_body = False  # an OSError of the caller's own (a missing input) passes through as it is
    try:
        with deferred():
            staging = Path(tempfile.mkdtemp(prefix=".edgeres-staging.", suffix=".tmp", dir=folder))
            token = _interrupt.register(lambda: _remove(Path(str(staging))))
        os.chmod(staging, 0o777 & ~_umask())
        in_body = True
        yield staging
        in_body = False
        checkpoint("atomic_files:staged")
        with deferred():
            for item in sorted(staging.iterdir()):
                os.replace(item, folder / item.name)
                _COMMITTED.append(folder / item.name)
            staging.rmdir()
            _interrupt.unregister(token)
    except OSError as exc:
        cleanup()
        if not in_body or exc.errno in _WRITE_ERRNOS:
            raise OutputPathError(f"cannot write into {folder}: {_why(exc)}") from exc
        raise
    except BaseException:
        cleanup()
        raise


# ---- ownership of output folders ----------------------------------------------------------------

def marker_text(command: str) -> str:
    """The content of :data:`OUTPUT_MARKER` for ``command`` (no timestamp: builds stay byte-identical)."""
    return json.dumps({"edgeres_output": OUTPUT_MARKER_FORMAT, "command": command}, sort_keys=True) + "\n"


def output_command(folder: str | os.PathLike[str]) -> str | None:
    """The command whose output ``folder`` is, read from its marker; None without a valid marker."""
    marker = Path(folder) / OUTPUT_MARKER
    try:
        if marker.is_symlink() or not marker.is_file() or marker.stat().st_size > _MARKER_MAX_BYTES:
            return None
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("edgeres_output") != OUTPUT_MARKER_FORMAT:
        return None
    command = data.get("command")
    return command if isinstance(command, str) else None


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(os.fspath(path)))


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def inputs_inside(folder: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None]) -> list[str]:
    """The existing ``inputs`` (real paths, links resolved) that are ``folder`` or lie inside it."""
    real = _real(folder)
    return [os.fspath(i) for i in inputs if i is not None and os.path.lexists(i) and _is_within(_real(i), real)]


def check_not_input(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None]) -> None:
    """Refuse an output file that is one of the command's existing inputs (``-o`` naming the weights), links resolved."""
    real = _real(path)
    same = [os.fspath(i) for i in inputs if i is not None and os.path.exists(i) and _real(i) == real]
    if same:
        raise OutputPathError(f"output {path} is an input of this command ({same[0]}); choose another output path")


def check_output_folder(path: str | os.PathLike[str], command: str, *,
                        inputs: Iterable[str | os.PathLike[str] | None] = (), force: bool = False) -> Path:
    """Check that ``command`` may write (or replace) the folder ``path``; returns it as a Path.

    A folder that does not exist or is empty is fine. An existing one is
    replaced only when its :data:`OUTPUT_MARKER` says ``command`` made it, or
    with ``force``; never when one of ``inputs`` (weights, data, ONNX, cache,
    targets folder; links resolved) lives inside it, nor (even with ``force``)
    when it is the filesystem root, the home folder or holds the working folder.

    Raises:
        OutputPathError: one line naming the folder (and ``--force`` where it would help).
    """
    path = Path(path)
    _check_parent_folder(path)
    if os.path.lexists(path) and not path.is_dir():
        raise OutputPathError(f"output {path} is a file; pass a folder path with -o")
    inside = inputs_inside(path, inputs)
    if inside:
        raise OutputPathError(
            f"output folder {path} holds an input of this command ({inside[0]}); it is never replaced, "
            "not even with --force: choose another -o"
        )
    if not path.is_dir():
        return path
    try:
        empty = not any(path.iterdir())
    except OSError as exc:
        raise OutputPathError(f"cannot read output folder {path}: {_why(exc)}") from exc
    if empty or output_command(path) == command:
        return path
    if not force:
        made_by = output_command(path)
        what = f"an `edgeres {made_by}` output" if made_by else f"not an edgeres output (no {OUTPUT_MARKER})"
        raise OutputPathError(
            f"output folder {path} exists and is {what}, not an earlier `edgeres {command}` output; "
            "it would be replaced as a whole: choose another -o, or pass --force to replace it"
        )
    real = _real(path)
    if real == Path(real.anchor) or real == _real(Path.home()) or _is_within(_real(os.getcwd()), real):
        raise OutputPathError(f"output folder {path} is the root, the home folder or holds the working folder; "
                              "it is never replaced, not even with --force")
    return path


@contextlib.contextmanager
def output_dir(path: str | os.PathLike[str], command: str, *,
               inputs: Iterable[str | os.PathLike[str] | None] = (), force: bool = False) -> Iterator[Path]:
    """``command``'s output folder: :func:`check_output_folder`, then :func:`atomic_dir` with the marker written first."""
    inputs = tuple(inputs)
    path = check_output_folder(path, command, inputs=inputs, force=force)
    with atomic_dir(path) as tmp:
        (tmp / OUTPUT_MARKER).write_text(marker_text(command), encoding="utf-8")
        yield tmp


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
