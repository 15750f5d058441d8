"""Minimal CUDA device memory and device queries for the TensorRT adapter.

Internal stand-in until the runtime stage's buffer layer (``edgeres/runtime/cuda.py``)
exists: allocation, host-to-device copy and free, through cuda-python
(``cuda.bindings.runtime``, or ``cuda.cudart`` before cuda-python 12.6) and
pycuda as a fallback. Every import is lazy.

Not verified on a GPU in this project's CI (there is none); the calls follow
NVIDIA's ``samples/python/common.py`` (cuda-python) and the pycuda examples.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

from edgeres.errors import TensorRTUnavailableError

CUDA_HINT = "install cuda-python (pip install cuda-python) or pycuda; on Jetson both come from pip against JetPack's CUDA"


class DeviceAllocator(Protocol):
    """Device memory as plain integer pointers (what TensorRT's calibrator returns)."""

    def alloc(self, nbytes: int) -> int: ...
    def copy_htod(self, ptr: int, host: Any) -> None: ...
    def free(self, ptr: int) -> None: ...


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # type: ignore[no-redef]  # cuda-python < 12.6
    return cudart


def _check(result: tuple[Any, ...], what: str) -> Any:
    err, *rest = result
    if int(err) != 0:
        raise TensorRTUnavailableError(f"CUDA call {what} failed with {err!r}")
    return rest[0] if len(rest) == 1 else tuple(rest)


class CudaPythonAllocator:
    """Device memory through cuda-python's runtime API."""

    def __init__(self) -> None:
        self._rt = _cudart()

    def alloc(self, nbytes: int) -> int:
        return int(_check(self._rt.cudaMalloc(int(nbytes)), "cudaMalloc"))

    def copy_htod(self, ptr: int, host: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check(self._rt.cudaMemcpy(ptr, host.ctypes.data, host.nbytes, kind), "cudaMemcpy")

    def free(self, ptr: int) -> None:
        _check(self._rt.cudaFree(ptr), "cudaFree")


class PyCudaAllocator:
    """Device memory through pycuda (creates its primary context on first use)."""

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401
        import pycuda.driver as drv

        self._drv = drv
        self._live: dict[int, Any] = {}

    def alloc(self, nbytes: int) -> int:
        mem = self._drv.mem_alloc(int(nbytes))
        self._live[int(mem)] = mem
        return int(mem)

    def copy_htod(self, ptr: int, host: Any) -> None:
        self._drv.memcpy_htod(ptr, host)

    def free(self, ptr: int) -> None:
        mem = self._live.pop(ptr, None)
        if mem is not None:
            mem.free()


_ALLOCATORS: tuple[Callable[[], DeviceAllocator], ...] = (CudaPythonAllocator, PyCudaAllocator)


def default_allocator() -> DeviceAllocator:
    """The first device allocator whose package imports (cuda-python, then pycuda)."""
    errors = []
    for make in _ALLOCATORS:
        try:
            return make()
        except ImportError as exc:
            errors.append(f"{make.__name__}: {exc}")
    raise TensorRTUnavailableError(f"no CUDA Python binding for device memory ({'; '.join(errors)}); {CUDA_HINT}")


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """The local GPU 0."""

    name: str
    compute_capability: tuple[int, int]


def _device_from_cuda_python() -> DeviceInfo | None:
    rt = _cudart()
    err, count = rt.cudaGetDeviceCount()
    if int(err) != 0 or count < 1:
        return None
    err, props = rt.cudaGetDeviceProperties(0)
    if int(err) != 0:
        return None
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    return DeviceInfo(name=name, compute_capability=(int(props.major), int(props.minor)))


def _device_from_torch() -> DeviceInfo | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return DeviceInfo(name=torch.cuda.get_device_name(0), compute_capability=tuple(torch.cuda.get_device_capability(0)))


_DEVICE_QUERIES: tuple[Callable[[], DeviceInfo | None], ...] = (_device_from_cuda_python, _device_from_torch)


def local_device() -> DeviceInfo | None:
    """GPU 0 via cuda-python, else torch.cuda; None when there is no GPU or no binding."""
    for query in _DEVICE_QUERIES:
        try:
            info = query()
        except ImportError:
            continue
        except Exception:  # a driver-less machine makes the bindings raise all sorts
            continue
        if info is not None:
            return info
    return None
