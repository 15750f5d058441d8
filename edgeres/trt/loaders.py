"""Thin TensorRT adapter: one step per function, Polygraphy style.

Each function produces one thing from another (``network_from_onnx``,
``config_from_settings``, ``engine_bytes_from_network``) and owns nothing it
did not create. ``tensorrt`` is imported on first use only
(:func:`edgeres.trt.guard.require_tensorrt`), so ``import edgeres.trt`` works anywhere.
The INT8 calibrator lives in :mod:`edgeres.trt.calibrator`, the progress monitor in
:mod:`edgeres.trt.progress`; both, and this module, use :mod:`edgeres.trt.guard`.

Supported: TensorRT 8.5 .. 11. What differs between versions is looked up in
:func:`edgeres.trt.caps.capabilities`, not by version number.

Verified in CI only against the real Python bindings of 8.6.1, 10.3.0 and
11.4 over stand-in libraries (tests/trt_stubs): every class, enum and
signature used here exists, and every path up to ``trt.Builder(logger)`` runs.
A real engine build needs a GPU and is not exercised by the test suite.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from edgeres._tensorrt import DTYPE_NAMES, dtype_key
from edgeres.errors import BuildError, CalibrationError, TensorRTUnavailableError
from edgeres.tensorrt_version import contexts_share_profiles, needs_profile_sharing_feature, same_build
from edgeres.sidecar import (  # noqa: F401 - the stamp lives with the plan sidecar (layer 0); names kept here
    TIMING_CACHE_FORMAT,
    read_timing_cache_stamp,
    timing_cache_stamp_path,
    timing_cache_version,
)
from edgeres.trt.calibrator import (  # noqa: F401 - re-exported: edgeres.trt.loaders.<name> keeps working
    CudaAllocator,
    DeviceAllocator,
    Int8EntropyCalibrator,
    default_allocator,
)
from edgeres.trt.caps import Capabilities, capabilities
from edgeres.trt.guard import (  # noqa: F401 - re-exported as above
    INSTALL_HINT,
    local_compute_capability,
    logger,
    require_tensorrt,
    tensorrt_version,
)
from edgeres.trt.progress import ProgressMonitor
from edgeres.trt.settings import EngineSettings, check_settings

MAX_PARSER_ERRORS = 5  # listed in the one-line message; the rest are counted

# precision -> builder flags where precision is chosen by flags (TensorRT 8.x, 10.x).
# int8 adds FP16 so that the layers left unquantized run in FP16, the same result
# as TensorRT 11's Q/DQ model with FP16 elsewhere.
PRECISION_FLAGS: dict[str, tuple[str, ...]] = {
    "fp32": (),
    "fp16": ("FP16",),
    "int8": ("INT8", "FP16"),
    "best": ("FP16", "INT8"),
}

# precision -> what the ONNX must contain where networks are always strongly typed (TensorRT 11).
TYPED_ONNX_NEEDS: dict[str, tuple[str, ...]] = {
    "fp32": (),
    "fp16": ("float16",),
    "int8": ("qdq", "float16"),
    "best": (),
}


# --- builder, network, config ----------------------------------------------------------------


def builder_from_logger(trt: ModuleType, log: Any) -> Any:
    """``trt.Builder(log)``; a library that returns no builder (no GPU/driver) becomes a clear error."""
    try:
        return trt.Builder(log)
    except TypeError as exc:  # pybind11: "factory function returned nullptr"
        said = " | ".join(log.errors()) if hasattr(log, "errors") else ""
        raise TensorRTUnavailableError(
            f"TensorRT {trt.__version__} could not create a builder ({said or exc}): no usable NVIDIA GPU or CUDA "
            "driver here (or these are the test suite's stand-in libraries); build on a machine with the target's GPU"
        ) from exc


def network_from_onnx(builder: Any, onnx_path: str | os.PathLike[str], caps: Capabilities, log: Any) -> tuple[Any, Any]:
    """Parse ``onnx_path`` into a new network; returns ``(network, parser)`` (the parser owns the weights).

    Raises:
        BuildError: the parser failed; the message lists each error with node index, name, op and description.
    """
    trt = require_tensorrt()

    flags = 0
    if caps.explicit_batch_required:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, log)
    if not parser.parse_from_file(os.fspath(onnx_path)):
        count = int(parser.num_errors)
        errors = [parser_error_text(parser.get_error(i)) for i in range(min(count, MAX_PARSER_ERRORS))]
        more = f"; and {count - MAX_PARSER_ERRORS} more" if count > MAX_PARSER_ERRORS else ""
        raise BuildError(
            f"TensorRT {trt.__version__} could not parse {onnx_path}: "
            f"{'; '.join(errors) or 'no parser error recorded'}{more}"
        )
    return network, parser


def parser_error_text(error: Any) -> str:
    """``node 12 (/layer1/layer1.0/conv1/Conv, Conv): <desc>`` from a ``trt.ParserError``."""
    index = _call_or(error, "node", -1)
    name = _call_or(error, "node_name", "")
    op = _call_or(error, "node_operator", "")
    where = f"node {index}" if index >= 0 else "model"
    detail = ", ".join(x for x in (name, op) if x)
    return f"{where}{f' ({detail})' if detail else ''}: {_call_or(error, 'desc', str(error))}"


def _call_or(obj: Any, name: str, default: Any) -> Any:
    fn = getattr(obj, name, None)
    if fn is None:
        return default
    try:
        return fn()
    except Exception:
        return default


def network_io(network: Any) -> tuple[list[Any], list[Any]]:
    """``(inputs, outputs)`` tensors of a network."""
    return ([network.get_input(i) for i in range(network.num_inputs)],
            [network.get_output(i) for i in range(network.num_outputs)])


def tensor_spec(tensor: Any, dynamic_batch: bool) -> Any:
    """A sidecar :class:`TensorSpec` of a network tensor (batch axis -1 when the profile spans batches)."""
    from edgeres.sidecar import TensorSpec

    shape = [int(d) for d in tensor.shape]
    if dynamic_batch and shape:
        shape[0] = -1
    dtype = dtype_key(tensor.dtype)
    return TensorSpec(name=str(tensor.name), shape=tuple(shape), dtype=DTYPE_NAMES.get(dtype, dtype.lower()))


def check_network_input(network: Any, settings: EngineSettings) -> None:
    """Refuse a profile that the network's input cannot take (name, C/H/W, static batch)."""
    inputs, _ = network_io(network)
    names = [str(t.name) for t in inputs]
    if settings.input_name not in names:
        raise BuildError(f"the ONNX has inputs {names}, expected one named {settings.input_name!r}")
    shape = [int(d) for d in inputs[names.index(settings.input_name)].shape]
    want = list(settings.shape(settings.opt_batch))
    if len(shape) != 4:
        raise BuildError(f"input {settings.input_name!r} has shape {shape}, expected NCHW {want}")
    for axis, (have, need) in enumerate(zip(shape[1:], want[1:], strict=True), start=1):
        if have >= 0 and have != need:
            raise BuildError(f"input {settings.input_name!r} has shape {shape}, expected {['N', *want[1:]]} (axis {axis} differs)")
    batches = {settings.min_batch, settings.opt_batch, settings.max_batch}
    if shape[0] >= 0 and batches != {shape[0]}:
        raise BuildError(
            f"input {settings.input_name!r} has a fixed batch of {shape[0]}, received batches "
            f"{settings.min_batch}/{settings.opt_batch}/{settings.max_batch}; export the ONNX with a dynamic batch"
        )


@dataclasses.dataclass(frozen=True)
class ContextProfiles:
    """How a build lets execution contexts run at once (recorded in the sidecar, read by the runtime).

    ``count``: identical optimization profiles to build; ``sharing``: contexts may share profile 0
    (8.6 with ``PreviewFeature.PROFILE_SHARING_0806`` enabled, every release from 9.0).
    """

    count: int
    sharing: bool
    preview_feature: bool  # set PROFILE_SHARING_0806 on the builder config (8.6 only)


def context_profiles(settings: EngineSettings, caps: Capabilities, dynamic: bool = True) -> ContextProfiles:
    """Profiles and profile sharing for ``settings`` on this TensorRT (rules: ``tensorrt_version.CONTEXT_RULES``).

    8.6: enable profile sharing, one profile. 8.5: one profile per concurrent context
    (``settings.concurrent_contexts``; the runtime gives each context its own). >= 9: one profile,
    always shared. A network without dynamic shapes needs one profile everywhere ("the default
    profile index of 0 will be used", setOptimizationProfileAsync in every release's NvInferRuntime.h).
    """
    preview = needs_profile_sharing_feature(caps.version) and caps.profile_sharing_preview
    sharing = contexts_share_profiles(caps.version, preview)
    count = 1 if sharing or not dynamic else int(settings.concurrent_contexts)
    return ContextProfiles(count=count, sharing=sharing, preview_feature=preview)


def network_is_dynamic(network: Any) -> bool:
    """Whether any network input has a dynamic axis (-1), i.e. the engine has dynamic shapes."""
    inputs, _ = network_io(network)
    return any(int(d) < 0 for t in inputs for d in t.shape)


def config_from_settings(builder: Any, network: Any, settings: EngineSettings, caps: Capabilities,
                         calibrator: Any = None, progress: Any = None, timing_cache_bytes: bytes | None = None,
                         int8_scales: bool = True) -> Any:
    """A ``trt.IBuilderConfig`` for ``settings``: precision, workspace, profile, DLA, calibrator, cache, progress.

    ``int8_scales``: whether INT8 scales exist (Q/DQ ONNX or a calibrator); without them
    ``best`` builds FP16 only, as TensorRT would anyway, instead of asking for INT8 it cannot use.
    """
    trt = require_tensorrt()
    check_network_input(network, settings)  # the profile below must fit the parsed network's input

    config = builder.create_builder_config()
    if caps.memory_pool_limit:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_bytes))
    else:
        config.max_workspace_size = int(settings.workspace_bytes)

    if caps.precision_flags:
        for flag in PRECISION_FLAGS[settings.precision]:
            if flag == "INT8" and not int8_scales:
                continue  # INT8 without Q/DQ or calibrator scales would silently fall back; say so via the sidecar
            config.set_flag(getattr(trt.BuilderFlag, flag))

    contexts = context_profiles(settings, caps, network_is_dynamic(network))
    for _ in range(contexts.count):  # identical profiles: profile i serves execution context i (8.5)
        profile = builder.create_optimization_profile()
        profile.set_shape(settings.input_name, settings.shape(settings.min_batch),
                          settings.shape(settings.opt_batch), settings.shape(settings.max_batch))
        config.add_optimization_profile(profile)
    if contexts.preview_feature:  # NvInfer.h release/8.6 l.9038-9042: off unless set
        config.set_preview_feature(trt.PreviewFeature.PROFILE_SHARING_0806, True)

    if calibrator is not None:
        config.int8_calibrator = calibrator
        if caps.calibration_profile:
            # Calibration runs at the calibration profile's opt shape, which must be the calibrator's batch.
            calib_profile = builder.create_optimization_profile()
            calib_shape = settings.shape(settings.calib_batch_size)
            calib_profile.set_shape(settings.input_name, calib_shape, calib_shape, calib_shape)
            config.set_calibration_profile(calib_profile)

    if settings.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(settings.dla_core)
        if settings.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    if caps.timing_cache:
        cache = config.create_timing_cache(timing_cache_bytes or b"")
        config.set_timing_cache(cache, False)

    if progress is not None and caps.progress_monitor:
        config.progress_monitor = progress
    return config


def engine_bytes_from_network(builder: Any, network: Any, config: Any, log: Any, workspace_bytes: int) -> bytes:
    """Build and serialize; a failed build raises :class:`BuildError` naming the likely cause."""
    try:
        plan = builder.build_serialized_network(network, config)
    except (MemoryError, RuntimeError) as exc:  # pybind11 turns C++/CUDA failures into RuntimeError
        errors = log.errors() if hasattr(log, "errors") else []
        raise BuildError(explain_build_failure([*errors, str(exc)], workspace_bytes)) from exc
    if plan is None:
        raise BuildError(explain_build_failure(log.errors() if hasattr(log, "errors") else [], workspace_bytes))
    return bytes(plan)


_OOM_MARKERS = ("out of memory", "cudaErrorMemoryAllocation", "Requested amount of GPU memory", "insufficient memory",
                "allocation failed")


def explain_build_failure(errors: list[str], workspace_bytes: int) -> str:
    """One line for a failed build: out-of-memory gets the workspace option, anything else TensorRT's last error."""
    text = " | ".join(e.strip().replace("\n", " ") for e in errors if e.strip())
    if any(m.lower() in text.lower() for m in _OOM_MARKERS):
        return (f"TensorRT ran out of GPU memory while building (workspace limit {workspace_bytes >> 20} MiB): "
                f"lower the workspace (--workspace) or the max batch, or close other GPU programs; TensorRT said: {text}")
    return f"TensorRT could not build the engine: {text or 'no error message (run with a verbose logger)'}"


# --- timing cache ----------------------------------------------------------------------------


def timing_cache_bytes(path: str | os.PathLike[str] | None, tensorrt_version: str | None = None) -> bytes | None:
    """The saved timing cache, or None when there is none yet or it is not this TensorRT build's.

    A timing cache is reusable only by the exact TensorRT that wrote it ("version numbers must
    match across major, minor, patch, and build versions": TensorRT Support Policies, API
    Versioning), so with ``tensorrt_version`` the stamp beside it (:func:`timing_cache_stamp_path`)
    must name the same build (:func:`edgeres.tensorrt_version.same_build` is True); a cache with
    no stamp, another build or an unknown build is ignored, and the build writes a fresh one.
    """
    if path is None or not Path(path).is_file():
        return None
    if tensorrt_version is not None:
        recorded = timing_cache_version(path)
        if recorded is None or same_build(recorded, tensorrt_version) is not True:
            return None
    return Path(path).read_bytes() or None


def save_timing_cache(config: Any, path: str | os.PathLike[str], tensorrt_version: str | None = None) -> None:
    """Write the config's (updated) timing cache atomically beside the engine, then its version stamp."""
    import json

    from edgeres._io import write_bytes_atomic, write_text_atomic

    cache = config.get_timing_cache()
    if cache is not None:
        write_bytes_atomic(path, bytes(cache.serialize()))
        if tensorrt_version is not None:
            stamp = {"format": TIMING_CACHE_FORMAT, "tensorrt_version": str(tensorrt_version)}
            write_text_atomic(timing_cache_stamp_path(path), json.dumps(stamp, sort_keys=True) + "\n")


# --- the ONNX's own precision (what TensorRT 11 builds) ----------------------------------------


@dataclasses.dataclass(frozen=True)
class OnnxPrecision:
    """Which element types and quantization a model carries (strongly typed TensorRT builds exactly this)."""

    float_types: frozenset[str]
    has_qdq: bool

    def provides(self, need: str) -> bool:
        return self.has_qdq if need == "qdq" else need in self.float_types


def onnx_precision(onnx_path: str | os.PathLike[str]) -> OnnxPrecision:
    """Float element types of initializers, inputs and Casts, and whether Q/DQ nodes are present."""
    import onnx

    model = onnx.load(os.fspath(onnx_path), load_external_data=False)
    graph = model.graph
    names = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BFLOAT16: "bfloat16"}
    types = {names[t.data_type] for t in graph.initializer if t.data_type in names}
    types |= {names[v.type.tensor_type.elem_type] for v in graph.input if v.type.tensor_type.elem_type in names}
    for node in graph.node:
        if node.op_type == "Cast":
            types |= {names[a.i] for a in node.attribute if a.name == "to" and a.i in names}
    has_qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)
    return OnnxPrecision(float_types=frozenset(types), has_qdq=has_qdq)


def check_precision_support(settings: EngineSettings, caps: Capabilities, onnx: OnnxPrecision) -> None:
    """Refuse precision requests this TensorRT cannot honour with this ONNX, before any GPU work."""
    int8 = settings.precision in ("int8", "best")
    if int8 and settings.int8_mode == "calibrator":
        if not caps.implicit_int8_calibrator:
            raise BuildError(
                f"TensorRT {caps.version} removed implicit INT8 calibration; build INT8 from the Q/DQ ONNX "
                "(int8_mode='qdq', its unquantized parts in FP16)"
            )
        if onnx.has_qdq:
            raise BuildError(f"{settings.onnx_path} already has Q/DQ nodes; the implicit calibrator needs the FP32 ONNX")
    if settings.precision == "int8" and settings.int8_mode == "qdq" and not onnx.has_qdq:
        raise BuildError(
            f"precision int8 with int8_mode='qdq' needs a Q/DQ ONNX, received {settings.onnx_path} with no "
            "QuantizeLinear/DequantizeLinear nodes; pass the calibrated Q/DQ model"
            + ("" if caps.always_strongly_typed else " or use int8_mode='calibrator'")
        )
    if caps.always_strongly_typed:
        missing = [need for need in TYPED_ONNX_NEEDS[settings.precision] if not onnx.provides(need)]
        if missing:
            raise BuildError(
                f"TensorRT {caps.version} is strongly typed (no FP16/INT8 builder flags): precision "
                f"{settings.precision} needs an ONNX with {' and '.join(missing)} tensors, received {settings.onnx_path} "
                f"with {', '.join(sorted(onnx.float_types)) or 'no float tensors'}"
                f"{' and Q/DQ' if onnx.has_qdq else ''}; export the {settings.precision} ONNX for TensorRT 11"
            )


# --- the whole build ---------------------------------------------------------------------------


def check_compute_capability(settings: EngineSettings, local: tuple[int, int] | None, device_name: str) -> None:
    """Refuse to build for a target whose GPU differs from this one (an engine only runs where it was built)."""
    from edgeres.targets import compute_capability_mismatch

    why = compute_capability_mismatch(settings.expected_compute_capability, local, target=settings.target,
                                      device_name=device_name)
    if why is not None and not settings.allow_mismatch:
        raise BuildError(why)


def _raise_calibration_error(calibrator: Any) -> None:
    if calibrator is not None and calibrator.error is not None:
        raise CalibrationError(f"INT8 calibration failed: {calibrator.error}") from calibrator.error


def build_engine(settings: EngineSettings, *, allocator: DeviceAllocator | None = None, console: Any = None) -> Any:
    """Build ``settings.plan_path`` (atomically) and its ``.json`` sidecar; returns the :class:`PlanSidecar`.

    Order: settings and ONNX checks, TensorRT import and capability checks, builder
    (the first GPU call), compute-capability check, parse, config, build, write.
    """
    import edgeres
    from edgeres._io import atomic_files, check_writable_parent, sha256_file
    from edgeres.sidecar import PlanSidecar, write_sidecar

    check_settings(settings)
    onnx_path = Path(settings.onnx_path)
    if not onnx_path.is_file():
        raise BuildError(f"ONNX file {onnx_path} does not exist")
    check_writable_parent(settings.plan_path)
    trt = require_tensorrt()
    caps = capabilities(trt)
    onnx_types = onnx_precision(onnx_path)
    check_precision_support(settings, caps, onnx_types)

    calibrator = None
    if settings.precision in ("int8", "best") and settings.int8_mode == "calibrator":
        calibrator = Int8EntropyCalibrator(settings.calib_dataset, settings.calib_cache, settings.calib_batch_size,
                                           tuple(settings.input_shape), allocator)

    log = logger(trt)
    builder = builder_from_logger(trt, log)
    from edgeres.runtime import cuda

    device = cuda.local_device()
    check_compute_capability(settings, None if device is None else device.compute_capability,
                             "unknown" if device is None else device.name)
    network, _parser = network_from_onnx(builder, onnx_path, caps, log)  # _parser owns weights until the build ends
    progress = ProgressMonitor(console) if settings.show_progress and caps.progress_monitor else None
    config = config_from_settings(builder, network, settings, caps, calibrator=calibrator, progress=progress,
                                  timing_cache_bytes=timing_cache_bytes(settings.timing_cache, str(trt.__version__)),
                                  int8_scales=onnx_types.has_qdq or calibrator is not None)
    try:
        plan = engine_bytes_from_network(builder, network, config, log, settings.workspace_bytes)
    except BuildError:
        _raise_calibration_error(calibrator)  # the root cause, when calibration broke the build
        raise
    finally:
        if progress is not None:
            progress.close()
        if calibrator is not None:
            calibrator.free()
    _raise_calibration_error(calibrator)

    inputs, outputs = network_io(network)
    dynamic = settings.min_batch != settings.max_batch
    contexts = context_profiles(settings, caps, network_is_dynamic(network))
    extra: dict[str, Any] = {"int8_mode": settings.int8_mode if settings.precision in ("int8", "best") else None,
                             "workspace_bytes": int(settings.workspace_bytes), "gpu_fallback": settings.gpu_fallback,
                             "strongly_typed": caps.always_strongly_typed, "allow_mismatch": settings.allow_mismatch,
                             "int8_scales": onnx_types.has_qdq or calibrator is not None}
    if calibrator is not None and settings.calib_cache is not None and Path(settings.calib_cache).is_file():
        extra["calib_cache_sha256"] = sha256_file(settings.calib_cache)
    cc = device.compute_capability if device else tuple(settings.expected_compute_capability or (0, 0))
    plan_path = Path(settings.plan_path)
    timing_cache = Path(settings.timing_cache) if settings.timing_cache is not None and caps.timing_cache else None
    # plan, sidecar (and a timing cache beside them) appear together or not at all
    with atomic_files(plan_path.parent) as staging:
        tmp = staging / plan_path.name
        tmp.write_bytes(plan)
        sidecar = PlanSidecar(
            tensorrt_version=str(trt.__version__), compute_capability=(int(cc[0]), int(cc[1])),
            device_name=device.name if device else "unknown", precision=settings.precision,
            inputs=tuple(tensor_spec(t, dynamic) for t in inputs), outputs=tuple(tensor_spec(t, dynamic) for t in outputs),
            min_batch=settings.min_batch, opt_batch=settings.opt_batch, max_batch=settings.max_batch,
            plan_sha256=sha256_file(tmp), onnx_sha256=sha256_file(onnx_path), edgeres_version=edgeres.__version__,
            dla_core=settings.dla_core, target=settings.target, recipe=settings.recipe, extra=extra,
            optimization_profiles=contexts.count, profile_sharing=contexts.sharing,
        )
        write_sidecar(tmp, sidecar)
        if timing_cache is not None and timing_cache.parent.resolve() == plan_path.parent.resolve():
            save_timing_cache(config, staging / timing_cache.name, str(trt.__version__))
            timing_cache = None
    if timing_cache is not None:  # elsewhere: written on its own, atomically
        save_timing_cache(config, timing_cache, str(trt.__version__))
    return sidecar
