"""The one small interface every benchmark backend implements.

A backend owns one loaded model on one device. The timing loop only calls
:meth:`Backend.run` and :meth:`Backend.synchronize`; everything else (loading,
copying inputs to backend-native buffers, CUDA graph capture) happens outside
the timed window, exactly once per batch size.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Phases:
    """Device-timed phases of one iteration, milliseconds (None where not separable)."""

    h2d_ms: float | None = None
    compute_ms: float | None = None
    d2h_ms: float | None = None


@dataclasses.dataclass(frozen=True)
class BackendOptions:
    """How a backend runs a model. Fields a backend does not use are ignored and not reported.

    Attributes:
        device: ``"cpu"`` or ``"cuda"`` (torch); onnxruntime derives it from ``provider``.
        provider: onnxruntime execution provider: ``"cpu"``, ``"cuda"`` or ``"tensorrt"``.
        precision: torch only: ``"fp32"`` (the reference) or ``"fp16"``; ONNX and plans carry their own.
        channels_last: torch only: NHWC memory format for the model and its input buffer.
        compile: torch only: ``torch.compile`` instead of eager.
        cuda_graphs: torch on CUDA: capture the forward pass once and replay it.
        sync: ``"blocking"`` (the host thread sleeps until the GPU is done) or ``"spin"`` (busy-wait).
        pinned: page-locked host buffers for the H2D/D2H copies (else pageable).
        threads: CPU intra-op threads (None: the library's default).
        arch: architecture name for a bare weights file (``.pth``/``.safetensors``).
    """

    device: str = "cpu"
    provider: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    sync: str = "blocking"
    pinned: bool = True
    threads: int | None = None
    arch: str | None = None


@runtime_checkable
class Backend(Protocol):
    """Load, prepare inputs, run, synchronize."""

    name: str

    def load(self) -> None:
        """Load the model and create sessions, streams and events (not timed)."""

    def input_shape(self) -> tuple[int, int, int] | None:
        """(C, H, W) the model expects, or None if unknown before loading."""

    def batch_range(self) -> tuple[int, int] | None:
        """(min, max) batch sizes the model accepts, or None for any (known before :meth:`load`)."""

    def prepare(self, batches: Sequence[np.ndarray]) -> None:
        """Copy the rotating input batches (float32 NCHW, all the same shape) into native buffers."""

    def run(self, slot: int) -> None:
        """Start one inference on input buffer ``slot``, with the host<->device copies the settings include."""

    def synchronize(self) -> Phases | None:
        """Wait for the last :meth:`run`; return its device-timed phases, or None on the CPU."""

    def output(self) -> np.ndarray:
        """The last run's output on the host, float32 (call after :meth:`synchronize`)."""

    def settings(self) -> dict[str, Any]:
        """What was in effect: device, precision, transfers included, CUDA graphs, sync mode, host memory."""

    def close(self) -> None:
        """Release sessions and device memory."""


def check_batches(batches: Sequence[np.ndarray]) -> tuple[int, ...]:
    """Shape shared by all ``batches`` (raises BenchError if they differ or none are given)."""
    from edgeres.errors import BenchError

    if not batches:
        raise BenchError("prepare() needs at least one input batch")
    shapes = {tuple(b.shape) for b in batches}
    if len(shapes) != 1:
        raise BenchError(f"all rotating input batches must have one shape, received {sorted(shapes)}")
    return shapes.pop()
