"""A small CUDA buffer layer over cuda-python (``cuda.bindings.runtime``), with pycuda as fallback.

This is edgeres' one place that calls CUDA. The TensorRT engine needs only:
device and pinned-host allocation, async host<->device copies, streams, events
and (optionally) CUDA graph capture; the TensorRT build (``edgeres.trt``) needs
device buffers with a blocking host-to-device copy for its INT8 calibrator and
the local GPU's name and compute capability (:func:`local_device`). Both
bindings sit behind :class:`CudaApi` so neither the engine nor the builder
touches a binding directly. cuda-python is NVIDIA's maintained binding
(TensorRT's own samples use it) and is tried first; pycuda is used where it is
what a device has.

Every cuda-python runtime call returns a tuple ``(cudaError_t, *values)``;
:func:`check_result` turns a non-success code into :class:`CudaError` naming
the call, the error and CUDA's description.

NOT VERIFIED ON A GPU: no GPU was available when this was written. The
cuda-python error handling is tested against the real enums and tuples (the
real binding on a machine without a driver returns error tuples); pycuda
behaviour follows its documented API only.
"""

from __future__ import annotations

import ctypes
import dataclasses
import threading
from typing import Any, Callable

import numpy as np

from edgeres.runtime._errors import CudaError, CudaUnavailableError, EngineError, EngineUnavailableError

_NO_DEVICE_ERRORS = {"cudaErrorNoDevice", "cudaErrorInsufficientDriver", "cudaErrorDevicesUnavailable"}

# CUDA major of the device's driver -> the cuda-python that loads there (pyproject's cuda11/12/13 extras).
# cuda-bindings 12.x needs a CUDA 12 driver (>= 525.60.13, its install page); 13.x a CUDA 13 one. JetPack 5:
# CUDA 11.4, Python 3.8, where this range resolves to 11.8.2 (the newest 11.8 with an aarch64 cp38 wheel);
# JetPack 6.0: CUDA 12.2, 6.1/6.2: CUDA 12.6 (dusty-nv/jetson-containers jetson_containers/l4t_version.py);
# Jetson Thor / JetPack 7: CUDA 13. Not verified on a device.
CUDA_PYTHON_FOR_CUDA: dict[int, str] = {
    11: "cuda-python>=11.8,<12",
    12: "cuda-python>=12.0,<13",
    13: "cuda-python>=13.0,<14",
}
INSTALL_CUDA_PYTHON = (
    "pip install the cuda-python of this device's CUDA: "
    + "; ".join(f"CUDA {major}: '{req}'" for major, req in CUDA_PYTHON_FOR_CUDA.items())
    + " (JetPack 5 is CUDA 11.4, JetPack 6 CUDA 12, Thor/JetPack 7 CUDA 13)"
)


@dataclasses.dataclass
class HostBuffer:
    """Pinned (page-locked) host memory seen as a flat uint8 numpy array."""

    ptr: int
    nbytes: int
    array: np.ndarray
    owner: Any = None  # binding object that owns the memory (pycuda)

    def view(self, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """A typed view of the first elements, shaped ``shape``."""
        count = int(np.prod(shape, dtype=np.int64))
        return self.array.view(dtype)[:count].reshape(shape)


@dataclasses.dataclass
class DeviceBuffer:
    """Device memory: an address and a size."""

    ptr: int
    nbytes: int
    owner: Any = None  # binding object that owns the memory (pycuda)


def stream_handle_of(stream: Any) -> int:
    """The raw ``cudaStream_t`` value of a stream from any library, without importing it.

    Accepts an int, ``__cuda_stream__`` (cuda.core), torch (``cuda_stream``),
    CuPy/Polygraphy (``ptr``), pycuda (``handle``) and cuda-python handle types (``getPtr``).
    """
    if isinstance(stream, int):
        return stream
    if hasattr(stream, "__cuda_stream__"):
        return int(stream.__cuda_stream__()[1])
    for attr in ("cuda_stream", "ptr", "handle"):
        value = getattr(stream, attr, None)
        if isinstance(value, int):
            return value
    if hasattr(stream, "getPtr"):
        return int(stream.getPtr())
    raise EngineError(
        "expected a CUDA stream (int handle, cuda-python, pycuda, torch or CuPy stream), "
        f"received {type(stream).__name__}"
    )


def error_name(err: Any) -> str:
    """``cudaErrorNoDevice``-style name of an error enum (or its repr)."""
    return str(getattr(err, "name", err))


def error_code(err: Any) -> int:
    """The number of a ``cudaError_t`` (an int enum, or any enum-like object with ``.value``)."""
    return int(getattr(err, "value", err))


def check_result(result: Any, call: str, describe: Callable[[Any], str] | None = None) -> Any:
    """Unpack a cuda-python ``(error, *values)`` tuple; raise :class:`CudaError` on failure.

    Returns None, the single value, or a tuple of values.
    """
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if error_code(err) != 0:
        detail = describe(err) if describe is not None else ""
        raise CudaError(
            f"{call} failed: expected cudaSuccess, received {error_name(err)} ({error_code(err)})"
            + (f": {detail}" if detail else "")
        )
    if not values:
        return None
    return values[0] if len(values) == 1 else values


class CudaApi:
    """What the TensorRT engine needs from CUDA. Streams/events/graphs are opaque handles."""

    name = "abstract"

    def activate(self) -> None:
        """Make this API's device current on the calling thread."""
        raise NotImplementedError

    def device_count(self) -> int:
        raise NotImplementedError

    def compute_capability(self) -> tuple[int, int]:
        raise NotImplementedError

    def device_name(self) -> str:
        raise NotImplementedError

    def malloc(self, nbytes: int) -> DeviceBuffer:
        raise NotImplementedError

    def free(self, buf: DeviceBuffer) -> None:
        raise NotImplementedError

    def malloc_host(self, nbytes: int) -> HostBuffer:
        raise NotImplementedError

    def free_host(self, buf: HostBuffer) -> None:
        raise NotImplementedError

    def memcpy_htod(self, dst_ptr: int, src: np.ndarray) -> None:
        """Blocking copy from any (pageable) host array; returns when the device holds the data."""
        raise NotImplementedError

    def memcpy_htod_async(self, dst_ptr: int, src: np.ndarray, stream: Any) -> None:
        raise NotImplementedError

    def memcpy_dtoh_async(self, dst: np.ndarray, src_ptr: int, stream: Any) -> None:
        raise NotImplementedError

    def stream_create(self) -> Any:
        raise NotImplementedError

    def stream_from(self, stream: Any) -> Any:
        """A caller's stream as this API's stream handle (not owned)."""
        raise NotImplementedError

    def stream_ptr(self, stream: Any) -> int:
        raise NotImplementedError

    def stream_synchronize(self, stream: Any) -> None:
        raise NotImplementedError

    def stream_destroy(self, stream: Any) -> None:
        raise NotImplementedError

    def event_create(self) -> Any:
        raise NotImplementedError

    def event_record(self, event: Any, stream: Any) -> None:
        raise NotImplementedError

    def event_query(self, event: Any) -> bool:
        """True once the work before the event's record has finished."""
        raise NotImplementedError

    def event_synchronize(self, event: Any) -> None:
        raise NotImplementedError

    def event_destroy(self, event: Any) -> None:
        raise NotImplementedError

    def stream_wait_event(self, stream: Any, event: Any) -> None:
        raise NotImplementedError

    def order_after(self, foreign_stream: int, stream: Any, scratch_event: Any) -> None:
        """Make ``stream`` wait for the work queued so far on a caller's raw stream handle."""
        self.event_record(scratch_event, self.stream_from(foreign_stream))
        self.stream_wait_event(stream, scratch_event)

    def graph_capture(self, stream: Any, enqueue: Callable[[], None]) -> Any:
        """Capture the work ``enqueue`` puts on ``stream`` into an instantiated graph."""
        raise EngineError(f"CUDA graphs need cuda-python; the {self.name} binding does not offer them here")

    def graph_launch(self, graph: Any, stream: Any) -> None:
        raise NotImplementedError

    def graph_destroy(self, graph: Any) -> None:
        raise NotImplementedError


def _host_array(ptr: int, nbytes: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr)) if nbytes else np.empty(0, np.uint8)


def import_cudart() -> Any:
    """``cuda.bindings.runtime`` (cuda-python >= 12.6), else the older ``cuda.cudart``."""
    try:
        from cuda.bindings import runtime

        return runtime
    except ImportError:
        from cuda import cudart  # cuda-python < 12.6

        return cudart


class CudaPythonApi(CudaApi):
    """:class:`CudaApi` over cuda-python's runtime API. Handles are ints.

    Raises:
        CudaUnavailableError: cuda-python is missing, or it sees no usable GPU.
    """

    name = "cuda-python"

    def __init__(self, device: int = 0, cudart: Any = None) -> None:
        if cudart is None:
            try:
                cudart = import_cudart()
            except ImportError as exc:
                raise CudaUnavailableError(
                    "cuda-python is not installed; expected `cuda.bindings` or pycuda for TensorRT engines "
                    f"(pip install cuda-python: {INSTALL_CUDA_PYTHON})"
                ) from exc
        self.rt = cudart
        self.device = int(device)
        count = self._count_or_unavailable()
        if not 0 <= self.device < count:
            raise CudaUnavailableError(f"expected CUDA device {self.device}, received {count} device(s)")
        self.activate()

    def _count_or_unavailable(self) -> int:
        result = self.rt.cudaGetDeviceCount()
        if error_code(result[0]) != 0 and error_name(result[0]) in _NO_DEVICE_ERRORS | {"cudaErrorInitializationError"}:
            raise CudaUnavailableError(
                f"no usable CUDA GPU: cudaGetDeviceCount returned {error_name(result[0])} "
                f"({self._describe(result[0])}); TensorRT engines need an NVIDIA GPU and driver "
                "(use the .onnx model on onnxruntime here)"
            )
        return int(self._call(result, "cudaGetDeviceCount"))

    def _describe(self, err: Any) -> str:
        try:
            text = self.rt.cudaGetErrorString(err)[1]
            return text.decode() if isinstance(text, bytes) else str(text)
        except Exception:  # describing an error must never hide it
            return ""

    def _call(self, result: Any, call: str) -> Any:
        return check_result(result, call, self._describe)

    def activate(self) -> None:
        self._call(self.rt.cudaSetDevice(self.device), f"cudaSetDevice({self.device})")

    def device_count(self) -> int:
        return int(self._call(self.rt.cudaGetDeviceCount(), "cudaGetDeviceCount"))

    def compute_capability(self) -> tuple[int, int]:
        attr = self.rt.cudaDeviceAttr
        major = self._call(self.rt.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMajor, self.device),
                           "cudaDeviceGetAttribute(ComputeCapabilityMajor)")
        minor = self._call(self.rt.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMinor, self.device),
                           "cudaDeviceGetAttribute(ComputeCapabilityMinor)")
        return int(major), int(minor)

    def device_name(self) -> str:
        props = self._call(self.rt.cudaGetDeviceProperties(self.device), "cudaGetDeviceProperties")
        name = props.name
        return (name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else str(name)).strip()

    def malloc(self, nbytes: int) -> DeviceBuffer:
        ptr = self._call(self.rt.cudaMalloc(max(int(nbytes), 1)), f"cudaMalloc({nbytes})")
        return DeviceBuffer(ptr=int(ptr), nbytes=int(nbytes))

    def free(self, buf: DeviceBuffer) -> None:
        self._call(self.rt.cudaFree(buf.ptr), "cudaFree")

    def malloc_host(self, nbytes: int) -> HostBuffer:
        ptr = int(self._call(self.rt.cudaMallocHost(max(int(nbytes), 1)), f"cudaMallocHost({nbytes})"))
        return HostBuffer(ptr=ptr, nbytes=int(nbytes), array=_host_array(ptr, int(nbytes)))

    def free_host(self, buf: HostBuffer) -> None:
        buf.array = np.empty(0, np.uint8)  # drop the view before the memory goes
        self._call(self.rt.cudaFreeHost(buf.ptr), "cudaFreeHost")

    def memcpy_htod(self, dst_ptr: int, src: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpy(dst_ptr, src.ctypes.data, src.nbytes, kind), "cudaMemcpy(H2D)")

    def memcpy_htod_async(self, dst_ptr: int, src: np.ndarray, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpyAsync(dst_ptr, src.ctypes.data, src.nbytes, kind, stream), "cudaMemcpyAsync(H2D)")

    def memcpy_dtoh_async(self, dst: np.ndarray, src_ptr: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.rt.cudaMemcpyAsync(dst.ctypes.data, src_ptr, dst.nbytes, kind, stream), "cudaMemcpyAsync(D2H)")

    def stream_create(self) -> int:
        flags = self.rt.cudaStreamNonBlocking
        return int(self._call(self.rt.cudaStreamCreateWithFlags(flags), "cudaStreamCreateWithFlags"))

    def stream_from(self, stream: Any) -> int:
        return stream_handle_of(stream)

    def stream_ptr(self, stream: Any) -> int:
        return int(stream)

    def stream_synchronize(self, stream: Any) -> None:
        self._call(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def stream_destroy(self, stream: Any) -> None:
        self._call(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def event_create(self) -> int:
        flags = self.rt.cudaEventDisableTiming
        return int(self._call(self.rt.cudaEventCreateWithFlags(flags), "cudaEventCreateWithFlags"))

    def event_record(self, event: Any, stream: Any) -> None:
        self._call(self.rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def event_query(self, event: Any) -> bool:
        result = self.rt.cudaEventQuery(event)
        err = result[0] if isinstance(result, tuple) else result
        if error_name(err) == "cudaErrorNotReady":
            return False
        self._call(result, "cudaEventQuery")
        return True

    def event_synchronize(self, event: Any) -> None:
        self._call(self.rt.cudaEventSynchronize(event), "cudaEventSynchronize")

    def event_destroy(self, event: Any) -> None:
        self._call(self.rt.cudaEventDestroy(event), "cudaEventDestroy")

    def stream_wait_event(self, stream: Any, event: Any) -> None:
        self._call(self.rt.cudaStreamWaitEvent(stream, event, 0), "cudaStreamWaitEvent")

    def graph_capture(self, stream: Any, enqueue: Callable[[], None]) -> int:
        """Capture ``enqueue``'s work on ``stream`` and instantiate it (trtexec's TrtCudaGraph, sampleDevice.h).

        Instantiates with ``cudaGraphInstantiateWithFlags(graph, 0)``: the same Python signature
        ``(graph, flags)`` in cuda-python 11.8, 12.x and 13.x, whereas ``cudaGraphInstantiate`` is
        ``(graph, pLogBuffer, bufferSize)`` in 11.x and ``(graph, flags)`` from 12.0
        (tests/data/cuda_python_signatures.json, read from the real wheels). A failed enqueue ends
        the capture, discards the partial graph and clears the sticky error, as trtexec's
        ``endCaptureOnError`` does; every failure, a binding that rejects the call included, is a
        :class:`CudaError`, so the engine can fall back to plain execution.
        """
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        try:
            self._call(self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")
            try:
                enqueue()
            except BaseException as exc:
                self._end_capture_on_error(stream)
                if isinstance(exc, EngineError):
                    raise CudaError(f"the enqueue failed under CUDA graph capture: {exc}") from exc
                raise
            graph = self._call(self.rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
            try:
                exec_graph = self._call(self.rt.cudaGraphInstantiateWithFlags(graph, 0), "cudaGraphInstantiateWithFlags")
            finally:
                self._call(self.rt.cudaGraphDestroy(graph), "cudaGraphDestroy")
        except TypeError as exc:  # a binding whose signature differs from the recorded ones
            raise CudaError(f"CUDA graph capture: cuda-python rejected the call ({exc})") from exc
        return int(exec_graph)

    def _end_capture_on_error(self, stream: Any) -> None:
        """End a failed capture and drop what it made (sampleDevice.h ``TrtCudaGraph::endCaptureOnError``)."""
        result = self.rt.cudaStreamEndCapture(stream)
        if isinstance(result, tuple) and error_code(result[0]) == 0 and len(result) > 1 and result[1]:
            self.rt.cudaGraphDestroy(result[1])
        self.rt.cudaGetLastError()  # "Clean up any CUDA error."

    def graph_launch(self, graph: Any, stream: Any) -> None:
        self._call(self.rt.cudaGraphLaunch(graph, stream), "cudaGraphLaunch")

    def graph_destroy(self, graph: Any) -> None:
        self._call(self.rt.cudaGraphExecDestroy(graph), "cudaGraphExecDestroy")


class PycudaApi(CudaApi):
    """:class:`CudaApi` over pycuda (driver API, primary context pushed per thread).

    Streams are ``pycuda.driver.Stream`` objects; a caller's stream must be one
    too (pycuda cannot wrap a foreign handle). No CUDA graphs.
    """

    name = "pycuda"

    def __init__(self, device: int = 0) -> None:
        try:
            import pycuda.driver as drv
        except ImportError as exc:
            raise CudaUnavailableError("pycuda is not installed (pip install pycuda)") from exc
        self.drv = drv
        try:
            drv.init()
            count = drv.Device.count()
        except drv.Error as exc:
            raise CudaUnavailableError(f"no usable CUDA GPU: pycuda says {exc}") from exc
        if not 0 <= device < count:
            raise CudaUnavailableError(f"expected CUDA device {device}, received {count} device(s)")
        self.device = int(device)
        self._dev = drv.Device(self.device)
        self._context = self._dev.retain_primary_context()
        self._local = threading.local()
        self.activate()

    def _guard(self, call: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except self.drv.Error as exc:
            raise CudaError(f"{call} failed: expected success, received {type(exc).__name__}: {exc}") from exc

    def activate(self) -> None:
        if not getattr(self._local, "pushed", False):
            self._context.push()
            self._local.pushed = True

    def device_count(self) -> int:
        return int(self.drv.Device.count())

    def compute_capability(self) -> tuple[int, int]:
        major, minor = self._dev.compute_capability()
        return int(major), int(minor)

    def device_name(self) -> str:
        return str(self._dev.name())

    def malloc(self, nbytes: int) -> DeviceBuffer:
        alloc = self._guard("mem_alloc", self.drv.mem_alloc, max(int(nbytes), 1))
        return DeviceBuffer(ptr=int(alloc), nbytes=int(nbytes), owner=alloc)

    def free(self, buf: DeviceBuffer) -> None:
        self._guard("DeviceAllocation.free", buf.owner.free)

    def malloc_host(self, nbytes: int) -> HostBuffer:
        array = self._guard("pagelocked_empty", self.drv.pagelocked_empty, max(int(nbytes), 1), np.uint8)
        return HostBuffer(ptr=int(array.ctypes.data), nbytes=int(nbytes), array=array[: int(nbytes)], owner=array)

    def free_host(self, buf: HostBuffer) -> None:
        owner, buf.owner, buf.array = buf.owner, None, np.empty(0, np.uint8)
        self._guard("HostAllocation.free", owner.base.free)

    def memcpy_htod(self, dst_ptr: int, src: np.ndarray) -> None:
        self._guard("memcpy_htod", self.drv.memcpy_htod, dst_ptr, src)

    def memcpy_htod_async(self, dst_ptr: int, src: np.ndarray, stream: Any) -> None:
        self._guard("memcpy_htod_async", self.drv.memcpy_htod_async, dst_ptr, src, stream)

    def memcpy_dtoh_async(self, dst: np.ndarray, src_ptr: int, stream: Any) -> None:
        self._guard("memcpy_dtoh_async", self.drv.memcpy_dtoh_async, dst, src_ptr, stream)

    def stream_create(self) -> Any:
        return self._guard("Stream", self.drv.Stream)

    def stream_from(self, stream: Any) -> Any:
        if isinstance(stream, self.drv.Stream):
            return stream
        raise EngineError(
            f"with the pycuda binding, expected a pycuda.driver.Stream, received {type(stream).__name__} "
            "(install cuda-python to pass other stream types)"
        )

    def stream_ptr(self, stream: Any) -> int:
        return int(stream.handle)

    def stream_synchronize(self, stream: Any) -> None:
        self._guard("Stream.synchronize", stream.synchronize)

    def stream_destroy(self, stream: Any) -> None:
        pass  # pycuda frees the stream when the object is collected

    def event_create(self) -> Any:
        return self._guard("Event", self.drv.Event, self.drv.event_flags.DISABLE_TIMING)

    def event_record(self, event: Any, stream: Any) -> None:
        self._guard("Event.record", event.record, stream)

    def event_query(self, event: Any) -> bool:
        return bool(self._guard("Event.query", event.query))

    def event_synchronize(self, event: Any) -> None:
        self._guard("Event.synchronize", event.synchronize)

    def event_destroy(self, event: Any) -> None:
        pass  # collected with the object

    def stream_wait_event(self, stream: Any, event: Any) -> None:
        self._guard("Stream.wait_for_event", stream.wait_for_event, event)

    def order_after(self, foreign_stream: int, stream: Any, scratch_event: Any) -> None:
        # pycuda cannot wrap a raw stream handle: wait for the whole context instead (coarse, correct)
        self._guard("Context.synchronize", self.drv.Context.synchronize)


# binding name -> constructor, in order of preference (declarative; see module docstring)
BINDINGS: dict[str, Callable[[int], CudaApi]] = {
    "cuda-python": CudaPythonApi,
    "pycuda": PycudaApi,
}


def cuda_api(device: int = 0, binding: str | None = None) -> CudaApi:
    """The first CUDA binding that imports and sees a GPU (or the one named by ``binding``).

    Raises:
        CudaUnavailableError: none imports, or none sees a GPU; the message lists why each failed.
    """
    if binding is not None and binding not in BINDINGS:
        raise EngineError(f"binding must be one of {sorted(BINDINGS)}, received {binding!r}")
    names = [binding] if binding else list(BINDINGS)
    reasons = []
    for name in names:
        try:
            return BINDINGS[name](device)
        except EngineUnavailableError as exc:
            reasons.append(f"{name}: {exc}")
    raise CudaUnavailableError("no CUDA binding is usable: " + "; ".join(reasons))


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """One local GPU, as a TensorRT build records it in the plan's sidecar."""

    name: str
    compute_capability: tuple[int, int]


def local_device(device: int = 0) -> DeviceInfo | None:
    """Name and compute capability of local GPU ``device`` through :func:`cuda_api`; None without one.

    None means: no binding imports, none sees a usable GPU (no driver, no
    device, too old a driver), or a query call failed (:class:`CudaError`); the
    build then records the device as unknown. Anything else is a bug and propagates.
    """
    try:
        api = cuda_api(device)
        return DeviceInfo(name=api.device_name(), compute_capability=api.compute_capability())
    except (EngineUnavailableError, CudaError):
        return None
