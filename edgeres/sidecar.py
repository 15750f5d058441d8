"""The ``model.plan.json`` sidecar written beside every TensorRT engine.

A plan only runs on the GPU compute capability and TensorRT version that
built it; the sidecar records both (and hashes) so the runtime can refuse a
mismatched engine with a clear message instead of a TensorRT crash.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from edgeres.errors import EngineError

SIDECAR_FORMAT = "edgeres-plan/1"


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One engine I/O tensor; -1 in ``shape`` marks the dynamic batch axis."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name: "float32", "float16", "int8", ...

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorSpec":
        return cls(name=str(d["name"]), shape=tuple(int(x) for x in d["shape"]), dtype=str(d["dtype"]))


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
    def from_dict(cls, d: dict[str, Any]) -> "PlanSidecar":
        if d.get("format") != SIDECAR_FORMAT:
            raise EngineError(f"sidecar format must be {SIDECAR_FORMAT!r}, received {d.get('format')!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in fields}
        try:
            kw["compute_capability"] = tuple(int(x) for x in d["compute_capability"])
            kw["inputs"] = tuple(TensorSpec.from_dict(t) for t in d["inputs"])
            kw["outputs"] = tuple(TensorSpec.from_dict(t) for t in d["outputs"])
            return cls(**kw)
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"sidecar is missing or has a malformed field: {exc}") from exc


def sidecar_path(plan_path: str | os.PathLike[str]) -> Path:
    """``model.plan`` -> ``model.plan.json``."""
    return Path(f"{os.fspath(plan_path)}.json")


def write_sidecar(plan_path: str | os.PathLike[str], sidecar: PlanSidecar) -> Path:
    """Write the sidecar beside ``plan_path`` atomically."""
    from edgeres._io import write_text_atomic

    return write_text_atomic(sidecar_path(plan_path), json.dumps(sidecar.to_dict(), indent=2, sort_keys=True) + "\n")


def read_sidecar(plan_path: str | os.PathLike[str]) -> PlanSidecar | None:
    """The sidecar of ``plan_path``, or None if there is none."""
    path = sidecar_path(plan_path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EngineError(f"sidecar {path} is not readable JSON: {exc}") from exc
    return PlanSidecar.from_dict(data)
