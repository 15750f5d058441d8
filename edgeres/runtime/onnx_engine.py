"""The onnxruntime backend: the same :class:`Engine` API on any CPU (FP32, FP16 or Q/DQ INT8 ONNX).

Threading model: one ``InferenceSession`` shared by all threads. onnxruntime
documents ``InferenceSession.run`` as safe to call concurrently, so ``infer``
takes no lock; each call gets its own outputs. ``infer_async`` runs on a small
thread pool owned by the engine (created on first use, joined by ``close()``).

GPU inputs (``__cuda_array_interface__`` or CUDA DLPack tensors) are refused
with :class:`EngineInputError` rather than copied to the host behind the
caller's back: a hidden device-to-host copy would make a GPU pipeline look
slow for no visible reason. CPU DLPack tensors (e.g. CPU torch tensors) are
read without a copy.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeres.recipe import Recipe
from edgeres._readers import check_regular_file
from edgeres.runtime._base import Engine, TensorInfo, read_manifest, recipe_from, verify_against_manifest
from edgeres.runtime._errors import EngineClosedError, EngineError, EngineInputError, PlanIntegrityError

# onnxruntime type strings -> numpy dtypes (declarative; unlisted types are refused)
ORT_DTYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(bool)": np.dtype(np.bool_),
}

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)


def tensor_info_from_ort(arg: Any) -> TensorInfo:
    """onnxruntime ``NodeArg`` -> :class:`TensorInfo` (symbolic or unknown dims become -1)."""
    if arg.type not in ORT_DTYPES:
        raise EngineError(f"tensor {arg.name!r} has type {arg.type}; expected one of {sorted(ORT_DTYPES)}")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or ()))
    return TensorInfo(name=arg.name, shape=shape, dtype=ORT_DTYPES[arg.type])


def session_from_path(
    path: Path, providers: Sequence[str], intra_op_threads: int | None
) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path``, with load errors turned into EngineError."""
    import onnxruntime as ort

    if check_regular_file(path, "ONNX model", EngineError).st_size == 0:
        raise PlanIntegrityError(f"ONNX model {path} is empty (0 bytes); expected a serialized ONNX model")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if intra_op_threads is not None:
        options.intra_op_num_threads = int(intra_op_threads)
    try:
        return ort.InferenceSession(os.fspath(path), options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise PlanIntegrityError(
            f"onnxruntime cannot load {path}: expected a valid ONNX model, received a file it rejects "
            f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc})"
        ) from exc


def batch_limits(
    first_input: TensorInfo, manifest: dict[str, Any], min_batch: int | None, max_batch: int | None,
    opt_batch: int | None,
) -> tuple[int, int, int | None]:
    """(min, opt, max) batch: explicit arguments, else the bundle manifest, else the model's batch axis."""
    fixed = first_input.shape[0] if first_input.shape and first_input.shape[0] >= 0 else None
    from_manifest = manifest.get("batch", {}) if isinstance(manifest.get("batch"), dict) else {}

    def pick(explicit: int | None, key: str) -> int | None:
        if explicit is not None:
            return int(explicit)
        value = manifest.get(f"{key}_batch", from_manifest.get(key))
        return None if value is None else int(value)

    if fixed is not None:
        lo, hi = fixed, fixed
    else:
        lo = pick(min_batch, "min") or 1
        hi = pick(max_batch, "max")
    opt = pick(opt_batch, "opt") or lo
    if lo < 1 or (hi is not None and not lo <= opt <= hi) or opt < lo:
        raise EngineError(f"batch limits must satisfy 1 <= min <= opt <= max, received min {lo}, opt {opt}, max {hi}")
    return lo, opt, hi


class OnnxEngine(Engine):
    """:class:`Engine` over onnxruntime (CPU by default).

    Args:
        path: ``.onnx`` file (FP32, FP16 or Q/DQ INT8).
        providers: onnxruntime execution providers, CPU only by default.
        intra_op_threads: threads per inference (onnxruntime's default: one per core).
        min_batch, opt_batch, max_batch: batch limits; default from a deploy
            bundle's ``manifest.json`` beside the model (``min_batch``/``opt_batch``/
            ``max_batch`` keys), else the model's batch axis (dynamic: 1..unbounded).
        recipe: preprocessing recipe; default the manifest's ``"recipe"``.
        async_workers: threads behind :meth:`infer_async`.
        verify: with a bundle's ``manifest.json`` beside the model, check the model's sha256
            against it first (as a plan is checked against its sidecar); False opens it unchecked.

    Raises:
        PlanIntegrityError: empty or corrupt model, or (``verify``) one whose sha256 differs from
            the manifest beside it, or that a bundle manifest does not list.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        intra_op_threads: int | None = None,
        min_batch: int | None = None,
        opt_batch: int | None = None,
        max_batch: int | None = None,
        recipe: Recipe | dict[str, Any] | None = None,
        async_workers: int = 2,
        verify: bool = True,
    ) -> None:
        self.path = Path(path)
        if verify:
            check_regular_file(self.path, "ONNX model", EngineError)
            verify_against_manifest(self.path)
        self._session = session_from_path(self.path, providers, intra_op_threads)
        self.inputs = tuple(tensor_info_from_ort(a) for a in self._session.get_inputs())
        self.outputs = tuple(tensor_info_from_ort(a) for a in self._session.get_outputs())
        manifest = read_manifest(self.path)
        self.min_batch, self.opt_batch, self.max_batch = batch_limits(
            self.inputs[0], manifest, min_batch, max_batch, opt_batch
        )
        self.recipe = recipe_from(recipe if recipe is not None else manifest.get("recipe"))
        self.providers = tuple(self._session.get_providers())
        self._async_workers = int(async_workers)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._closed = False

    def _run(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        session = self._session
        if session is None:
            raise EngineClosedError(f"engine {self.path} was closed while this call was starting")
        try:
            values = session.run(None, feeds)
        except Exception as exc:  # pybind exception types of onnxruntime
            raise EngineError(f"onnxruntime failed on {self.path}: {exc}") from exc
        return {t.name: v for t, v in zip(self.outputs, values)}

    def _submit(self, feeds: dict[str, Any], as_array: bool, stream: Any) -> concurrent.futures.Future:
        if stream is not None:
            raise EngineInputError(
                f"infer_async on the onnxruntime backend takes no CUDA stream; expected stream=None, "
                f"received {type(stream).__name__}"
            )
        with self._executor_lock:
            self._check_open()
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self._async_workers, thread_name_prefix="edgeres-ort"
                )
            return self._executor.submit(lambda: self._pack(self._run(feeds), as_array))

    def _release(self) -> None:
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)  # pending infer_async calls finish before the session goes
        self._session = None
