"""What the imported TensorRT can do, probed from the module itself.

TensorRT's Python API changed across 8.5 .. 11 (workspace pools in 8.4,
``progress_monitor`` and the named-tensor API in 10.0, no precision flags and
no implicit INT8 calibration in 11). Rather than version if-chains, each
capability is one ``hasattr`` probe on the real module, listed in
:data:`PROBES`; code asks ``caps.fp16_flag`` instead of ``major >= 10``.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

# capability -> (attribute path on the tensorrt module, why edgeres cares)
PROBES: dict[str, tuple[str, str]] = {
    "fp16_flag": ("BuilderFlag.FP16", "FP16 by builder flag (<= 10); TensorRT 11 takes precision from the ONNX"),
    "int8_flag": ("BuilderFlag.INT8", "INT8 by builder flag (<= 10)"),
    "gpu_fallback_flag": ("BuilderFlag.GPU_FALLBACK", "DLA layers fall back to the GPU"),
    "implicit_int8_calibrator": ("IInt8EntropyCalibrator2", "implicit INT8 calibration (removed in 11)"),
    "int8_calibrator_config": ("IBuilderConfig.int8_calibrator", "where the calibrator is attached"),
    "calibration_profile": ("IBuilderConfig.set_calibration_profile", "shape profile used while calibrating"),
    "progress_monitor": ("IBuilderConfig.progress_monitor", "builder progress callbacks (>= 10.0)"),
    "progress_monitor_class": ("IProgressMonitor", "base class of progress callbacks"),
    "memory_pool_limit": ("IBuilderConfig.set_memory_pool_limit", "workspace by memory pool (>= 8.4)"),
    "max_workspace_size": ("IBuilderConfig.max_workspace_size", "workspace by the old attribute (< 10)"),
    "explicit_batch_flag": ("NetworkDefinitionCreationFlag.EXPLICIT_BATCH", "explicit-batch network flag (ignored in 10, gone in 11)"),
    "strongly_typed_flag": ("NetworkDefinitionCreationFlag.STRONGLY_TYPED", "strongly typed networks (>= 9)"),
    "build_serialized_network": ("Builder.build_serialized_network", "build straight to a plan"),
    "build_engine": ("Builder.build_engine", "old in-memory build (removed in 10)"),
    "timing_cache": ("IBuilderConfig.create_timing_cache", "reusable builder timing cache"),
    "parser_node_name": ("ParserError.node_name", "parser errors name the failing node (>= 10)"),
    "parser_node_operator": ("ParserError.node_operator", "parser errors name the failing op (>= 10)"),
    "execute_async_v2": ("IExecutionContext.execute_async_v2", "binding-index execution (removed in 10)"),
    "execute_async_v3": ("IExecutionContext.execute_async_v3", "named-tensor execution (>= 8.5)"),
    "set_tensor_address": ("IExecutionContext.set_tensor_address", "named tensor addresses (>= 8.5)"),
    "tensor_io_api": ("ICudaEngine.get_tensor_name", "engine I/O by name (>= 8.5)"),
    "profile_sharing_preview": ("PreviewFeature.PROFILE_SHARING_0806", "contexts share profile 0 (opt-in in 8.6, "
                                "always on in 10, gone in 11)"),
}


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """The probes of :data:`PROBES` for one TensorRT module, plus derived facts."""

    version: str
    fp16_flag: bool
    int8_flag: bool
    gpu_fallback_flag: bool
    implicit_int8_calibrator: bool
    int8_calibrator_config: bool
    calibration_profile: bool
    progress_monitor: bool
    progress_monitor_class: bool
    memory_pool_limit: bool
    max_workspace_size: bool
    explicit_batch_flag: bool
    strongly_typed_flag: bool
    build_serialized_network: bool
    build_engine: bool
    timing_cache: bool
    parser_node_name: bool
    parser_node_operator: bool
    execute_async_v2: bool
    execute_async_v3: bool
    set_tensor_address: bool
    tensor_io_api: bool
    profile_sharing_preview: bool = False

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def precision_flags(self) -> bool:
        """Precision is chosen by builder flags (8.x, 10.x) rather than by the ONNX's types (11)."""
        return self.fp16_flag and self.int8_flag

    @property
    def always_strongly_typed(self) -> bool:
        """Every network is strongly typed: FP16/INT8 must be in the ONNX itself (TensorRT 11)."""
        return not self.precision_flags

    @property
    def explicit_batch_required(self) -> bool:
        """8.x networks must be created with EXPLICIT_BATCH for ONNX; 10 keeps the flag but ignores it.

        The one version gate here: the flag still exists in 10.x, so no probe can tell the two apart.
        """
        return self.explicit_batch_flag and self.major < 10

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def has_path(module: Any, dotted: str) -> bool:
    """Whether ``module.a.b`` exists (``hasattr`` down a dotted path)."""
    obj = module
    for part in dotted.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def capabilities(trt: ModuleType) -> Capabilities:
    """Probe an imported ``tensorrt`` module (see :data:`PROBES`)."""
    found = {name: has_path(trt, path) for name, (path, _why) in PROBES.items()}
    return Capabilities(version=str(getattr(trt, "__version__", "0")), **found)
