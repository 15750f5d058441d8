"""Phase progress on stderr: one rich display for every phase, or one line per phase.

A :class:`PhaseProgress` lives for a whole command; each phase (data loading, statistics,
evaluation, ...) is ``with progress.phase(name, total) as advance: ... advance(n)``.

* ``"rich"``: one live rich display (stderr a terminal): a row per phase with a bar, counts
  and an ETA when the total is known, a spinner otherwise; finished phases stay with their time.
* ``"lines"``: ``--quiet`` or stderr not a terminal: one line per phase when it ends
  (``phase <name>: <n> in <s> s``), nothing animated.
* ``"off"``: nothing (library calls and tests).

rich is imported only in ``"rich"`` mode.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Callable, Iterator, TextIO

MODES = ("rich", "lines", "off")


def progress_mode(quiet: bool, stream: TextIO | None = None) -> str:
    """``"lines"`` when ``quiet`` or ``stream`` (stderr) is not a terminal, else ``"rich"``."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return "lines" if quiet or not (callable(isatty) and isatty()) else "rich"


class PhaseProgress:
    """Progress of a command's phases (see module docstring); use as a context manager."""

    def __init__(self, mode: str = "off", stream: TextIO | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {MODES}, received {mode!r}")
        self.mode = mode
        self.stream = stream
        self.times: dict[str, float] = {}
        self._display: Any = None
        self._depth = 0

    def __enter__(self) -> "PhaseProgress":
        self._depth += 1
        if self.mode == "rich" and self._display is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
            from rich.progress import TimeElapsedColumn, TimeRemainingColumn

            console = Console(file=self.stream or sys.stderr)
            self._display = Progress(
                SpinnerColumn(), TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=console, transient=False,
            )
            self._display.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if self._depth == 0 and self._display is not None:
            self._display.stop()
            self._display = None

    def _line(self, text: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(text + "\n")
        stream.flush()

    @contextlib.contextmanager
    def phase(self, name: str, total: int | None = None, unit: str = "samples") -> Iterator[Callable[[int], None]]:
        """Show phase ``name`` while the block runs; the block calls ``advance(n)`` as work is done."""
        start = time.perf_counter()
        done = [0]
        task = None
        if self._display is not None:
            task = self._display.add_task(name, total=total)

        def advance(n: int = 1) -> None:
            done[0] += int(n)
            if task is not None:
                self._display.advance(task, n)

        try:
            yield advance
        finally:
            elapsed = time.perf_counter() - start
            self.times[name] = elapsed
            if task is not None:
                if total is None:
                    self._display.update(task, total=max(done[0], 1), completed=max(done[0], 1))
            elif self.mode == "lines":
                count = f"{done[0]} {unit} " if done[0] else ""
                self._line(f"phase {name}: {count}in {elapsed:.2f} s")


def as_progress(progress: "bool | PhaseProgress | None") -> PhaseProgress:
    """A :class:`PhaseProgress` from a library ``progress`` argument: True -> rich/lines by stderr, False -> off."""
    if isinstance(progress, PhaseProgress):
        return progress
    return PhaseProgress(progress_mode(False) if progress else "off")
