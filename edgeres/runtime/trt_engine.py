"""The TensorRT backend of :class:`Engine` (TensorRT 8.5 .. 11, name-based I/O API).

Versions: :mod:`edgeres.tensorrt_version` (parsing, the 4-part plan rule); the import
guard, logger and dtype table are shared with the builder in :mod:`edgeres._tensorrt`.

Opening a plan, one step per function (Polygraphy style):
``plan_bytes_from_path`` -> ``check_plan_hash`` (sidecar sha256) ->
``check_plan_compatible`` (TensorRT version, compute capability: refused
before TensorRT sees the bytes) -> ``runtime_from_logger`` ->
``engine_from_plan`` -> ``io_from_engine``.

Threading model: the deserialized engine is shared; each call runs on a "slot" (an
execution context with its CUDA stream, events, pinned host buffers and device buffers,
created on first need and sized for the profile's max batch). A thread keeps using its own
slot; a slot whose thread has ended is handed to the next thread, so threads that come and
go do not grow memory. How many slots may exist is what the TensorRT version allows for the
engine (:func:`context_policy`, rules in :data:`edgeres.tensorrt_version.CONTEXT_RULES`):
any number where contexts share profile 0 (TensorRT >= 9/10, 8.6 engines built with
``PROFILE_SHARING_0806``, engines without dynamic shapes), else one per optimization
profile (8.5, 8.6 without sharing), each slot selecting its own profile with
``set_optimization_profile_async`` before first use. Beyond that limit threads wait for a
free slot (a bounded pool) instead of failing. ``close()`` waits for each slot's work,
then frees everything.

GPU inputs (``__cuda_array_interface__`` / CUDA DLPack: torch, CuPy) are bound
with ``set_tensor_address`` and never copied; they must be C-contiguous (a
strided one is refused). Host inputs are copied into pinned memory (strided
host arrays are packed by that same copy). Outputs are returned as fresh
numpy arrays.

``cuda_graph=True`` captures ``execute_async_v3`` once per input shape into a
CUDA graph and replays it, for host inputs (graphs bake in addresses, so GPU
inputs always run without a graph). Needs cuda-python. As trtexec does
(samples/common/sampleInference.cpp, release/10.3 l.960-970), the first call of a
shape runs plainly, the stream is synchronized, then the same enqueue is captured;
an engine whose graph cannot be captured or instantiated runs without graphs from
then on, after one warning.

NOT VERIFIED ON A GPU: written against NVIDIA's samples (``common_runtime.py``)
and the TensorRT Python API documentation; the test suite checks the API it
calls against the real bindings over stand-in libraries where those are
available, and the engine logic itself against an in-memory stand-in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgeres._tensorrt import NUMPY_DTYPE_NAMES, collecting_logger, dtype_key
from edgeres._tensorrt import import_tensorrt as _guarded_import
from edgeres.recipe import Recipe
from edgeres.runtime._base import Engine, TensorInfo, read_manifest, recipe_from
from edgeres.runtime._arrays import DeviceArray
from edgeres.runtime._errors import (
    EngineClosedError,
    EngineError,
    EngineInputError,
    PlanIntegrityError,
    EngineUnavailableError,
    PlanMismatchError,
    CudaGraphWarning,
    PlanVersionWarning,
    SidecarMissingWarning,
)
from edgeres.runtime.cuda import CudaApi, HostBuffer, DeviceBuffer, cuda_api
from edgeres.sidecar import PlanSidecar, read_sidecar, sidecar_path
from edgeres.tensorrt_version import context_rule, contexts_share_profiles, parse_version, same_build

RUNTIME_HINT = (
    "expected the tensorrt package (JetPack on Jetson, pip install --extra-index-url https://pypi.nvidia.com "
    "tensorrt on desktops), or run the bundle's .onnx model on onnxruntime"
)
REBUILD_HINT = (
    "rebuild the plan on this machine from its bundle (edgeres compile BUNDLE_DIR), "
    "or run the bundle's model.onnx with onnxruntime"
)


def rebuild_hint(path: Path) -> str:
    """How to get a plan that runs here: ``edgeres compile`` on the plan's bundle folder when there is one."""
    folder = path.parent
    if (folder / "manifest.json").is_file():
        return (f"rebuild the plan on this machine: edgeres compile {folder} "
                f"(or run {folder / 'model.onnx'} with onnxruntime)")
    return REBUILD_HINT

# The TensorRT API this module calls; the conformance tests check each exists in every supported version.
TRT_API_USED: dict[str, tuple[str, ...]] = {
    "tensorrt": ("Runtime", "ILogger", "TensorIOMode", "DataType", "__version__"),
    "ILogger": ("Severity", "log"),
    "Runtime": ("deserialize_cuda_engine",),
    "ICudaEngine": (
        "num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_dtype", "get_tensor_shape",
        "get_tensor_profile_shape", "create_execution_context", "num_optimization_profiles",
    ),
    "IExecutionContext": ("set_input_shape", "get_tensor_shape", "set_tensor_address", "execute_async_v3",
                          "set_optimization_profile_async"),
}


# --- pure checks (no TensorRT needed) ---------------------------------------------------------


def plan_mismatches(sidecar: PlanSidecar, tensorrt_version: str, compute_capability: tuple[int, int]) -> list[str]:
    """What differs between the machine that built a plan and this one (empty: compatible).

    TensorRT versions are compared in all four parts, major.minor.patch.build: "to reuse plan
    files and timing caches ... version numbers must match across major, minor, patch, and build
    versions" (TensorRT Support Policies, API Versioning). edgeres never builds version-compatible
    plans. Where only one side names a build (pip wheels report three parts; JetPack four), the
    build cannot be compared: a :class:`PlanVersionWarning` says so and TensorRT's deserializer
    has the last word (a foreign plan then fails as :class:`PlanIntegrityError`).
    """
    built = parse_version(sidecar.tensorrt_version, error=EngineError)
    here = parse_version(tensorrt_version, error=EngineError)
    problems = []
    same = same_build(built, here)
    if same is False:
        problems.append(f"TensorRT {sidecar.tensorrt_version} (this machine: TensorRT {tensorrt_version})")
    elif same is None:
        warnings.warn(PlanVersionWarning(
            f"the plan was built with TensorRT {sidecar.tensorrt_version}, this machine has TensorRT "
            f"{tensorrt_version}: the build numbers cannot be compared, and a plan only runs with the exact "
            "build that made it; if it fails to load, rebuild it here (edgeres compile BUNDLE_DIR)"), stacklevel=4)
    if tuple(sidecar.compute_capability) != tuple(compute_capability):
        built_cc = ".".join(map(str, sidecar.compute_capability))
        here_cc = ".".join(map(str, compute_capability))
        problems.append(f"compute capability {built_cc} (this machine: {here_cc})")
    return problems


def check_plan_compatible(
    path: Path, sidecar: PlanSidecar, tensorrt_version: str, compute_capability: tuple[int, int]
) -> None:
    """Raise :class:`PlanMismatchError` naming both sides and the rebuild command if the plan cannot run here."""
    problems = plan_mismatches(sidecar, tensorrt_version, compute_capability)
    if problems:
        device = f" on {sidecar.device_name}" if sidecar.device_name else ""
        raise PlanMismatchError(
            f"{path} was built{device} for {' and '.join(problems)}; a TensorRT plan runs only with the "
            f"TensorRT version (major.minor.patch.build) and GPU compute capability that built it. "
            f"To fix: {rebuild_hint(path)}"
        )


def plan_bytes_from_path(path: Path) -> bytes:
    """The plan's bytes; a missing or empty file is a clear error."""
    if not path.is_file():
        raise EngineError(f"TensorRT plan {path} does not exist; expected a file built by edgeres compile")
    data = path.read_bytes()
    if not data:
        raise PlanIntegrityError(
            f"TensorRT plan {path} is empty (0 bytes); expected a serialized engine. To fix: {rebuild_hint(path)}"
        )
    return data


def check_plan_hash(path: Path, plan: bytes, sidecar: PlanSidecar) -> None:
    """Raise :class:`PlanIntegrityError` if the plan is not the one its sidecar describes."""
    digest = hashlib.sha256(plan).hexdigest()
    if sidecar.plan_sha256 and digest != sidecar.plan_sha256:
        raise PlanIntegrityError(
            f"{path} does not match its sidecar {sidecar_path(path).name}: expected sha256 "
            f"{sidecar.plan_sha256[:16]}..., received {digest[:16]}... (the plan was replaced or corrupted "
            f"after it was built). To fix: {rebuild_hint(path)}"
        )


def sidecar_or_warning(path: Path) -> PlanSidecar | None:
    """The plan's sidecar, or None after a :class:`SidecarMissingWarning`."""
    sidecar = read_sidecar(path)
    if sidecar is None:
        warnings.warn(
            SidecarMissingWarning(
                f"{path} has no sidecar {sidecar_path(path).name}: its TensorRT version, GPU and sha256 cannot be "
                "checked, so a mismatched plan will fail inside TensorRT instead of with a clear message. "
                "Keep the .plan.json that edgeres compile writes beside the plan."
            ),
            stacklevel=3,
        )
    return sidecar


# --- TensorRT steps ---------------------------------------------------------------------------


def import_tensorrt() -> ModuleType:
    """``tensorrt`` (>= 8.5), or :class:`EngineUnavailableError` saying how to get it."""
    return _guarded_import(EngineUnavailableError, RUNTIME_HINT)


def logger_for(trt: ModuleType) -> Any:
    """A ``trt.ILogger`` that keeps warnings and errors so failures can quote them (``.recent()``)."""
    return collecting_logger(trt)


def runtime_from_logger(trt: ModuleType, logger: Any) -> Any:
    """``trt.Runtime(logger)``; a library that returns none (no GPU/driver) becomes a clear error."""
    try:
        runtime = trt.Runtime(logger)
    except TypeError as exc:  # pybind11: "factory function returned nullptr"
        raise EngineUnavailableError(
            f"TensorRT {trt.__version__} could not create a runtime ({exc}): expected a usable NVIDIA GPU and "
            "driver, received none (or the test suite's stand-in libraries)"
        ) from exc
    if runtime is None:
        raise EngineUnavailableError(f"TensorRT {trt.__version__} returned no runtime; no usable GPU here")
    return runtime


def engine_from_plan(runtime: Any, plan: bytes, path: Path, logger: Any) -> Any:
    """``runtime.deserialize_cuda_engine(plan)``; None (corrupt or foreign plan) becomes PlanIntegrityError."""
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        said = "; ".join(logger.recent(3) if hasattr(logger, "recent") else []) or "no message"
        raise PlanIntegrityError(
            f"TensorRT could not deserialize {path}: expected a plan built by this TensorRT for this GPU, "
            f"received a corrupt or foreign file (TensorRT said: {said}). To fix: {rebuild_hint(path)}"
        )
    return engine


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    """The numpy dtype of a ``trt.DataType`` (table: :data:`edgeres._tensorrt.NUMPY_DTYPE_NAMES`)."""
    name = dtype_key(trt_dtype)
    if name not in NUMPY_DTYPE_NAMES:
        raise EngineError(f"tensor type {name} has no numpy equivalent; expected one of {sorted(NUMPY_DTYPE_NAMES)}")
    return np.dtype(NUMPY_DTYPE_NAMES[name])


def io_from_engine(trt: ModuleType, engine: Any) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """(inputs, outputs) of an engine, by name (TensorRT >= 8.5 API)."""
    inputs, outputs = [], []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        info = TensorInfo(name, tuple(int(d) for d in engine.get_tensor_shape(name)),
                          numpy_dtype(engine.get_tensor_dtype(name)))
        (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(info)
    return tuple(inputs), tuple(outputs)


def profile_batches(engine: Any, first_input: TensorInfo, profile: int = 0) -> tuple[int, int, int]:
    """(min, opt, max) batch of an optimization profile (the fixed batch for static engines)."""
    if first_input.shape and first_input.shape[0] >= 0:
        return (first_input.shape[0],) * 3
    lo, opt, hi = engine.get_tensor_profile_shape(first_input.name, profile)
    return int(lo[0]), int(opt[0]), int(hi[0])


def is_dynamic(inputs: tuple[TensorInfo, ...]) -> bool:
    """Whether the engine has dynamic input shapes (a -1 axis): only then do contexts need profiles."""
    return any(d < 0 for info in inputs for d in info.shape)


def usable_profiles(engine: Any, inputs: tuple[TensorInfo, ...]) -> tuple[int, ...]:
    """Indices of the profiles with profile 0's shapes for every dynamic input (edgeres builds identical ones).

    Slots are sized once for profile 0's max batch, so a foreign plan's differing profiles are left unused.
    """
    def shapes(profile: int) -> list[tuple[tuple[int, ...], ...]]:
        return [tuple(tuple(int(d) for d in dims) for dims in engine.get_tensor_profile_shape(info.name, profile))
                for info in inputs if any(d < 0 for d in info.shape)]

    count = max(int(engine.num_optimization_profiles), 1)
    first = shapes(0)
    return (0, *(p for p in range(1, count) if shapes(p) == first))


@dataclasses.dataclass(frozen=True)
class ContextPolicy:
    """How many execution contexts may run at once, and which profile each selects.

    ``limit``: None for no limit. ``profiles``: the profile index slot ``i`` selects with
    ``set_optimization_profile_async`` (``profiles[i]``; ``profiles[0]`` for every slot when
    ``shared``); None: TensorRT assigns the profile itself, nothing to select.
    """

    limit: int | None
    profiles: tuple[int, ...] | None
    shared: bool
    reason: str

    def profile_for(self, index: int) -> int | None:
        if self.profiles is None:
            return None
        return self.profiles[0] if self.shared else self.profiles[index]


def context_policy(tensorrt_version: str, built_with_sharing: bool | None, dynamic: bool,
                   profiles: tuple[int, ...]) -> ContextPolicy:
    """The contexts ``tensorrt_version`` allows for an engine (rules: ``tensorrt_version.CONTEXT_RULES``).

    * no dynamic shapes: any number, TensorRT uses profile 0 ("If the associated CUDA engine does not
      have inputs with dynamic shapes, this method need not be called", setOptimizationProfileAsync);
    * contexts share profiles from 9.0 ("The newly created execution context will be assigned
      optimization profile 0", NvInferRuntime.h release/10.0 l.2532-2535): any number, nothing to select;
    * 8.6 built with ``PROFILE_SHARING_0806``: any number, each selects profile 0 explicitly, because
      8.6 assigns 0 implicitly only "if there are no other execution contexts assigned to optimization
      profile 0" (NvInferRuntime.h release/8.6 l.1754-1757);
    * otherwise (8.5, 8.6 without sharing, an 8.6 sidecar that does not say): one context per profile,
      each selecting its own ("each execution context in concurrent use must use a separate
      optimization profile ... setOptimizationProfile() must be called with unique profile index",
      NvInferRuntime.h release/8.5 l.1589-1591).
    """
    rule = context_rule(parse_version(tensorrt_version, error=EngineError))
    if not dynamic:
        return ContextPolicy(None, None, True, "the engine has no dynamic shapes: every context uses profile 0")
    if contexts_share_profiles(tensorrt_version, built_with_sharing):
        if rule.sharing == "always":
            return ContextPolicy(None, None, True, f"TensorRT {tensorrt_version} gives every context profile 0")
        return ContextPolicy(None, (0,), True, "the engine was built with PROFILE_SHARING_0806: contexts share profile 0")
    return ContextPolicy(len(profiles), tuple(profiles), False,
                         f"TensorRT {tensorrt_version} needs a separate optimization profile per concurrent context "
                         f"and the plan has {len(profiles)} (build with concurrent_contexts=N for more)")


# --- per-thread execution state ---------------------------------------------------------------


class _Slot:
    """One thread's execution context, stream, event and buffers (see module docstring)."""

    def __init__(self, owner: threading.Thread, profile: int | None = None) -> None:
        self.owner = owner
        self.lock = threading.RLock()  # held for one call (a lease) and while a result is collected
        self.profile = profile  # the optimization profile this slot's context selected (None: TensorRT's choice)
        self.context: Any = None
        self.stream: Any = None
        self.done_event: Any = None
        self.wait_event: Any = None
        self.host: dict[str, HostBuffer] = {}
        self.device: dict[str, DeviceBuffer] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.graphs: dict[tuple[tuple[int, ...], ...], Any] = {}
        self.pending: "TrtPending | None" = None
        self.freed = False


class TrtPending:
    """The handle :meth:`TrtEngine.infer_async` returns: ``done()`` and ``result()``.

    The outputs stay in the slot's pinned buffers until collected; a later call
    on the same thread collects them first, so no result is ever overwritten.
    """

    def __init__(self, engine: "TrtEngine", slot: _Slot, views: dict[str, np.ndarray], keep: list[Any],
                 as_array: bool) -> None:
        self._engine = engine
        self._slot = slot
        self._views = views
        self._keep = keep  # GPU inputs that must outlive the work
        self._as_array = as_array
        self._values: dict[str, np.ndarray] | None = None

    def done(self) -> bool:
        if self._values is not None:
            return True
        with self._slot.lock:
            return self._values is not None or self._engine._cuda.event_query(self._slot.done_event)

    def result(self, timeout: float | None = None) -> Any:
        """The outputs (as :meth:`Engine.infer` returns them); blocks until the GPU is done. ``timeout`` is ignored."""
        with self._slot.lock:
            self._collect()
        self._engine._slot_freed()
        return self._engine._pack(dict(self._values or {}), self._as_array)

    def _collect(self) -> None:
        """Wait for the event and copy outputs out of the slot (slot lock held)."""
        if self._values is not None:
            return
        if self._slot.freed:
            raise EngineClosedError("engine closed before this infer_async result was collected")
        self._engine._cuda.event_synchronize(self._slot.done_event)
        self._values = {name: view.copy() for name, view in self._views.items()}
        self._views, self._keep = {}, []
        if self._slot.pending is self:
            self._slot.pending = None


class TrtEngine(Engine):
    """:class:`Engine` over a TensorRT plan (see the module docstring for threading and inputs).

    Args:
        path: ``.plan``/``.engine`` file; ``<path>.json`` is its sidecar.
        device: CUDA device ordinal.
        binding: ``"cuda-python"`` or ``"pycuda"``; default: the first that works.
        cuda_graph: replay a captured CUDA graph for host inputs of a repeated shape.
        recipe: preprocessing recipe; default the sidecar's, else the bundle manifest's.
        verify: check the plan's sha256 against its sidecar (False skips only that check; the
            TensorRT version and compute capability are always checked).

    Raises:
        PlanMismatchError: built for another TensorRT version or compute capability.
        PlanIntegrityError: empty, corrupt, or not the plan its sidecar describes.
        EngineUnavailableError: no TensorRT, CUDA binding or GPU here (CudaUnavailableError for the CUDA part).
    """

    backend = "tensorrt"
    _accepts_device_arrays = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: int = 0,
        binding: str | None = None,
        cuda_graph: bool = False,
        recipe: Recipe | dict[str, Any] | None = None,
        verify: bool = True,
        _trt: ModuleType | None = None,
        _cuda: CudaApi | None = None,
    ) -> None:
        self.path = Path(path)
        plan = plan_bytes_from_path(self.path)
        self.sidecar = sidecar_or_warning(self.path)
        if self.sidecar is not None and verify:
            check_plan_hash(self.path, plan, self.sidecar)
        trt = _trt if _trt is not None else import_tensorrt()
        self._cuda = _cuda if _cuda is not None else cuda_api(device, binding)
        if self.sidecar is not None:
            check_plan_compatible(self.path, self.sidecar, trt.__version__, self._cuda.compute_capability())
        self._trt = trt
        self._logger = logger_for(trt)
        self._runtime = runtime_from_logger(trt, self._logger)
        self._engine = engine_from_plan(self._runtime, plan, self.path, self._logger)
        self.inputs, self.outputs = io_from_engine(trt, self._engine)
        if not self.inputs:
            raise EngineError(f"{self.path} has no inputs; expected at least one")
        self.min_batch, self.opt_batch, self.max_batch = profile_batches(self._engine, self.inputs[0])
        dynamic = is_dynamic(self.inputs)
        self.context_policy = context_policy(
            str(trt.__version__), self.sidecar.profile_sharing if self.sidecar is not None else None, dynamic,
            usable_profiles(self._engine, self.inputs) if dynamic else (0,))
        manifest_recipe = read_manifest(self.path).get("recipe")
        sidecar_recipe = self.sidecar.recipe if self.sidecar is not None else None
        self.recipe = recipe_from(recipe if recipe is not None else sidecar_recipe or manifest_recipe)
        self.cuda_graph = bool(cuda_graph)
        self._slots: list[_Slot] = []
        self._slots_lock = threading.Lock()
        self._slot_free = threading.Condition(self._slots_lock)  # a thread waiting for a slot (bounded pool)
        self._local = threading.local()
        self._graphs_failed = False
        self._closed = False

    def __del__(self) -> None:
        # A forgotten close() must not leak device memory for the life of a robot process.
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:  # interpreter shutdown or a dead context: nothing left to report to
                pass

    # ---- slots ----------------------------------------------------------------------------------
    def infer(self, inputs: Any) -> Any:
        with self._lease():
            return super().infer(inputs)

    def infer_async(self, inputs: Any, stream: Any = None) -> Any:
        with self._lease():
            return super().infer_async(inputs, stream)

    @contextlib.contextmanager
    def _lease(self) -> Any:
        """Hold one slot for one call (the thread's own when free); waits while the pool is full."""
        held = getattr(self._local, "lease", None)
        if held is not None:  # re-entered on this thread (warmup -> infer): keep the slot held
            yield held
            return
        slot = self._acquire()
        self._local.lease = slot
        try:
            yield slot
        finally:
            self._local.lease = None
            slot.lock.release()
            self._slot_freed()

    def _slot_freed(self) -> None:
        with self._slot_free:
            self._slot_free.notify()

    def _acquire(self) -> _Slot:
        """A locked slot for this thread: its own, an ended thread's, a new one within the policy's limit,
        else (limit reached) any other free one; else wait until one is given back."""
        me = threading.current_thread()
        own = getattr(self._local, "slot", None)
        with self._slot_free:
            while True:
                self._check_open()
                for candidate in ([own] if own is not None else []) + [
                        c for c in self._slots if c is not own and not c.owner.is_alive()]:
                    if not candidate.freed and candidate.lock.acquire(blocking=False):
                        return self._take(candidate, me)
                limit = self.context_policy.limit
                if limit is None or len(self._slots) < limit:
                    slot = self._new_slot(me, len(self._slots))
                    slot.lock.acquire()
                    self._slots.append(slot)
                    return self._take(slot, me)
                for candidate in self._slots:  # the pool is full: share another live thread's idle slot
                    if candidate.lock.acquire(blocking=False):
                        return self._take(candidate, me)
                # notified when a lease ends or a result is collected; the timeout only guards a missed wake-up
                self._slot_free.wait(timeout=1.0)

    def _take(self, slot: _Slot, me: threading.Thread) -> _Slot:
        slot.owner = me
        self._local.slot = slot
        return slot

    def _new_slot(self, owner: threading.Thread, index: int) -> _Slot:
        cuda = self._cuda
        cuda.activate()
        slot = _Slot(owner, self.context_policy.profile_for(index))
        try:
            slot.context = self._engine.create_execution_context()
            if slot.context is None:
                raise EngineError(f"TensorRT could not create an execution context for {self.path} (out of GPU memory?)")
            slot.stream = cuda.stream_create()
            slot.done_event = cuda.event_create()
            slot.wait_event = cuda.event_create()
            if slot.profile is not None:
                # before any set_input_shape ("setOptimizationProfileAsync() must be called before calling
                # setInputShape()", NvInferRuntime.h release/10.0 l.3631-3632; setBindingDimensions in 8.5 l.2845),
                # then synchronized: "Not synchronizing the stream used at enqueue with the stream used to set
                # optimization profile asynchronously ... will result in undefined behavior" (8.5 l.2853-2855)
                if not slot.context.set_optimization_profile_async(slot.profile, cuda.stream_ptr(slot.stream)):
                    said = "; ".join(self._logger.recent(3)) or "no message"
                    raise EngineError(f"TensorRT refused optimization profile {slot.profile} for execution context "
                                      f"{index} of {self.path} ({self.context_policy.reason}; TensorRT said: {said})")
                cuda.stream_synchronize(slot.stream)
            for info in self.inputs:  # max-batch shapes size every buffer once
                shape = self._concrete_shape(info, self.max_batch)
                if not slot.context.set_input_shape(info.name, shape):
                    raise EngineError(f"TensorRT refused input {info.name!r} shape {shape} of its own profile")
                slot.shapes[info.name] = shape
            for info in (*self.inputs, *self.outputs):
                shape = tuple(int(d) for d in slot.context.get_tensor_shape(info.name))
                if any(d < 0 for d in shape):
                    raise EngineError(f"output {info.name!r} has a data-dependent shape {shape}; not supported")
                nbytes = int(np.prod(shape, dtype=np.int64)) * info.dtype.itemsize
                slot.device[info.name] = cuda.malloc(nbytes)
                slot.host[info.name] = cuda.malloc_host(nbytes)
                self._bind(slot, info.name, slot.device[info.name].ptr)
        except BaseException:
            self._free_slot(slot)
            raise
        return slot

    def _bind(self, slot: _Slot, name: str, ptr: int) -> None:
        if slot.addresses.get(name) != ptr:
            if not slot.context.set_tensor_address(name, ptr):
                raise EngineError(f"TensorRT refused the address of tensor {name!r}")
            slot.addresses[name] = ptr

    def _free_slot(self, slot: _Slot) -> None:
        """Free one slot's resources; keeps going past failures so nothing else leaks, then re-raises the first."""
        cuda = self._cuda
        errors: list[BaseException] = []

        def attempt(fn: Any, *args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:  # collected, re-raised below
                errors.append(exc)

        if slot.stream is not None:
            attempt(cuda.stream_synchronize, slot.stream)
        for graph in slot.graphs.values():
            attempt(cuda.graph_destroy, graph)
        slot.graphs.clear()
        slot.context = None  # before the memory it points into
        for buf in slot.device.values():
            attempt(cuda.free, buf)
        for hbuf in slot.host.values():
            attempt(cuda.free_host, hbuf)
        slot.device.clear()
        slot.host.clear()
        for event in (slot.done_event, slot.wait_event):
            if event is not None:
                attempt(cuda.event_destroy, event)
        if slot.stream is not None:
            attempt(cuda.stream_destroy, slot.stream)
        slot.stream = slot.done_event = slot.wait_event = None
        slot.freed = True
        if errors:
            raise errors[0]

    # ---- running -------------------------------------------------------------------------------
    def _consumer_stream(self, stream: Any) -> int | None:
        if stream is not None:
            from edgeres.runtime.cuda import stream_handle_of

            return stream_handle_of(stream)
        return self._cuda.stream_ptr(self._leased().stream)

    def _leased(self) -> _Slot:
        slot = getattr(self._local, "lease", None)
        if slot is None:  # every entry point (infer, infer_async) takes a lease first
            raise EngineError("internal: TensorRT engine call outside a slot lease")
        return slot

    def _run(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        pending = self._enqueue(feeds, None, as_array=False)
        return pending.result()

    def _submit(self, feeds: dict[str, Any], as_array: bool, stream: Any) -> TrtPending:
        return self._enqueue(feeds, stream, as_array)

    def _enqueue(self, feeds: dict[str, Any], stream: Any, as_array: bool) -> TrtPending:
        cuda = self._cuda
        slot = self._leased()
        with slot.lock:
            if self._closed or slot.freed:
                raise EngineClosedError(f"engine {self.path} is closed; received a call after close()")
            cuda.activate()
            if slot.pending is not None:
                slot.pending._collect()
            work = slot.stream if stream is None else cuda.stream_from(stream)
            for info in self.inputs:
                shape = tuple(feeds[info.name].shape)
                if slot.shapes.get(info.name) != shape:
                    if not slot.context.set_input_shape(info.name, shape):
                        raise EngineInputError(f"TensorRT refused input {info.name!r} of shape {shape}; "
                                               f"expected {info.describe()} with {self._batch_text()}")
                    slot.shapes[info.name] = shape
            keep: list[Any] = []
            all_host = True
            for info in self.inputs:
                value = feeds[info.name]
                if isinstance(value, DeviceArray):
                    all_host = False
                    if value.stream not in (None, 0):  # CAI v3: order after the producer's stream
                        cuda.order_after(value.stream, work, slot.wait_event)
                    keep.append(value.owner)
                    self._bind(slot, info.name, value.ptr)
                else:
                    host = slot.host[info.name].view(info.dtype, value.shape)
                    np.copyto(host, value)
                    cuda.memcpy_htod_async(slot.device[info.name].ptr, host, work)
                    self._bind(slot, info.name, slot.device[info.name].ptr)
            self._execute(slot, work, use_graph=self.cuda_graph and all_host)
            views = {}
            for info in self.outputs:
                shape = tuple(int(d) for d in slot.context.get_tensor_shape(info.name))
                views[info.name] = slot.host[info.name].view(info.dtype, shape)
                cuda.memcpy_dtoh_async(views[info.name], slot.device[info.name].ptr, work)
            cuda.event_record(slot.done_event, work)
            pending = TrtPending(self, slot, views, keep, as_array)
            slot.pending = pending
            return pending

    def _execute(self, slot: _Slot, stream: Any, use_graph: bool) -> None:
        if use_graph and not self._graphs_failed:
            key = tuple(slot.shapes[t.name] for t in self.inputs)
            graph = slot.graphs.get(key)
            if graph is not None:
                self._cuda.graph_launch(graph, stream)
                return
            # trtexec (samples/common/sampleInference.cpp, release/10.3 l.961-968): "Avoid capturing
            # initialization calls by executing the enqueue function at least once before starting CUDA
            # graph capture", then stream.synchronize(), then beginCapture. This call's own work runs here.
            self._enqueue_v3(slot, stream)
            try:
                self._cuda.stream_synchronize(stream)
                slot.graphs[key] = self._cuda.graph_capture(slot.stream, lambda: self._enqueue_v3(slot, slot.stream))
            except EngineError as exc:  # CudaError included; the binding's TypeErrors become CudaError in cuda.py
                self._graph_fallback(exc)
            return
        self._enqueue_v3(slot, stream)

    def _graph_fallback(self, exc: Exception) -> None:
        """Run without CUDA graphs from now on (every slot), after one warning (as trtexec's --useCudaGraph)."""
        with self._slots_lock:
            first, self._graphs_failed = not self._graphs_failed, True
        if first:
            warnings.warn(CudaGraphWarning(f"CUDA graph capture failed ({exc}); running {self.path} without CUDA "
                                           "graphs"), stacklevel=5)

    def _enqueue_v3(self, slot: _Slot, stream: Any) -> None:
        if not slot.context.execute_async_v3(self._cuda.stream_ptr(stream)):
            said = "; ".join(self._logger.recent(3)) or "no message"
            raise EngineError(f"TensorRT execute_async_v3 failed on {self.path} (TensorRT said: {said})")

    def _release(self) -> None:
        with self._slots_lock:
            slots, self._slots = self._slots, []
            self._slot_free.notify_all()  # waiting threads see the engine closed
        errors = []
        for slot in slots:
            with slot.lock:
                try:
                    if slot.pending is not None:
                        slot.pending._collect()  # results handed out stay valid after close
                except Exception as exc:
                    errors.append(exc)
                try:
                    self._free_slot(slot)
                except Exception as exc:
                    errors.append(exc)
        self._engine = None
        self._runtime = None
        if errors:
            raise errors[0]
