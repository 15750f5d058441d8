"""SIGINT and SIGTERM as one unwinding, critical sections, and a last-resort cleanup list.

The CLI runs every command inside :func:`handled_signals`: SIGINT and SIGTERM
both raise :class:`Interrupted` (a ``KeyboardInterrupt``) in the main thread,
so the ``except``/``finally`` blocks of :mod:`edgeres._io`'s staging helpers
remove their temporary files and folders, and the previous handlers are put
back afterwards. Python runs signal handlers between bytecodes of the main
thread only, so a signal arriving in C code (torch, onnxruntime) takes effect
when that call returns.

Inside :func:`deferred` (a handful of renames and removals) a signal is only
recorded; it is raised when the outermost ``deferred`` block ends, so a
commit (exchange, rename) or a cleanup is never cut in half. Deferral works
only while :func:`handled_signals` is active (the CLI); library callers
without it get Python's default ``KeyboardInterrupt`` and the same
``except`` cleanup, minus the guarantee for a signal landing inside a commit.

:func:`register` keeps callbacks (remove this staging folder, put that old
folder back) that :func:`handled_signals` runs if the command unwinds with
them still registered: a second safety net for the few bytecodes between
creating a temporary path and entering the ``try`` that owns it.

:func:`checkpoint` is a test hook: with ``EDGERES_TEST_PAUSE=name[,name...]``
in the environment, the process prints ``edgeres-test-pause: NAME`` on stderr
at that checkpoint and waits (up to ``EDGERES_TEST_PAUSE_S`` seconds, default
30) for a signal, so tests can interrupt every phase deterministically.
Without the variable it costs one dictionary lookup.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterator

#: Signals that unwind a command like Ctrl-C does.
SIGNALS = (signal.SIGINT, signal.SIGTERM)
PAUSE_ENV = "EDGERES_TEST_PAUSE"
PAUSE_SECONDS_ENV = "EDGERES_TEST_PAUSE_S"


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM received; ``signum`` says which (exit status 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    active = False  # handled_signals() is installed
    over = False  # the command has ended (see command_over())
    depth = 0  # nesting of deferred()
    pending: int | None = None  # signal received inside deferred()
    cleanups: dict[int, Callable[[], None]] = {}
    ids = itertools.count()


def _handler(signum: int, frame: Any) -> None:
    if _State.over:
        return  # the command's outputs are final; the process is about to exit anyway
    if _State.depth > 0:
        _State.pending = _State.pending or signum
        return
    raise Interrupted(signum)


def command_over() -> None:
    """From now until :func:`handled_signals` ends, SIGINT/SIGTERM are ignored: the command has finished
    (its outputs are complete, or its error is being reported), so a late signal changes nothing."""
    _State.over = True


def pending() -> int | None:
    """The signal recorded inside a :func:`deferred` block, if any."""
    return _State.pending


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends (then raise :class:`Interrupted`)."""
    _State.depth += 1
    try:
        yield
    finally:
        _State.depth -= 1
        if _State.depth == 0 and _State.pending is not None:
            signum, _State.pending = _State.pending, None
            raise Interrupted(signum)


def register(cleanup: Callable[[], None]) -> int:
    """Keep ``cleanup`` to run if the command unwinds before :func:`unregister`; returns its token."""
    token = next(_State.ids)
    _State.cleanups[token] = cleanup
    return token


def unregister(token: int) -> None:
    """Forget a cleanup (its owner finished or cleaned up itself)."""
    _State.cleanups.pop(token, None)


def run_cleanups() -> None:
    """Run every registered cleanup, newest first, with signals deferred; errors are ignored."""
    with deferred():
        for token in sorted(_State.cleanups, reverse=True):
            cleanup = _State.cleanups.pop(token)
            with contextlib.suppress(Exception):
                cleanup()


@contextlib.contextmanager
def handled_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` inside the block; previous handlers come back after.

    Outside the main thread (where Python cannot install handlers) the block runs as is.
    """
    if _State.active or threading.current_thread() is not threading.main_thread():
        yield
        return
    # a signal the caller ignores (``nohup``, ``cmd &`` in a script) stays ignored
    previous = {s: signal.getsignal(s) for s in SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    for s in previous:
        signal.signal(s, _handler)
    _State.active = True
    _State.over = False
    try:
        yield
    except BaseException:
        run_cleanups()
        raise
    finally:
        _State.active = False
        _State.over = False
        _State.pending = None
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def checkpoint(name: str) -> None:
    """Test hook: pause at ``name`` when ``EDGERES_TEST_PAUSE`` lists it (see the module docstring)."""
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted or name not in wanted.split(","):
        return
    sys.stderr.write(f"edgeres-test-pause: {name}\n")
    sys.stderr.flush()
    deadline = time.monotonic() + float(os.environ.get(PAUSE_SECONDS_ENV, "30"))
    while time.monotonic() < deadline and _State.pending is None:
        time.sleep(0.01)  # a signal outside deferred() raises from here
