"""TensorRT backend: a ``.plan`` engine through :class:`edgeres.runtime.Engine`.

``Engine.infer`` takes host arrays and returns host arrays, so end-to-end
latency includes the H2D and D2H copies; the runtime does not expose
per-phase device events, so H2D/compute/D2H are n/a here (use trtexec or
Nsight for a compute-only figure). ``--cuda-graphs`` asks the runtime to
replay a captured graph (``Engine(..., cuda_graph=True)``). Not verified on a GPU: this machine has
none; the tests drive it through a fake ``Engine``.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from edgeres.bench.backends.base import BackendOptions, Phases, check_batches
from edgeres.errors import BenchError


class TensorRTBackend:
    """One deserialized engine and its execution context, owned by ``edgeres.runtime``."""

    name = "tensorrt"

    def __init__(self, path: str | os.PathLike[str], options: BackendOptions = BackendOptions()) -> None:
        from edgeres.sidecar import read_sidecar

        self.path = os.fspath(path)
        self.options = options
        self._sidecar = read_sidecar(self.path)
        self._engine: Any = None
        self._host: list[np.ndarray] = []
        self._out: np.ndarray | None = None

    def input_shape(self) -> tuple[int, int, int] | None:
        if self._sidecar is None or not self._sidecar.inputs:
            return None
        shape = self._sidecar.inputs[0].shape
        return tuple(shape[1:]) if len(shape) == 4 else None  # type: ignore[return-value]

    def batch_range(self) -> tuple[int, int] | None:
        if self._sidecar is None:
            return None
        return (self._sidecar.min_batch, self._sidecar.max_batch)

    def load(self) -> None:
        try:
            from edgeres.runtime import Engine
        except ImportError as exc:
            raise BenchError(f"the tensorrt backend needs edgeres.runtime, which failed to import: {exc}") from None
        # Engine raises EngineError subclasses itself (TensorRT missing, plan built for
        # another GPU or TensorRT version); they reach the user unchanged.
        self._engine = Engine(self.path, cuda_graph=self.options.cuda_graphs)
        low, high = getattr(self._engine, "min_batch", None), getattr(self._engine, "max_batch", None)
        if low is not None and high is not None:
            self._engine_range = (int(low), int(high))

    def prepare(self, batches: Sequence[np.ndarray]) -> None:
        shape = check_batches(batches)
        rng = getattr(self, "_engine_range", None)
        if rng is not None and not rng[0] <= shape[0] <= rng[1]:
            raise BenchError(f"batch size {shape[0]} is outside the engine's profile [{rng[0]}, {rng[1]}] ({self.path})")
        inputs = getattr(self._engine, "inputs", None)
        dtype = np.dtype(inputs[0].dtype) if inputs else np.float32
        self._host = [np.ascontiguousarray(b, dtype=dtype) for b in batches]

    def run(self, slot: int) -> None:
        self._out = self._engine.infer(self._host[slot])

    def synchronize(self) -> Phases | None:
        return None  # Engine.infer returns after the output copy completed

    def output(self) -> np.ndarray:
        if self._out is None:
            raise BenchError("no output yet: run() the backend first")
        out = self._out
        if isinstance(out, dict):
            out = next(iter(out.values()))
        return np.asarray(out, dtype=np.float32)

    def settings(self) -> dict[str, Any]:
        side = self._sidecar
        return {
            "backend": self.name,
            "model": self.path,
            "device": "cuda",
            "precision": side.precision if side else None,
            "tensorrt_version": side.tensorrt_version if side else None,
            "profile_batch": [side.min_batch, side.opt_batch, side.max_batch] if side else None,
            "transfers_included": True,
            "phases_separated": False,
            "cuda_graphs": self.options.cuda_graphs,
            "sync": "Engine.infer (blocking)",
            "host_memory": "as edgeres.runtime allocates",
        }

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._engine = None
        self._host = []
