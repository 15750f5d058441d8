"""What to build: :class:`EngineSettings`, importable without TensorRT.

The build stage fills these from a target profile and the command line; the
TensorRT adapter (:mod:`edgeres.trt.loaders`) turns them into builder calls.
:func:`check_settings` rejects contradictory settings before any TensorRT or
GPU work starts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from edgeres.errors import BuildError

PRECISIONS = ("fp32", "fp16", "int8", "best")
INT8_MODES = ("qdq", "calibrator")
MAX_CONCURRENT_CONTEXTS = 16  # identical profiles on 8.5: each multiplies tactic timing, so keep it small


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """One TensorRT engine build.

    Attributes:
        onnx_path: source ONNX (FP32; FP16 or Q/DQ where the precision needs it on TensorRT 11).
        plan_path: where ``model.plan`` goes; ``<plan_path>.json`` gets the sidecar.
        precision: ``fp32`` | ``fp16`` | ``int8`` | ``best``.
        int8_mode: ``qdq`` (``onnx_path`` is a Q/DQ model) or ``calibrator`` (implicit
            ``IInt8EntropyCalibrator2``, TensorRT <= 10 only).
        calib_cache: TensorRT calibration cache read (and written) by the calibrator.
        calib_dataset: object with ``batches(batch_size)`` yielding float32 NCHW arrays.
        input_shape: C, H, W of the single network input; the batch axis comes from
            ``min_batch``/``opt_batch``/``max_batch`` (one optimization profile).
        workspace_bytes: builder workspace memory-pool limit.
        dla_core: DLA core to build for (Jetson Xavier/Orin), None for the GPU.
        timing_cache: builder timing cache read before and saved after the build.
        expected_compute_capability: the target's GPU; a different local GPU is refused
            unless ``allow_mismatch``.
        show_progress: drive a progress bar from ``IBuilderConfig.progress_monitor`` (TensorRT >= 10).
        concurrent_contexts: execution contexts that may run at once on TensorRT 8.5, where each context
            in concurrent use needs its own optimization profile (NvInferRuntime.h release/8.5 l.1589): that
            many identical profiles are built (each adds build time and plan size). 1 (default): threads
            take turns on one context. Ignored from 8.6 on, where edgeres builds contexts that share profile 0
            (:data:`edgeres.tensorrt_version.CONTEXT_RULES`).
    """

    onnx_path: Path
    plan_path: Path
    precision: str
    int8_mode: str = "qdq"
    calib_cache: Path | None = None
    calib_dataset: object | None = None
    calib_batch_size: int = 8
    input_name: str = "input"
    input_shape: tuple[int, int, int] = (3, 224, 224)
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    workspace_bytes: int = 1 << 30
    dla_core: int | None = None
    gpu_fallback: bool = True
    timing_cache: Path | None = None
    target: str | None = None
    expected_compute_capability: tuple[int, int] | None = None
    allow_mismatch: bool = False
    recipe: dict[str, Any] | None = None
    show_progress: bool = True
    concurrent_contexts: int = 1

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        """The NCHW input shape at ``batch``."""
        return (int(batch), *(int(d) for d in self.input_shape))


def check_settings(settings: EngineSettings) -> None:
    """Raise :class:`BuildError` when settings contradict each other (no TensorRT needed)."""
    s = settings
    if s.precision not in PRECISIONS:
        raise BuildError(f"precision must be one of {', '.join(PRECISIONS)}, received {s.precision!r}")
    if s.int8_mode not in INT8_MODES:
        raise BuildError(f"int8_mode must be one of {', '.join(INT8_MODES)}, received {s.int8_mode!r}")
    if not 1 <= s.min_batch <= s.opt_batch <= s.max_batch:
        raise BuildError(
            "batch sizes must satisfy 1 <= min <= opt <= max, received "
            f"min={s.min_batch} opt={s.opt_batch} max={s.max_batch}"
        )
    if len(s.input_shape) != 3 or any(int(d) < 1 for d in s.input_shape):
        raise BuildError(f"input_shape must be three positive sizes (C, H, W), received {tuple(s.input_shape)}")
    if not 1 <= s.concurrent_contexts <= MAX_CONCURRENT_CONTEXTS:
        raise BuildError(f"concurrent_contexts must be 1..{MAX_CONCURRENT_CONTEXTS}, received {s.concurrent_contexts}")
    if s.workspace_bytes < 1 << 20:
        raise BuildError(f"workspace must be at least 1 MiB, received {s.workspace_bytes} bytes")
    if s.dla_core is not None and s.dla_core < 0:
        raise BuildError(f"dla_core must be >= 0 or None, received {s.dla_core}")
    if s.dla_core is not None and s.precision == "fp32":
        raise BuildError("DLA runs only FP16 or INT8 layers, received precision fp32; use fp16, int8 or best with a DLA core")
    if s.precision in ("int8", "best") and s.int8_mode == "calibrator":
        has_cache = s.calib_cache is not None and Path(s.calib_cache).is_file() and Path(s.calib_cache).stat().st_size > 0
        if s.calib_dataset is None and not has_cache:
            raise BuildError(
                "INT8 with the implicit calibrator needs calibration data or an existing calibration cache, "
                f"received neither (calib_cache={s.calib_cache})"
            )
        if s.calib_batch_size < 1:
            raise BuildError(f"calib_batch_size must be >= 1, received {s.calib_batch_size}")
    if s.expected_compute_capability is not None and len(tuple(s.expected_compute_capability)) != 2:
        raise BuildError(
            f"expected_compute_capability must be (major, minor), received {s.expected_compute_capability!r}"
        )
