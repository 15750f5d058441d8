"""INT8 implicit calibration (TensorRT 8.5 .. 10): ``trt.IInt8EntropyCalibrator2`` fed from an edgeres dataset.

Split out of :mod:`edgeres.trt.loaders` the way Polygraphy keeps its calibrator
in ``polygraphy/backend/trt/calibrator.py``. ``tensorrt`` is imported through
:func:`edgeres.trt.guard.require_tensorrt` on first use. TensorRT 11 removed
implicit calibration: build INT8 from a Q/DQ ONNX there.

Not verified on a GPU; the calibrator class is checked against the real 8.6.1 and
10.3.0 bindings in tests/trt_stubs/conformance.py.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Iterator, Protocol

from edgeres.errors import BuildError, CalibrationError, OutputPathError, TensorRTUnavailableError
from edgeres.trt.caps import capabilities
from edgeres.trt.guard import require_tensorrt

if TYPE_CHECKING:
    from edgeres.runtime.cuda import CudaApi, DeviceBuffer


class DeviceAllocator(Protocol):
    """Device memory as plain integer pointers, what the calibrator hands TensorRT (injectable for tests)."""

    def alloc(self, nbytes: int) -> int: ...
    def copy_htod(self, ptr: int, host: Any) -> None: ...
    def free(self, ptr: int) -> None: ...


class CudaAllocator:
    """:class:`DeviceAllocator` over :mod:`edgeres.runtime.cuda` (owns the buffers it allocates).

    Not verified on a GPU in this project's CI; the calls it makes are the runtime
    layer's, checked against the real cuda-python binding in tests/test_runtime_cuda.py.
    """

    def __init__(self, api: CudaApi) -> None:
        self._api = api
        self._live: dict[int, DeviceBuffer] = {}  # ptr -> buffer (pycuda frees through the owning object)

    def alloc(self, nbytes: int) -> int:
        buf = self._api.malloc(int(nbytes))
        self._live[buf.ptr] = buf
        return buf.ptr

    def copy_htod(self, ptr: int, host: Any) -> None:
        self._api.memcpy_htod(ptr, host)

    def free(self, ptr: int) -> None:
        buf = self._live.pop(ptr, None)
        if buf is not None:
            self._api.free(buf)


def default_allocator() -> CudaAllocator:
    """Device memory on GPU 0 through the first usable CUDA binding (cuda-python, then pycuda).

    Raises:
        TensorRTUnavailableError: no binding imports or none sees a GPU; the message says why for each
            (the runtime's CudaUnavailableError, re-raised as the builder's error: this is a build).
    """
    from edgeres.runtime import cuda
    from edgeres.runtime._errors import CudaUnavailableError

    try:
        return CudaAllocator(cuda.cuda_api())
    except CudaUnavailableError as exc:
        raise TensorRTUnavailableError(f"INT8 calibration needs GPU memory: {exc}") from exc


@functools.lru_cache(maxsize=None)
def _calibrator_class(trt: ModuleType) -> type:
    base = trt.IInt8EntropyCalibrator2

    class EntropyCalibrator(base):  # type: ignore[misc, valid-type]
        """Feeds TensorRT float32 NCHW batches from an edgeres dataset; reads/writes the calibration cache.

        Errors raised while TensorRT drives it are kept in ``.error`` (an exception thrown
        back into TensorRT's C++ would abort the build without our message) and
        re-raised by :func:`build_engine` after the build returns.
        """

        def __init__(self, dataset: Any, cache_path: Path | None, batch_size: int,
                     input_shape: tuple[int, int, int] | None, allocator: DeviceAllocator | None) -> None:
            base.__init__(self)  # pybind11 trampolines need the base initialised explicitly
            self.dataset = dataset
            self.cache_path = None if cache_path is None else Path(cache_path)
            self.batch_size = int(batch_size)
            self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
            self._allocator = allocator
            self._batches: Iterator[Any] | None = None
            self._device: dict[str, tuple[int, int]] = {}  # name -> (ptr, nbytes)
            self.batches_fed = 0
            self.batches_skipped = 0
            self.error: Exception | None = None

        def get_batch_size(self) -> int:
            return self.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                return self._next_pointers(list(names))
            except Exception as exc:  # noqa: BLE001 - handed back after the build, see class doc
                self.error = exc
                self.free()
                return None

        def _next_pointers(self, names: list[str]) -> list[int] | None:
            import numpy as np

            if self.dataset is None:
                return None
            if len(names) != 1:
                raise CalibrationError(f"the calibrator feeds one input, TensorRT asked for {names}")
            if self._batches is None:
                self._batches = iter(self.dataset.batches(self.batch_size))
            for batch in self._batches:
                array = np.ascontiguousarray(batch)
                if array.dtype != np.float32:
                    raise CalibrationError(f"calibration batches must be float32 NCHW, received {array.dtype}")
                want = (self.batch_size, *self.input_shape) if self.input_shape else None
                if array.ndim != 4 or (want and array.shape[1:] != want[1:]):
                    raise CalibrationError(f"calibration batch has shape {array.shape}, expected {want or 'NCHW'}")
                if array.shape[0] != self.batch_size:  # TensorRT needs exactly get_batch_size() images
                    self.batches_skipped += 1
                    continue
                ptr = self._buffer(names[0], array.nbytes)
                self._allocator.copy_htod(ptr, array)
                self.batches_fed += 1
                return [ptr]
            if self.batches_fed == 0:
                raise CalibrationError(
                    f"calibration data gave no full batch of {self.batch_size} images "
                    f"({self.batches_skipped} partial batches); lower the calibration batch size or add images"
                )
            self.free()
            return None

        def _buffer(self, name: str, nbytes: int) -> int:
            if name not in self._device:
                self._device[name] = (int(self._allocator.alloc(nbytes)), nbytes)
            ptr, have = self._device[name]
            if have != nbytes:
                raise CalibrationError(f"calibration batch of {nbytes} bytes does not fit the {have}-byte buffer")
            return ptr

        def read_calibration_cache(self) -> bytes | None:
            if self.cache_path is None or not self.cache_path.is_file():
                return None
            return self.cache_path.read_bytes() or None

        def write_calibration_cache(self, cache: Any) -> None:
            if self.cache_path is None:
                return
            from edgeres._io import write_bytes_atomic

            try:
                write_bytes_atomic(self.cache_path, bytes(cache))
            except (OSError, OutputPathError) as exc:
                self.error = CalibrationError(f"could not write calibration cache {self.cache_path}: {exc}")

        def free(self) -> None:
            for ptr, _ in self._device.values():
                self._allocator.free(ptr)
            self._device.clear()

    return EntropyCalibrator


def Int8EntropyCalibrator(dataset: Any, cache_path: str | os.PathLike[str] | None, batch_size: int = 8,  # noqa: N802
                          input_shape: tuple[int, int, int] | None = None,
                          allocator: DeviceAllocator | None = None) -> Any:
    """A ``trt.IInt8EntropyCalibrator2`` fed by ``dataset.batches(batch_size)`` (float32 NCHW).

    ``cache_path`` is read first (a valid cache skips calibration) and written after
    calibration. ``allocator`` provides device memory (a :class:`DeviceAllocator`); default:
    :func:`default_allocator`. TensorRT 11 has no implicit calibration: use a Q/DQ ONNX.
    """
    trt = require_tensorrt()
    if not capabilities(trt).implicit_int8_calibrator:
        raise BuildError(
            f"TensorRT {trt.__version__} has no implicit INT8 calibrator (IInt8EntropyCalibrator2 was removed in 11); "
            "build INT8 from the Q/DQ ONNX (int8_mode='qdq')"
        )
    if allocator is None and dataset is not None:
        allocator = default_allocator()
    return _calibrator_class(trt)(dataset, None if cache_path is None else Path(cache_path), batch_size,
                                  input_shape, allocator)
