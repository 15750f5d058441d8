"""Timed, reported stages shared by ``edgeres build`` and ``edgeres compile``."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Callable, Iterator


@dataclasses.dataclass(frozen=True)
class StageTime:
    name: str
    seconds: float


class StageTimer:
    """Reports ``- name ...`` / ``name done in X s`` and keeps each stage's wall time."""

    def __init__(self, report: Callable[[str], None] | None) -> None:
        self.stages: list[StageTime] = []
        self.report = report or (lambda _msg: None)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        from edgeres._interrupt import checkpoint

        checkpoint(f"stage:{name}")  # test hook: interrupt a build at each stage
        self.report(f"- {name} ...")
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.stages.append(StageTime(name, seconds))
        self.report(f"  {name} done in {seconds:.2f} s")
