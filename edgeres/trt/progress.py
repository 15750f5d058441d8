"""Builder progress (TensorRT >= 10): a ``trt.IProgressMonitor`` drawing rich progress bars.

Split out of :mod:`edgeres.trt.loaders` (Polygraphy keeps its progress monitor apart too).
``tensorrt`` is imported through :func:`edgeres.trt.guard.require_tensorrt` on first use.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

from edgeres.trt.caps import capabilities
from edgeres.trt.guard import require_tensorrt


@functools.lru_cache(maxsize=None)
def _progress_class(trt: ModuleType) -> type:
    base = trt.IProgressMonitor

    class RichProgressMonitor(base):  # type: ignore[misc, valid-type]
        """Shows TensorRT's nested build phases as rich progress bars."""

        def __init__(self, console: Any = None) -> None:
            base.__init__(self)
            self._console = console
            self._progress: Any = None
            self._tasks: dict[str, Any] = {}
            self._depth: dict[str, int] = {}
            self._totals: dict[str, int] = {}
            self.cancelled = False

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            try:
                if self._progress is None:
                    from rich.progress import Progress

                    self._progress = Progress(console=self._console, transient=False)
                    self._progress.start()
                depth = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
                self._depth[phase_name] = depth
                self._totals[phase_name] = max(int(num_steps), 1)
                self._tasks[phase_name] = self._progress.add_task("  " * depth + phase_name, total=max(int(num_steps), 1))
            except Exception:  # noqa: BLE001 - a display problem must never stop a build
                pass

        def step_complete(self, phase_name: str, step: int) -> bool:
            try:
                if phase_name in self._tasks:
                    self._progress.update(self._tasks[phase_name], completed=int(step) + 1)
            except Exception:  # noqa: BLE001
                pass
            return not self.cancelled

        def phase_finish(self, phase_name: str) -> None:
            try:
                task = self._tasks.pop(phase_name, None)
                depth = self._depth.pop(phase_name, 0)
                if task is not None and depth > 0:  # nested phases come and go; top-level ones stay as a record
                    self._progress.remove_task(task)
                elif task is not None:
                    self._progress.update(task, completed=self._totals.get(phase_name, 1))
                if not self._tasks:
                    self.close()
            except Exception:  # noqa: BLE001
                pass

        def close(self) -> None:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None

    return RichProgressMonitor


def ProgressMonitor(console: Any = None) -> Any:  # noqa: N802
    """A ``trt.IProgressMonitor`` drawing rich progress bars, or None where TensorRT has none (< 10)."""
    trt = require_tensorrt()
    if not capabilities(trt).progress_monitor_class:
        return None
    return _progress_class(trt)(console)
