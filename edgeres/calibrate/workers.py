"""Histogram workers in their own processes, binning activations onnxruntime writes into shared memory.

``np.bincount`` (the count at the heart of every histogram, :func:`edgeres.calibrate.stats.update_histogram`)
holds the GIL, so histogram threads in one process bin one tensor at a time whatever the number of cores:
measured on the 2-core CI machine, two threads binning ResNet-50's activations took as long as one
(2.36 against 2.39 ns per value). Here each worker process owns a fixed group of tensors and their
histograms for the whole pass; onnxruntime writes every observed tensor straight into one shared-memory
block (``io_binding``, no copy), the workers bin their groups from it in parallel while onnxruntime
waits, and only the final histograms travel back. The histograms are those of the in-process path,
bit for bit (the same functions; tested).

Each worker is a fresh interpreter running :func:`main` (it imports numpy and this package only) talking over a socket pair; messages are pickled between this process and its own children.
The workers ignore SIGINT (the terminal sends it to the whole process group; the parent decides) and
exit when their socket closes, so an interrupted or killed parent leaves none running; the parent
stops them and unlinks the shared memory in :meth:`ProcessBinning.close`. POSIX only (``pass_fds``);
where the workers cannot start, :func:`edgeres.calibrate.stats.collect_statistics` bins in threads.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from edgeres.calibrate.binning import _Scratch, update_halves, update_histogram
from edgeres.calibrate.calibrators import Histogram
from edgeres.errors import CalibrationError


class WorkerStartError(OSError):
    """A worker process did not start (no interpreter, edgeres not importable there, no shared memory)."""


@dataclasses.dataclass(frozen=True)
class Slot:
    """One observed tensor's place in the shared block: ``chunk`` samples of ``shape`` float32 at ``offset``."""

    name: str
    offset: int
    shape: tuple[int, ...]
    nonnegative: bool


def _views(buffer: Any, slots: Sequence[Slot], chunk: int) -> dict[str, np.ndarray]:
    return {s.name: np.ndarray((chunk, *s.shape), dtype=np.float32, buffer=buffer, offset=s.offset) for s in slots}


def _serve(conn: Any) -> None:
    """Worker loop: an init message, then ``("bin", n, first)`` -> bin the first ``n`` samples of each slot,
    ``("done",)`` -> send the histograms back and exit."""
    import signal
    from multiprocessing import resource_tracker, shared_memory

    _, shm_name, slots, chunk, bins, halves = conn.recv()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # attaching would register the block with a resource tracker of this process's own (Python < 3.13 has no
    # track=False), which would start one more process and unlink the parent's block when this one exits
    resource_tracker.register = lambda *args, **kwargs: None  # this interpreter runs nothing else
    shm = shared_memory.SharedMemory(name=shm_name)
    views: dict[str, np.ndarray] = {}
    value = None
    try:
        views = _views(shm.buf, slots, chunk)
        conn.send(("ready",))
        whole = {s.name: Histogram.empty(bins) for s in slots}
        split = ({s.name: Histogram.empty(bins) for s in slots}, {s.name: Histogram.empty(bins) for s in slots})
        scratch = _Scratch()
        while True:
            try:
                message = conn.recv()
            except EOFError:  # the parent is gone
                return
            if message[0] == "done":
                conn.send(("histograms", whole, split if halves else None))
                return
            _, count, first = message
            try:
                for slot in slots:
                    value = views[slot.name][:count]
                    kind = {"name": slot.name, "consume": True, "nonnegative": slot.nonnegative, "scratch": scratch}
                    if halves:
                        update_halves((split[0][slot.name], split[1][slot.name]), value, first, **kind)
                    else:
                        update_histogram(whole[slot.name], value, **kind)
            except CalibrationError as exc:
                conn.send(("error", str(exc)))
                continue
            except Exception as exc:  # reported in the parent as a CalibrationError
                conn.send(("error", f"histogram worker failed ({type(exc).__name__}: {exc})"))
                continue
            conn.send(("ok",))
    finally:
        views, value = {}, None  # no view may outlive the mapping
        shm.close()


_WORKER_COMMAND = "import sys; from edgeres.calibrate.workers import main; main(int(sys.argv[1]))"


class ProcessBinning:
    """A shared-memory block for one inference call's activations and ``workers`` processes binning it.

    Use as a context manager: leaving it stops the workers and frees the block, also on an error.
    """

    def __init__(self, slots: Sequence[Slot], groups: Sequence[Sequence[int]], chunk: int, bins: int, halves: bool) -> None:
        import os
        import socket
        import subprocess
        import sys
        from multiprocessing import shared_memory
        from multiprocessing.connection import Connection

        self.slots, self.chunk, self.halves = list(slots), chunk, halves
        size = max(1, max(s.offset + 4 * chunk * int(np.prod(s.shape, dtype=np.int64)) for s in self.slots))
        self._shm = shared_memory.SharedMemory(create=True, size=size)
        self._procs: list[Any] = []
        self._conns: list[Any] = []
        self._ready = False
        try:
            self.views = _views(self._shm.buf, self.slots, chunk)
            for group in groups:
                # a fresh interpreter running this module: no fork of a process with onnxruntime threads, and
                # (unlike multiprocessing's spawn) no re-import of the caller's __main__, which a library
                # user's unguarded script would otherwise run again in every worker
                ours, theirs = socket.socketpair()
                # the caller's sys.path (a notebook's sys.path.append, a test's rootdir) so the worker finds edgeres
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
                proc = subprocess.Popen([sys.executable, "-c", _WORKER_COMMAND, str(theirs.fileno())],
                                        pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # errors come as messages
                theirs.close()
                self._procs.append(proc)
                conn = Connection(ours.detach())
                self._conns.append(conn)
                conn.send(("init", self._shm.name, [self.slots[i] for i in group], chunk, bins, halves))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "ProcessBinning":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def bin(self, count: int, first: int) -> None:
        """Bin the first ``count`` samples now in the block (global index of the first: ``first``); waits for all workers.

        Raises:
            WorkerStartError: on the first call, a worker did not start (the block still holds the samples).
            CalibrationError: NaN/Inf in an activation (named), or a worker died.
        """
        if not self._ready:
            for conn in self._conns:
                try:
                    reply = conn.recv()
                except (EOFError, OSError):
                    reply = ("error", "exited before attaching the shared block")
                if reply[0] != "ready":
                    raise WorkerStartError(f"histogram worker did not start: {reply[1]}")
            self._ready = True
        for conn in self._conns:
            conn.send(("bin", count, first))
        errors = [reply[1] for reply in (self._receive(conn) for conn in self._conns) if reply[0] == "error"]
        if errors:
            raise CalibrationError(errors[0])

    def histograms(self) -> tuple[dict[str, Histogram], tuple[dict[str, Histogram], dict[str, Histogram]] | None]:
        """Every tensor's histogram (and, with ``halves``, the even/odd halves'), collected from the workers."""
        whole: dict[str, Histogram] = {}
        split: tuple[dict[str, Histogram], dict[str, Histogram]] = ({}, {})
        for conn in self._conns:
            conn.send(("done",))
        for conn in self._conns:
            _, part, halves = self._receive(conn)
            whole.update(part)
            if halves is not None:
                split[0].update(halves[0])
                split[1].update(halves[1])
        return whole, (split if self.halves else None)

    def _receive(self, conn: Any) -> Any:
        try:
            reply = conn.recv()
        except (EOFError, OSError):
            raise CalibrationError("a histogram worker process died (out of memory?); "
                                   "run with fewer --batch-size samples per call") from None
        if reply[0] == "error" and reply[1].startswith("histogram worker failed"):
            raise CalibrationError(reply[1])
        return reply

    def close(self) -> None:
        """Stop the workers and free the shared block (idempotent)."""
        for conn in self._conns:
            conn.close()
        for proc in self._procs:  # a closed socket ends a worker's loop; one still busy is stopped
            try:
                proc.wait(timeout=5)
            except Exception:
                proc.kill()
                proc.wait()
        self._conns, self._procs = [], []
        self.views = {}
        if self._shm is not None:
            self._shm.close()
            self._shm.unlink()
            self._shm = None



def main(fd: int) -> None:
    """Entry point of a worker process (``ProcessBinning`` starts it with the socket's descriptor).

    Any failure outside a bin request (attaching the block, say) goes back as an error message, not a
    traceback on the terminal the parent shares.
    """
    from multiprocessing.connection import Connection

    conn = Connection(fd)
    try:
        _serve(conn)
    except (EOFError, OSError):  # the parent is gone
        pass
    except BaseException as exc:
        try:
            conn.send(("error", f"histogram worker failed ({type(exc).__name__}: {exc})"))
        except OSError:
            pass
