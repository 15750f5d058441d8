"""The ``model.plan.json`` sidecar written beside every TensorRT engine.

A plan only runs on the GPU compute capability and TensorRT version that
built it; the sidecar records both (and hashes) so the runtime can refuse a
mismatched engine with a clear message instead of a TensorRT crash.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from edgeres._names import EXPECTED, PATTERNS
from edgeres._readers import Fields, read_json_file
from edgeres.errors import EdgeresError, EngineError

SIDECAR_FORMAT = "edgeres-plan/1"
MAX_SIDECAR_BYTES = 1 << 20
MAX_DIM = 1 << 31  # one tensor axis
DTYPE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}", re.ASCII)  # edgeres._tensorrt.DTYPE_NAMES values, or TensorRT's lower-cased


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One engine I/O tensor; -1 in ``shape`` marks the dynamic batch axis."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name: "float32", "float16", "int8", ...

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "sidecar", field: str = "tensor") -> "TensorSpec":
        """Typed: a name, a shape of at most 8 integers (-1 = dynamic), a numpy dtype name."""
        f = Fields(d, where, EngineError, f"{field}.")
        shape = f.check("shape", lambda v: isinstance(v, list) and len(v) <= 8 and all(
            isinstance(x, int) and not isinstance(x, bool) and -1 <= x <= MAX_DIM for x in v),
            "a list of at most 8 integers (-1 for a dynamic axis)")
        return cls(name=f.str("name", max_len=1024), shape=tuple(shape),
                   dtype=f.str("dtype", pattern=DTYPE_NAME, expected="a dtype name like float32"))


@dataclasses.dataclass(frozen=True)
class PlanSidecar:
    """What built a plan, for which device, with which I/O."""

    tensorrt_version: str  # trt.__version__ of the builder, as it reports it: "10.3.0.30" (JetPack), "10.3.0" (pip)
    compute_capability: tuple[int, int]
    device_name: str
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    min_batch: int
    opt_batch: int
    max_batch: int
    plan_sha256: str
    onnx_sha256: str
    edgeres_version: str
    dla_core: int | None = None
    target: str | None = None
    recipe: dict[str, Any] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Execution contexts (docs/runtime.md "Threads"; rules: edgeres.tensorrt_version.CONTEXT_RULES).
    # optimization_profiles: identical profiles built, one per context that may run at once where contexts
    # cannot share a profile (TensorRT 8.5). profile_sharing: contexts may share profile 0 (8.6 engines
    # built with PreviewFeature.PROFILE_SHARING_0806; always from 9.0). None: an older sidecar without it.
    optimization_profiles: int = 1
    profile_sharing: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["compute_capability"] = list(self.compute_capability)
        d["inputs"] = [t.to_dict() for t in self.inputs]
        d["outputs"] = [t.to_dict() for t in self.outputs]
        return {"format": SIDECAR_FORMAT, **d}

    @classmethod
    def from_dict(cls, d: Any, where: str = "sidecar") -> "PlanSidecar":
        """Every field type-checked: EngineError naming the first bad one."""
        f = Fields(d, where, EngineError)
        if f.data.get("format") != SIDECAR_FORMAT:
            raise EngineError(f"{where}: format must be {SIDECAR_FORMAT!r}, received {f.data.get('format')!r:.60}")

        def tensors(name: str) -> tuple[TensorSpec, ...]:
            value = f.check(name, lambda v: isinstance(v, list) and 0 < len(v) <= 64, "a list of 1..64 tensors")
            return tuple(TensorSpec.from_dict(t, where, f"{name}[{i}]") for i, t in enumerate(value))

        cc = f.int_list("compute_capability", 2, 0, 99)
        assert cc is not None
        batches = [f.int(k, 1, 1 << 16) for k in ("min_batch", "opt_batch", "max_batch")]
        if not batches[0] <= batches[1] <= batches[2]:
            raise EngineError(f"{where}: min_batch <= opt_batch <= max_batch must hold, received {batches}")
        recipe = f.object("recipe", optional=True)
        extra = f.object("extra", optional=True)
        return cls(
            tensorrt_version=f.str("tensorrt_version", pattern=PATTERNS["tensorrt_version"],
                                   expected=EXPECTED["tensorrt_version"]),
            compute_capability=(cc[0], cc[1]),
            device_name=f.str("device_name", max_len=256),
            precision=f.str("precision", max_len=16, choices=("fp32", "fp16", "int8", "best")),
            inputs=tensors("inputs"),
            outputs=tensors("outputs"),
            min_batch=batches[0], opt_batch=batches[1], max_batch=batches[2],
            plan_sha256=f.str("plan_sha256", pattern=PATTERNS["sha256"], expected=EXPECTED["sha256"]),
            onnx_sha256=f.str("onnx_sha256", pattern=PATTERNS["sha256"], expected=EXPECTED["sha256"]),
            edgeres_version=f.str("edgeres_version", pattern=PATTERNS["edgeres_version"],
                                  expected=EXPECTED["edgeres_version"]),
            dla_core=f.int("dla_core", 0, 15, optional=True),
            target=f.str("target", pattern=PATTERNS["target"], expected=EXPECTED["target"], optional=True),
            recipe=None if recipe is None else dict(recipe.data),
            extra={} if extra is None else dict(extra.data),
            # absent in sidecars written before the runtime's context pool: one profile, sharing unknown
            optimization_profiles=(1 if f.data.get("optimization_profiles") is None
                                   else f.int("optimization_profiles", 1, 64)),
            profile_sharing=f.bool("profile_sharing", optional=True),
        )


def sidecar_path(plan_path: str | os.PathLike[str]) -> Path:
    """``model.plan`` -> ``model.plan.json``."""
    return Path(f"{os.fspath(plan_path)}.json")


def write_sidecar(plan_path: str | os.PathLike[str], sidecar: PlanSidecar) -> Path:
    """Write the sidecar beside ``plan_path`` atomically."""
    from edgeres._io import write_text_atomic

    return write_text_atomic(sidecar_path(plan_path), json.dumps(sidecar.to_dict(), indent=2, sort_keys=True) + "\n")


def read_sidecar(plan_path: str | os.PathLike[str]) -> PlanSidecar | None:
    """The sidecar of ``plan_path``, or None if there is none.

    Bounded and typed (:mod:`edgeres._readers`): a FIFO, a huge, deep, non-UTF-8 or wrongly
    typed sidecar is one EngineError.
    """
    path = sidecar_path(plan_path)
    if not os.path.lexists(path):
        return None
    data = read_json_file(path, "sidecar", EngineError, max_bytes=MAX_SIDECAR_BYTES)
    return PlanSidecar.from_dict(data, f"sidecar {path}")


# ---- the timing-cache stamp: which TensorRT wrote ``timing.cache`` (plans and timing caches need the same
# major.minor.patch.build: NVIDIA's Support Policies page) -----------------------------------------------

TIMING_CACHE_FORMAT = "edgeres-timing-cache/1"


def timing_cache_stamp_path(path: str | os.PathLike[str]) -> Path:
    """``timing.cache`` -> ``timing.cache.json``: the TensorRT version that wrote the cache."""
    return Path(f"{os.fspath(path)}.json")


def read_timing_cache_stamp(path: str | os.PathLike[str], error: type[EdgeresError]) -> str | None:
    """The TensorRT version of a timing cache's stamp, None if there is no stamp; ``error`` if it is malformed.

    Bounded and typed (:mod:`edgeres._readers`): a FIFO, a huge, deep or wrongly typed stamp is refused.
    """
    stamp = timing_cache_stamp_path(path)
    if not os.path.lexists(stamp):
        return None
    f = Fields(read_json_file(stamp, "timing cache stamp", error, max_bytes=64 << 10), str(stamp), error)
    f.str("format", choices=(TIMING_CACHE_FORMAT,))
    return f.str("tensorrt_version", pattern=PATTERNS["tensorrt_version"], expected="a version like 10.3.0.30")


def timing_cache_version(path: str | os.PathLike[str]) -> str | None:
    """The TensorRT version recorded beside a timing cache, or None (no stamp, or one edgeres cannot read)."""
    try:
        return read_timing_cache_stamp(path, EdgeresError)
    except EdgeresError:
        return None
