"""The backend-independent half of :class:`Engine`: input checks, output packing, lifecycle.

A backend subclass describes its I/O (:class:`TensorInfo`), batch limits and
recipe, and implements ``_run`` (synchronous), ``_submit`` (asynchronous) and
``_release``. Everything a caller can get wrong is checked here, once, with
the same messages for onnxruntime and TensorRT.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgeres.bundle_manifest import MANIFEST as MANIFEST_NAME
from edgeres.bundle_manifest import check_listed_file, runtime_manifest
from edgeres.recipe import Recipe
from edgeres.runtime._arrays import DeviceArray, classify_input
from edgeres.runtime._errors import EngineClosedError, EngineError, EngineInputError, PlanIntegrityError


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One engine input or output; -1 in ``shape`` marks a dynamic axis (axis 0: batch)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    def describe(self, batch_range: str = "N") -> str:
        dims = [batch_range if (i == 0 and d < 0) else ("?" if d < 0 else str(d)) for i, d in enumerate(self.shape)]
        return f"{self.dtype.name} of shape ({', '.join(dims)})"


def dtype_text(dtype: np.dtype) -> str:
    """``"float32"``, or ``"float32 (big-endian)"`` where the byte order is not this machine's."""
    if dtype.byteorder not in ("=", "|") and dtype.newbyteorder("=") != dtype:
        return f"{dtype.name} ({'big' if dtype.byteorder == '>' else 'little'}-endian)"
    return dtype.name


def shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class Engine:
    """Load a TensorRT plan or an ONNX model and run it; the same API for both.

    ``Engine("model.plan")`` returns a :class:`~edgeres.runtime.trt_engine.TrtEngine`,
    ``Engine("model.onnx")`` an :class:`~edgeres.runtime.onnx_engine.OnnxEngine`;
    both are instances of ``Engine``. Keyword arguments go to that backend.

    Inputs (see :meth:`infer`):
        * a numpy array when the engine has one input, else a dict ``{name: array}``;
        * dtype and non-batch dimensions must match exactly (no silent casts);
        * the batch axis (0) must lie within ``[min_batch, max_batch]``;
        * non-contiguous host arrays are copied once (documented cost, never refused);
        * GPU tensors (``__cuda_array_interface__`` or DLPack: torch, CuPy) are bound
          without a copy by TensorRT; the onnxruntime backend refuses them.

    Outputs are fresh numpy arrays the caller owns (never views of engine buffers).

    Thread safety: every method may be called from any thread; see the backend
    class for how (onnxruntime: one shared session; TensorRT: one execution
    context, stream and buffer set per thread).
    """

    backend: str = "abstract"

    def __new__(cls, path: str | os.PathLike[str] | None = None, *args: Any, **kwargs: Any) -> "Engine":
        if cls is Engine:
            cls = _engine_class_for(path)
        return super().__new__(cls)

    def __init__(self, path: str | os.PathLike[str], **kwargs: Any) -> None:  # pragma: no cover - dispatched
        raise TypeError("Engine is abstract; construct it with a path ending in .plan/.engine or .onnx")

    # Set by backends in __init__.
    path: Path
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    min_batch: int
    opt_batch: int
    max_batch: int | None
    recipe: Recipe | None
    _closed: bool = True

    # ---- public API -------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def infer(self, inputs: Any) -> Any:
        """Run synchronously.

        Args:
            inputs: an array (single-input engines) or a dict ``{input name: array}``.

        Returns:
            One numpy array when ``inputs`` is an array and the engine has one output,
            else a dict ``{output name: array}``.

        Raises:
            EngineInputError: wrong type, dtype, shape, batch size or device.
            EngineClosedError: after :meth:`close`.
        """
        self._check_open()
        feeds, as_array = self._feeds(inputs)
        return self._pack(self._run(feeds), as_array)

    def infer_async(self, inputs: Any, stream: Any = None) -> Any:
        """Start inference and return at once; ``.result()`` on the handle gives :meth:`infer`'s value.

        Inputs are checked before this returns (bad input raises here, not in
        ``result()``). Do not modify the input arrays until ``result()`` returns.

        Args:
            inputs: as for :meth:`infer`.
            stream: TensorRT only: the CUDA stream to enqueue on (int handle,
                cuda-python, pycuda, torch or CuPy stream); None uses this thread's own.

        Returns:
            A handle with ``result(timeout=None)`` and ``done()``
            (a :class:`concurrent.futures.Future` on onnxruntime).
        """
        self._check_open()
        feeds, as_array = self._feeds(inputs, stream=stream)
        return self._submit(feeds, as_array, stream)

    def warmup(self, iterations: int = 10, batch: int | None = None) -> None:
        """Run ``iterations`` inferences on zeros (batch ``opt_batch`` by default)."""
        self._check_open()
        if iterations < 0:
            raise EngineInputError(f"warmup iterations must be >= 0, received {iterations}")
        batch = self.opt_batch if batch is None else batch
        feeds = {t.name: np.zeros(self._concrete_shape(t, batch), dtype=t.dtype) for t in self.inputs}
        for _ in range(iterations):
            self.infer(feeds)

    def sample_shape(self, name: str | None = None, batch: int = 1) -> tuple[int, ...]:
        """The shape an input must have for ``batch`` samples (first input by default).

        Raises:
            EngineClosedError: after :meth:`close` (like every other method).
        """
        self._check_open()
        info = self.inputs[0] if name is None else self._input_info(name)
        return self._concrete_shape(info, batch)

    def close(self) -> None:
        """Free every buffer, context and session; idempotent. Later calls raise EngineClosedError."""
        if self._closed:
            return
        self._closed = True
        self._release()

    def __enter__(self) -> "Engine":
        self._check_open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        ins = ", ".join(f"{t.name}: {t.describe()}" for t in getattr(self, "inputs", ()))
        return f"<{type(self).__name__} {getattr(self, 'path', '?')} [{self.backend}] {ins} batch " \
               f"{getattr(self, 'min_batch', '?')}..{getattr(self, 'max_batch', None) or 'any'} {state}>"

    # ---- backend hooks ----------------------------------------------------------------------
    _accepts_device_arrays = False

    def _run(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _submit(self, feeds: dict[str, Any], as_array: bool, stream: Any) -> Any:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def _device_refusal(self, name: str, value: DeviceArray) -> str:
        return f"input {name!r} is a GPU tensor but the {self.backend} backend reads host memory"

    # ---- shared checks ----------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError(
                f"engine {getattr(self, 'path', '?')} is closed; expected an open engine, received a call after "
                "close() (create a new Engine)"
            )

    def _input_info(self, name: str) -> TensorInfo:
        for t in self.inputs:
            if t.name == name:
                return t
        raise EngineInputError(f"unknown input {name!r}; expected one of {list(self.input_names)}")

    def _batch_text(self) -> str:
        if self.max_batch is None:
            return f"N >= {self.min_batch}"
        return f"{self.min_batch} <= N <= {self.max_batch}"

    def _concrete_shape(self, info: TensorInfo, batch: int) -> tuple[int, ...]:
        if any(d < 0 for d in info.shape[1:]):
            raise EngineInputError(
                f"input {info.name!r} has dynamic non-batch axes {info.shape}; give explicit arrays instead"
            )
        return (batch, *info.shape[1:]) if info.shape and info.shape[0] < 0 else info.shape

    def _feeds(self, inputs: Any, stream: Any = None) -> tuple[dict[str, Any], bool]:
        """Checked ``{name: np.ndarray | DeviceArray}`` and whether the caller passed one array."""
        if isinstance(inputs, Mapping):
            given = set(inputs)
            expected = set(self.input_names)
            if given != expected:
                raise EngineInputError(
                    f"expected inputs {sorted(expected)}, received {sorted(map(str, given))}"
                    + (f" (missing {sorted(expected - given)})" if expected - given else "")
                    + (f" (unknown {sorted(map(str, given - expected))})" if given - expected else "")
                )
            raw, as_array = dict(inputs), False
        else:
            if len(self.inputs) != 1:
                raise EngineInputError(
                    f"this engine has {len(self.inputs)} inputs {list(self.input_names)}; expected a dict "
                    f"{{name: array}}, received a single {type(inputs).__name__}"
                )
            raw, as_array = {self.inputs[0].name: inputs}, True
        consumer = self._consumer_stream(stream)
        feeds: dict[str, Any] = {}
        batch: int | None = None
        for info in self.inputs:
            value = classify_input(info.name, raw[info.name], consumer_stream=consumer)
            if isinstance(value, DeviceArray):
                if not self._accepts_device_arrays:
                    raise EngineInputError(
                        f"{self._device_refusal(info.name, value)}; expected a numpy array, received a CUDA "
                        f"tensor via {value.protocol} (copy it to the host first, e.g. tensor.cpu().numpy())"
                    )
                if not value.contiguous:
                    raise EngineInputError(
                        f"input {info.name!r}: expected a C-contiguous GPU tensor, received strided "
                        f"{value.dtype.name} {shape_text(value.shape)} (call .contiguous() on it)"
                    )
            n = self._check_tensor(info, value.shape, value.dtype)
            if batch is not None and n != batch:
                raise EngineInputError(f"all inputs must share one batch size; received {batch} and {n} ({info.name!r})")
            batch = n
            if isinstance(value, np.ndarray) and not value.flags.c_contiguous:
                value = np.ascontiguousarray(value)  # documented: strided host inputs are copied once
            feeds[info.name] = value
        return feeds, as_array

    def _consumer_stream(self, stream: Any) -> int | None:
        return None

    def _check_tensor(self, info: TensorInfo, shape: tuple[int, ...], dtype: np.dtype) -> int:
        """Validate one input; return its batch size."""
        expected = f"{info.describe()} with {self._batch_text()}" if info.shape and info.shape[0] < 0 else info.describe()
        received = f"{dtype_text(np.dtype(dtype))} of shape {shape_text(tuple(shape))}"
        if np.dtype(dtype) != info.dtype:
            raise EngineInputError(
                f"input {info.name!r}: expected {expected}, received {received} (wrong dtype; cast with "
                f".astype(np.{info.dtype.name}) - edgeres never casts silently)"
            )
        hint = ""
        if len(shape) == len(info.shape) - 1 and tuple(shape) == tuple(info.shape[1:]):
            hint = " (missing the batch axis: use x[None])"
        if len(shape) != len(info.shape) or any(d >= 0 and d != s for d, s in zip(info.shape[1:], shape[1:])):
            raise EngineInputError(f"input {info.name!r}: expected {expected}, received {received}{hint}")
        n = int(shape[0]) if shape else 1
        if info.shape and info.shape[0] >= 0:
            if n != info.shape[0]:
                raise EngineInputError(f"input {info.name!r}: expected {expected} (fixed batch), received {received}")
            return n
        if n < self.min_batch or (self.max_batch is not None and n > self.max_batch):
            raise EngineInputError(
                f"input {info.name!r}: batch {n} is outside this engine's profile; expected {expected}, "
                f"received {received}"
                + (" (split the batch or rebuild with a larger max batch)" if self.max_batch and n > self.max_batch else "")
            )
        return n

    def _pack(self, outputs: dict[str, np.ndarray], as_array: bool) -> Any:
        if as_array and len(outputs) == 1:
            return next(iter(outputs.values()))
        return outputs


def _engine_class_for(path: str | os.PathLike[str] | None) -> type[Engine]:
    if path is None:
        raise TypeError("Engine() needs a path to a .plan/.engine or .onnx file")
    suffix = Path(os.fspath(path)).suffix.lower()
    if suffix == ".onnx":
        from edgeres.runtime.onnx_engine import OnnxEngine

        return OnnxEngine
    if suffix in (".plan", ".engine", ".trt"):
        from edgeres.runtime.trt_engine import TrtEngine

        return TrtEngine
    raise EngineError(
        f"cannot tell the backend of {os.fspath(path)!r}: expected a file ending in .plan, .engine or .trt "
        f"(TensorRT) or .onnx (onnxruntime), received suffix {suffix or '(none)'!r}"
    )


def read_manifest(model_path: Path) -> dict[str, Any]:
    """What the runtime uses of the deploy bundle's ``manifest.json`` beside ``model_path``, or {} if none.

    Read bounded and typed (:func:`edgeres.bundle_manifest.runtime_manifest`): keys ``min_batch``,
    ``opt_batch``, ``max_batch`` (ints) and ``recipe`` (a dict), where the manifest has them.
    """
    manifest = runtime_manifest(model_path, EngineError)
    if manifest is None:
        return {}
    fields = {"min_batch": manifest.min_batch, "opt_batch": manifest.opt_batch, "max_batch": manifest.max_batch,
              "recipe": None if manifest.recipe is None else dict(manifest.recipe)}
    return {k: v for k, v in fields.items() if v is not None}


def verify_against_manifest(model_path: Path) -> None:
    """Refuse a model file inside a bundle whose sha256 differs from the manifest beside it.

    Raises:
        PlanIntegrityError: the manifest lists the file with another sha256, or is a bundle
            manifest that does not list it (a file dropped into the bundle).
    """
    manifest = runtime_manifest(model_path, EngineError)
    if manifest is not None:
        check_listed_file(manifest, model_path, PlanIntegrityError)


def recipe_from(value: Recipe | dict[str, Any] | None) -> Recipe | None:
    """A :class:`Recipe` from a Recipe, its dict form, or None."""
    if value is None or isinstance(value, Recipe):
        return value
    if isinstance(value, dict):
        return Recipe.from_dict(value)
    raise EngineError(f"recipe must be a Recipe or a dict, received {type(value).__name__}")

