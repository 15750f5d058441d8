"""In-memory stand-ins for TensorRT and CUDA, to test TrtEngine's own logic on a CPU.

NOT TensorRT and NOT a GPU: "device" memory is host memory, streams are queues
of deferred operations run on synchronize, and the "engine" is an onnxruntime
session reading and writing the bound addresses. What this checks is the
engine's bookkeeping: shapes set per call, addresses bound, copies ordered on
the stream, results collected before buffers are reused, one context per
thread, graphs replayed, everything freed by close(). The real TensorRT API
surface is checked separately against the real bindings (conformance tests).

Execution contexts and optimization profiles follow each version's header
(NVIDIA/TensorRT include/NvInferRuntime.h; line numbers at release/8.5 68b5072f,
release/8.6 a0215c1a, release/10.0 ccf11997), independently of edgeres' own
rule table so that a wrong table fails here; see :data:`PROFILE_RULES`.
"""

from __future__ import annotations

import ctypes
import enum
import itertools
import threading
import types
import weakref
from typing import Any, Callable

import numpy as np

from edgeres.runtime.cuda import CudaApi, DeviceBuffer, HostBuffer

PLAN_MAGIC = b"STANDIN-PLAN\0"


def _view(ptr: int, nbytes: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))


class StandinCuda(CudaApi):
    """CudaApi over host memory with deferred per-stream execution; counts what is live."""

    name = "standin"

    def __init__(self, compute_capability: tuple[int, int] = (8, 7)) -> None:
        self.cc = compute_capability
        self.lock = threading.Lock()
        self.ids = itertools.count(1000)
        self.live_device: dict[int, np.ndarray] = {}
        self.live_host: dict[int, np.ndarray] = {}
        self.streams: dict[int, list[Callable[[], None]]] = {}
        self.events: dict[int, int | None] = {}
        self.graphs: dict[int, list[Callable[[], None]]] = {}
        self.capturing: dict[int, list[Callable[[], None]]] = {}
        self.h2d = self.d2h = self.launches = self.captures = 0

    # device
    def activate(self) -> None:
        pass

    def device_count(self) -> int:
        return 1

    def compute_capability(self) -> tuple[int, int]:
        return self.cc

    def device_name(self) -> str:
        return "stand-in"

    def malloc(self, nbytes: int) -> DeviceBuffer:
        arr = np.zeros(max(nbytes, 1), np.uint8)
        with self.lock:
            self.live_device[arr.ctypes.data] = arr
        return DeviceBuffer(arr.ctypes.data, nbytes)

    def free(self, buf: DeviceBuffer) -> None:
        with self.lock:
            del self.live_device[buf.ptr]

    def malloc_host(self, nbytes: int) -> HostBuffer:
        arr = np.zeros(max(nbytes, 1), np.uint8)
        with self.lock:
            self.live_host[arr.ctypes.data] = arr
        return HostBuffer(arr.ctypes.data, nbytes, arr[:nbytes])

    def free_host(self, buf: HostBuffer) -> None:
        with self.lock:
            del self.live_host[buf.ptr]

    # streams: operations are queued and run on synchronize, like a real stream that has not run yet
    def enqueue(self, stream: int, op: Callable[[], None]) -> None:
        if stream in self.capturing:
            self.capturing[stream].append(op)
        else:
            self.streams[stream].append(op)

    def memcpy_htod(self, dst_ptr: int, src: np.ndarray) -> None:
        self.h2d += 1
        ctypes.memmove(dst_ptr, src.ctypes.data, src.nbytes)  # blocking: done when it returns

    def memcpy_htod_async(self, dst_ptr: int, src: np.ndarray, stream: Any) -> None:
        self.h2d += 1
        src_ptr, n = src.ctypes.data, src.nbytes
        self.enqueue(stream, lambda: ctypes.memmove(dst_ptr, src_ptr, n))

    def memcpy_dtoh_async(self, dst: np.ndarray, src_ptr: int, stream: Any) -> None:
        self.d2h += 1
        dst_ptr, n = dst.ctypes.data, dst.nbytes
        self.enqueue(stream, lambda: ctypes.memmove(dst_ptr, src_ptr, n))

    def stream_create(self) -> int:
        handle = next(self.ids)
        self.streams[handle] = []
        return handle

    def stream_from(self, stream: Any) -> int:
        handle = int(stream)
        self.streams.setdefault(handle, [])
        return handle

    def stream_ptr(self, stream: Any) -> int:
        return int(stream)

    def stream_synchronize(self, stream: Any) -> None:
        ops, self.streams[stream] = self.streams[stream], []
        for op in ops:
            op()

    def stream_destroy(self, stream: Any) -> None:
        assert not self.streams.pop(stream), "destroyed a stream with queued work"

    def event_create(self) -> int:
        handle = next(self.ids)
        self.events[handle] = None
        return handle

    def event_record(self, event: Any, stream: Any) -> None:
        self.events[event] = stream

    def event_query(self, event: Any) -> bool:
        stream = self.events[event]
        return stream is None or not self.streams.get(stream)

    def event_synchronize(self, event: Any) -> None:
        stream = self.events[event]
        if stream is not None:
            self.stream_synchronize(stream)

    def event_destroy(self, event: Any) -> None:
        del self.events[event]

    def stream_wait_event(self, stream: Any, event: Any) -> None:
        self.event_synchronize(event)

    def graph_capture(self, stream: Any, enqueue: Callable[[], None]) -> int:
        self.captures += 1
        self.capturing[stream] = []
        try:
            enqueue()
        finally:
            ops = self.capturing.pop(stream)
        handle = next(self.ids)
        self.graphs[handle] = ops
        return handle

    def graph_launch(self, graph: Any, stream: Any) -> None:
        self.launches += 1
        for op in self.graphs[graph]:
            self.enqueue(stream, op)

    def graph_destroy(self, graph: Any) -> None:
        del self.graphs[graph]


class _DataType:
    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return f"DataType.{self.name}"


_ORT_TO_TRT = {"tensor(float)": "FLOAT", "tensor(float16)": "HALF", "tensor(int64)": "INT64", "tensor(int32)": "INT32"}


# version range -> how a new context gets its profile and who may select a profile, as the header says:
#  "first":  8.5, NvInferRuntime.h l.1589-1591: "each execution context in concurrent use must use a separate
#            optimization profile. The first execution context created will call setOptimizationProfile(0)
#            implicitly. For other execution contexts, setOptimizationProfile() must be called with unique
#            profile index before calling execute or enqueue."
#  "free0":  8.6, NvInferRuntime.h l.1754-1756: "The execution context created will call
#            setOptimizationProfile(0) implicitly if there are no other execution contexts assigned to
#            optimization profile 0"; unique indices unless built with PROFILE_SHARING_0806 (NvInfer.h
#            l.9038-9042 "Allows optimization profiles to be shared across execution contexts"). The header
#            does not say that sharing changes the implicit assignment, so here it does not: a sharing
#            engine's later contexts must select profile 0 themselves.
#  "all0":   >= 9 (10.x, 11.x), NvInferRuntime.h release/10.0 l.2532-2535: "The newly created execution
#            context will be assigned optimization profile 0"; profiles are always shared.
# Every version, getOptimizationProfile (8.5 l.2508-2510, 8.6 l.2798-2800): -1 until set, "and all calls to
# enqueueV2()/enqueueV3()/executeV2() will fail until a valid profile index has been set"; and
# setOptimizationProfileAsync "must be called before calling setBindingDimensions()" / "setInputShape()"
# (8.5 l.2845-2846, 10.0 l.3631-3632), so shapes set without a profile are refused too.
PROFILE_RULES: tuple[tuple[tuple[int, int], tuple[int, int] | None, str], ...] = (
    ((8, 5), (8, 6), "first"),
    ((8, 6), (9, 0), "free0"),
    ((9, 0), None, "all0"),
)


def profile_rule(version: str) -> str:
    key = tuple(int(x) for x in version.split(".")[:2])
    for since, until, rule in PROFILE_RULES:
        if key >= since and (until is None or key < until):
            return rule
    raise AssertionError(f"stand-in: no profile rule for TensorRT {version}")


class StandinContext:
    def __init__(self, engine: "StandinEngine", profile: int) -> None:
        self.engine = engine
        self.profile = profile
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.executions = 0

    @property
    def active_optimization_profile(self) -> int:
        return self.profile

    def _needs_profile(self, call: str) -> bool:
        if self.engine.dynamic and self.profile < 0:
            self.engine.errors.append(f"{call}: no optimization profile selected (getOptimizationProfile() == -1)")
            return True
        return False

    def set_optimization_profile_async(self, index: int, stream_handle: int) -> bool:
        engine = self.engine
        if not 0 <= int(index) < engine.num_optimization_profiles:
            engine.errors.append(f"profile {index} out of range 0..{engine.num_optimization_profiles - 1}")
            return False
        taken = {c.profile for c in engine.live if c is not self}
        if not engine.shares_profiles and int(index) in taken:  # "unique profile index"
            engine.errors.append(f"profile {index} is already used by another execution context")
            return False
        self.profile = int(index)
        self.engine.profile_selections.append(int(index))
        return True

    def set_input_shape(self, name: str, shape: Any) -> bool:
        if self._needs_profile("set_input_shape"):
            return False
        shape = tuple(int(d) for d in shape)
        if not 1 <= shape[0] <= self.engine.max_batch:
            return False
        self.shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self.engine.input_names:
            return self.shapes.get(name, self.engine.io[name][0])
        batch = next(iter(self.shapes.values()))[0] if self.shapes else -1
        return (batch, *self.engine.io[name][0][1:])

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = int(ptr)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        if self._needs_profile("execute_async_v3"):
            return False
        inputs = {n: self.shapes[n] for n in self.engine.input_names}
        addresses = dict(self.addresses)

        def run() -> None:
            self.executions += 1
            feeds = {}
            for name, shape in inputs.items():
                dtype = self.engine.io[name][1]
                nbytes = int(np.prod(shape)) * dtype.itemsize
                feeds[name] = _view(addresses[name], nbytes).view(dtype).reshape(shape).copy()
            outs = self.engine.session.run(None, feeds)
            for name, value in zip(self.engine.output_names, outs):
                value = np.ascontiguousarray(value)
                _view(addresses[name], value.nbytes)[:] = value.view(np.uint8).ravel()

        self.engine.cuda.enqueue(stream_handle, run)
        return True


class StandinEngine:
    """An engine built with ``profiles`` identical optimization profiles (and PROFILE_SHARING_0806 if ``sharing``)."""

    def __init__(self, onnx_bytes: bytes, cuda: StandinCuda, max_batch: int, version: str = "10.3.0",
                 profiles: int = 1, sharing: bool = False) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self.cuda = cuda
        self.max_batch = max_batch
        self.rule = profile_rule(version)
        self.num_optimization_profiles = int(profiles)
        self.shares_profiles = self.rule == "all0" or (self.rule == "free0" and sharing)
        self.io: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self.modes: dict[str, str] = {}
        for arg, mode in [(a, "INPUT") for a in self.session.get_inputs()] + [
            (a, "OUTPUT") for a in self.session.get_outputs()
        ]:
            shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
            dtype = {"FLOAT": np.float32, "HALF": np.float16, "INT64": np.int64, "INT32": np.int32}[_ORT_TO_TRT[arg.type]]
            self.io[arg.name] = (shape, np.dtype(dtype))
            self.modes[arg.name] = mode
        self.input_names = [n for n, m in self.modes.items() if m == "INPUT"]
        self.output_names = [n for n, m in self.modes.items() if m == "OUTPUT"]
        self.dynamic = any(d < 0 for n in self.input_names for d in self.io[n][0])
        self.contexts: list[StandinContext] = []  # every context created
        self.live: weakref.WeakSet[StandinContext] = weakref.WeakSet()  # those not yet dropped
        self.errors: list[str] = []  # what the real library would log as errors
        self.profile_selections: list[int] = []
        self.lock = threading.Lock()

    @property
    def num_io_tensors(self) -> int:
        return len(self.io)

    def get_tensor_name(self, i: int) -> str:
        return list(self.io)[i]

    def get_tensor_mode(self, name: str) -> str:
        return self.modes[name]

    def get_tensor_dtype(self, name: str) -> _DataType:
        return _DataType({np.float32: "FLOAT", np.float16: "HALF", np.int64: "INT64", np.int32: "INT32"}[
            self.io[name][1].type])

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.io[name][0]

    def get_tensor_profile_shape(self, name: str, profile: int) -> tuple[tuple[int, ...], ...]:
        assert 0 <= profile < self.num_optimization_profiles, f"profile {profile} of {self.num_optimization_profiles}"
        shape = self.io[name][0]
        return ((1, *shape[1:]), (min(4, self.max_batch), *shape[1:]), (self.max_batch, *shape[1:]))

    def create_execution_context(self) -> StandinContext:
        with self.lock:
            if self.rule == "all0" or not self.dynamic:
                profile = 0
            elif self.rule == "first":
                profile = 0 if not self.contexts else -1
            else:  # "free0"
                profile = -1 if any(c.profile == 0 for c in self.live) else 0
            ctx = StandinContext(self, profile)
            self.contexts.append(ctx)
            self.live.add(ctx)
        return ctx


def standin_tensorrt(cuda: StandinCuda, version: str = "10.3.0", max_batch: int = 8, profiles: int = 1,
                     sharing: bool = False) -> types.ModuleType:
    """A module with the few ``tensorrt`` names TrtEngine uses; plans are ``PLAN_MAGIC + onnx bytes``.

    Engines it deserializes behave as ``version``'s headers say (:data:`PROFILE_RULES`), as if built with
    ``profiles`` optimization profiles and, where ``sharing``, ``PreviewFeature.PROFILE_SHARING_0806``.
    ``trt.engines`` lists them.
    """
    trt = types.ModuleType("tensorrt_standin")
    trt.__version__ = version

    class ILogger:
        # NvInferRuntimeBase.h (8.5 .. 11): enum class Severity : int32_t { kINTERNAL_ERROR = 0, kERROR = 1,
        # kWARNING = 2, kINFO = 3, kVERBOSE = 4 }; the bindings print members as "Severity.ERROR".
        class Severity(int, enum.Enum):
            INTERNAL_ERROR = 0
            ERROR = 1
            WARNING = 2
            INFO = 3
            VERBOSE = 4

        def __init__(self) -> None:
            pass

    trt.ILogger = ILogger
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, plan: bytes) -> StandinEngine | None:
            if not plan.startswith(PLAN_MAGIC):
                self.logger.log(ILogger.Severity(1), "stand-in: not a plan")
                return None
            engine = StandinEngine(plan[len(PLAN_MAGIC):], cuda, max_batch, version, profiles, sharing)
            trt.engines.append(engine)
            return engine

    trt.engines = []
    trt.Runtime = Runtime
    return trt
