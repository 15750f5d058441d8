"""Device target profiles: one TOML per device in ``targets/``, validated on load.

A profile says what a device can run (compute capability, DLA cores,
precisions with a fast path), how big a build may get (memory, workspace,
batch range) and which TensorRT versions its JetPack releases ship. Every
fact carries its source (``sources`` URLs, ``provenance`` notes per field).

Profiles ship with edgeres (found through :func:`edgeres.resources.shipped_dir`);
``targets_dir`` adds a user's own, which win over shipped ones of the same
name. A module variant is chosen with ``name:variant`` (``jetson-orin-nx:16gb``):
its table overrides the base fields.

Profiles are read by the bounded TOML reader (:func:`edgeres._readers.read_toml_file`: no
FIFOs, size and nesting limits, UTF-8) and every string is checked: names, variants and
aliases against :mod:`edgeres._names` (lower-case ASCII), versions in their canonical form,
no control characters anywhere, so nothing from a profile can break a generated ``build.sh``
or ``manifest.json``.

This module imports only the standard library (plus ``tomli`` on Python 3.10).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from edgeres._names import TARGET_NAME, TARGET_REF, VARIANT_NAME, check_name, is_name
from edgeres._readers import has_control_characters, is_int, is_number, read_toml_file, shown
from edgeres.errors import TargetError
from edgeres.tensorrt_version import parse_version

PRECISIONS = ("fp32", "fp16", "int8")
INT8_MODES = ("qdq", "calibrator")
KINDS = ("jetson", "desktop")


@dataclasses.dataclass(frozen=True)
class Target:
    """One device profile (see ``targets/*.toml`` for the field sources).

    Attributes:
        name: profile name, the file stem (``jetson-orin``), plus ``:variant`` if one was chosen.
        display_name: human-readable device name.
        aliases: other names that select this profile (``a10`` for ``rtx30``).
        kind: ``"jetson"`` or ``"desktop"``.
        compute_capability: (major, minor) of the GPU.
        dla_cores: number of DLA cores (0 = none).
        precisions: precisions with a fast path on this device.
        memory_gb: device memory (shared with the CPU on Jetson).
        workspace_mib: default TensorRT builder workspace limit.
        default_precision: what ``--precision`` defaults to.
        int8_mode: ``"qdq"`` (explicit Q/DQ ONNX) or ``"calibrator"`` (implicit, with a cache).
        default_batch: the optimization batch of the profile.
        max_batch: the largest batch a build for this target may request.
        tensorrt_versions: TensorRT versions this device runs.
        default_tensorrt: the version bundles target unless told otherwise.
        jetpack: JetPack release -> TensorRT version (Jetson only).
        sources: URLs the facts were checked against.
        provenance: per-field notes (what said so, what is not confirmed).
        variants: names of the module variants (``"16gb"``).
        variant: the chosen variant, or None.
        path: the TOML file it came from.
    """

    name: str
    display_name: str
    aliases: tuple[str, ...]
    kind: str
    compute_capability: tuple[int, int]
    dla_cores: int
    precisions: tuple[str, ...]
    memory_gb: float
    workspace_mib: int
    default_precision: str
    int8_mode: str
    default_batch: int
    max_batch: int
    tensorrt_versions: tuple[str, ...]
    default_tensorrt: str
    jetpack: Mapping[str, str]
    sources: tuple[str, ...]
    provenance: Mapping[str, str]
    variants: tuple[str, ...]
    variant: str | None
    path: str

    @property
    def base_name(self) -> str:
        """The profile name without the variant."""
        return self.name.split(":", 1)[0]

    @property
    def sm(self) -> str:
        """``"8.7"``: the compute capability as printed by NVIDIA."""
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"

    @property
    def workspace_bytes(self) -> int:
        return self.workspace_mib * (1 << 20)

    def supports(self, precision: str) -> bool:
        return precision in self.precisions

    def resolve_precision(self, precision: str | None) -> str:
        """``None`` -> the default; ``"best"`` -> int8 where fast, else fp16, else fp32.

        Raises:
            TargetError: a precision the device has no fast path for.
        """
        if precision is None:
            return self.default_precision
        if precision == "best":
            return next(p for p in ("int8", "fp16", "fp32") if self.supports(p))
        if precision not in PRECISIONS:
            raise TargetError(f"precision must be one of {', '.join(PRECISIONS)} or best, received {precision!r}")
        if not self.supports(precision):
            fallback = next(p for p in ("fp16", "fp32") if self.supports(p))
            raise TargetError(
                f"target {self.name} ({self.display_name}, sm_{self.sm}) has no fast {precision.upper()}; "
                f"supported: {', '.join(self.precisions)}. Use --precision {fallback}"
            )
        return precision

    def check_dla_core(self, dla_core: int | None) -> None:
        """Refuse a DLA core the device does not have."""
        if dla_core is None:
            return
        if self.dla_cores == 0:
            raise TargetError(f"target {self.name} ({self.display_name}) has no DLA; drop --dla-core {dla_core}")
        if not 0 <= dla_core < self.dla_cores:
            hint = ""
            bigger = [v for v in self.variants if v != self.variant]
            if bigger:
                hint = f" (module variants: {', '.join(self.base_name + ':' + v for v in bigger)})"
            raise TargetError(
                f"target {self.name} has {self.dla_cores} DLA core(s), numbered 0..{self.dla_cores - 1}; "
                f"received --dla-core {dla_core}{hint}"
            )

    def check_batch(self, batch: int, max_batch: int) -> None:
        """Refuse a batch range outside 1..max_batch of the profile."""
        if batch < 1 or max_batch < 1:
            raise TargetError(f"batch sizes must be at least 1, received batch {batch}, max batch {max_batch}")
        if batch > max_batch:
            raise TargetError(f"batch {batch} is larger than max batch {max_batch}; pass --max-batch {batch} or more")
        if max_batch > self.max_batch:
            raise TargetError(
                f"max batch {max_batch} is outside target {self.name}'s range 1..{self.max_batch} "
                f"({self.memory_gb:g} GB); lower --max-batch/--batch"
            )

    def check_tensorrt(self, version: str) -> str:
        """A TensorRT version this target runs (exact or same major.minor), in canonical form.

        The text is checked against :data:`edgeres._names.TENSORRT_VERSION` first: it is written
        into ``manifest.json`` and ``build.sh``, so ``"10.3.0\\n"`` or ``" 10.3"`` is refused, not kept.
        """
        check_name("tensorrt_version", version, "--trt-version", TargetError)
        wanted = parse_version(version, error=TargetError)
        for known in self.tensorrt_versions:
            if known == version or parse_version(known).major_minor == wanted.major_minor:
                return version
        raise TargetError(
            f"target {self.name} runs TensorRT {', '.join(self.tensorrt_versions)}; received --trt-version {version}"
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["compute_capability"] = list(self.compute_capability)
        for key in ("aliases", "precisions", "tensorrt_versions", "sources", "variants"):
            d[key] = list(d[key])
        d["jetpack"] = dict(self.jetpack)
        d["provenance"] = dict(self.provenance)
        return d


# ---- schema -------------------------------------------------------------------------------------

MAX_PROFILE_INT = 1 << 24  # bounds every integer of a profile (workspace MiB, batch): nothing real is near it


def _is_text(v: Any) -> bool:
    return isinstance(v, str) and 0 < len(v) <= 4096 and not has_control_characters(v)


def _is_str(v: Any) -> bool:
    return _is_text(v)


def _is_pos_int(v: Any) -> bool:
    return is_int(v) and 1 <= v <= MAX_PROFILE_INT


def _is_nonneg_int(v: Any) -> bool:
    return is_int(v) and 0 <= v <= MAX_PROFILE_INT


def _is_pos_number(v: Any) -> bool:
    return is_number(v) and 0 < v <= MAX_PROFILE_INT


def _is_cc(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(is_int(x) and 0 <= x <= 99 for x in v) and v[0] >= 1


def _is_precisions(v: Any) -> bool:
    return (isinstance(v, list) and bool(v) and all(isinstance(p, str) and p in PRECISIONS for p in v)
            and "fp32" in v and len(set(v)) == len(v))


def _is_version(v: Any) -> bool:
    return is_name("tensorrt_version", v)


def _is_versions(v: Any) -> bool:
    return isinstance(v, list) and 0 < len(v) <= 64 and all(_is_version(x) for x in v)


def _is_urls(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(_is_text(x) and x.startswith("https://") and " " not in x for x in v)


def _is_str_table(v: Any) -> bool:
    return isinstance(v, dict) and all(_is_text(k) and _is_text(x) for k, x in v.items())


def _is_aliases(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) and TARGET_NAME.fullmatch(x) is not None for x in v)


def _is_variants(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and VARIANT_NAME.fullmatch(k) is not None
                                       and isinstance(x, dict) for k, x in v.items())


# field -> (required, check, what the check expects)
SCHEMA: dict[str, tuple[bool, Callable[[Any], bool], str]] = {
    "name": (True, lambda v: isinstance(v, str) and TARGET_NAME.fullmatch(v) is not None,
             "the file name without .toml: lower-case letters, digits, '-' and '_'"),
    "display_name": (True, _is_str, "a non-empty string without control characters"),
    "aliases": (False, _is_aliases, "a list of lower-case names (letters, digits, '-' and '_')"),
    "kind": (True, lambda v: isinstance(v, str) and v in KINDS, f"one of {KINDS}"),
    "sources": (True, _is_urls, "a non-empty list of https:// URLs"),
    "compute_capability": (True, _is_cc, "[major, minor] (0..99 each), e.g. [8, 7]"),
    "dla_cores": (True, lambda v: is_int(v) and 0 <= v <= 16, "an integer in 0..16"),
    "precisions": (True, _is_precisions, f"a list of distinct {PRECISIONS} including fp32"),
    "memory_gb": (True, _is_pos_number, f"a number in (0, {MAX_PROFILE_INT}]"),
    "workspace_mib": (True, _is_pos_int, f"an integer in 1..{MAX_PROFILE_INT} (MiB)"),
    "default_precision": (True, lambda v: isinstance(v, str) and v in PRECISIONS, f"one of {PRECISIONS}"),
    "int8_mode": (True, lambda v: isinstance(v, str) and v in INT8_MODES, f"one of {INT8_MODES}"),
    "default_batch": (True, _is_pos_int, f"an integer in 1..{MAX_PROFILE_INT}"),
    "max_batch": (True, _is_pos_int, f"an integer in 1..{MAX_PROFILE_INT}"),
    "tensorrt_versions": (True, _is_versions, "a non-empty list of versions like \"10.3.0\" (canonical form)"),
    "default_tensorrt": (True, _is_version, "a version like \"10.3.0\" (canonical form)"),
    "jetpack": (False, _is_str_table, "a table of JetPack release = TensorRT version strings"),
    "provenance": (False, _is_str_table, "a table of field = note strings"),
    "variants": (False, _is_variants, "tables of overrides named in lower-case letters, digits, '-' and '_'"),
}
_VARIANT_FIELDS = ("memory_gb", "dla_cores", "workspace_mib", "max_batch", "display_name")


def _fail(path: Path, field: str, expected: str, value: Any) -> TargetError:
    return TargetError(f"target profile {path}: field {field!r} must be {expected}, received {shown(value)}")


def validate_profile(data: Mapping[str, Any], path: Path) -> None:
    """Check a parsed profile against :data:`SCHEMA` and its cross-field rules.

    Raises:
        TargetError: naming the file and the first bad field.
    """
    unknown = sorted(set(data) - set(SCHEMA))
    if unknown:
        raise TargetError(f"target profile {path}: unknown field {shown(unknown[0])}; expected fields: {', '.join(SCHEMA)}")
    for field, (required, check, expected) in SCHEMA.items():
        if field not in data:
            if required:
                raise TargetError(f"target profile {path}: missing field {field!r} ({expected})")
            continue
        if not check(data[field]):
            raise _fail(path, field, expected, data[field])
    if data["name"] != path.stem:
        raise _fail(path, "name", f"the file name {path.stem!r}", data["name"])
    if data["default_precision"] not in data["precisions"]:
        raise _fail(path, "default_precision", f"one of its precisions {data['precisions']}", data["default_precision"])
    if data["default_batch"] > data["max_batch"]:
        raise _fail(path, "default_batch", f"<= max_batch ({data['max_batch']})", data["default_batch"])
    if data["default_tensorrt"] not in data["tensorrt_versions"]:
        raise _fail(path, "default_tensorrt", f"one of tensorrt_versions {data['tensorrt_versions']}", data["default_tensorrt"])
    for release, version in data.get("jetpack", {}).items():
        if version not in data["tensorrt_versions"]:
            raise _fail(path, f"jetpack.{release}", f"one of tensorrt_versions {data['tensorrt_versions']}", version)
    if data["kind"] == "jetson" and not data.get("jetpack"):
        raise TargetError(f"target profile {path}: missing field 'jetpack' (required for kind = \"jetson\")")
    for vname, overrides in data.get("variants", {}).items():
        for key, value in overrides.items():
            if key not in _VARIANT_FIELDS:
                raise TargetError(
                    f"target profile {path}: field 'variants.{vname}.{shown(key)}' cannot be overridden; "
                    f"variants may set {', '.join(_VARIANT_FIELDS)}"
                )
            if not SCHEMA[key][1](value):
                raise _fail(path, f"variants.{vname}.{key}", SCHEMA[key][2], value)


def _read_toml(path: Path) -> dict[str, Any]:
    """A profile's TOML, bounded (no FIFOs, size and nesting limits, UTF-8): TargetError otherwise."""
    return read_toml_file(path, "target profile", TargetError)


def target_from_file(path: str | os.PathLike[str], variant: str | None = None) -> Target:
    """Read, validate and return one profile (with ``variant``'s overrides applied)."""
    path = Path(path)
    data = _read_toml(path)
    validate_profile(data, path)
    variants = data.get("variants", {})
    name = data["name"]
    if variant is not None:
        if variant not in variants:
            raise TargetError(
                f"target {name} has no variant {shown(variant)}; "
                f"variants: {', '.join(variants) if variants else 'none'}"
            )
        data = {**data, **variants[variant]}
        name = f"{name}:{variant}"
    if data["max_batch"] < data["default_batch"]:
        raise _fail(path, f"variants.{variant}.max_batch", f">= default_batch ({data['default_batch']})", data["max_batch"])
    return Target(
        name=name,
        display_name=data["display_name"],
        aliases=tuple(data.get("aliases", ())),
        kind=data["kind"],
        compute_capability=(data["compute_capability"][0], data["compute_capability"][1]),
        dla_cores=data["dla_cores"],
        precisions=tuple(p for p in PRECISIONS if p in data["precisions"]),
        memory_gb=float(data["memory_gb"]),
        workspace_mib=data["workspace_mib"],
        default_precision=data["default_precision"],
        int8_mode=data["int8_mode"],
        default_batch=data["default_batch"],
        max_batch=data["max_batch"],
        tensorrt_versions=tuple(data["tensorrt_versions"]),
        default_tensorrt=data["default_tensorrt"],
        jetpack=dict(data.get("jetpack", {})),
        sources=tuple(data["sources"]),
        provenance=dict(data.get("provenance", {})),
        variants=tuple(variants),
        variant=variant,
        path=str(path),
    )


def _profile_paths(targets_dir: str | os.PathLike[str] | None) -> dict[str, Path]:
    from edgeres.resources import shipped_dir

    paths = {p.stem: p for p in sorted(shipped_dir("targets").glob("*.toml"))}
    if targets_dir is not None:
        user = Path(targets_dir)
        if not user.is_dir():
            raise TargetError(f"--targets-dir {user} is not a folder")
        for p in sorted(user.glob("*.toml")):
            if TARGET_NAME.fullmatch(p.stem) is None:
                lower = p.stem.lower()
                hint = f"; rename it to {lower}.toml" if TARGET_NAME.fullmatch(lower) else ""
                raise TargetError(f"target profile {p}: profile names are lower-case letters, digits, '-' and '_' "
                                  f"(--target is case-insensitive){hint}")
            paths[p.stem] = p
    return paths


def _aliases(paths: Mapping[str, Path]) -> dict[str, str]:
    """alias -> profile name, read cheaply from each file's ``aliases`` list."""
    out: dict[str, str] = {}
    for name, path in paths.items():
        aliases = _read_toml(path).get("aliases", [])
        if isinstance(aliases, list):
            out.update({str(a): name for a in aliases})
    return out


def target_names(targets_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of all profiles (shipped plus ``targets_dir``), sorted."""
    return sorted(_profile_paths(targets_dir))


def load_target(name: str, targets_dir: str | os.PathLike[str] | None = None) -> Target:
    """The profile called ``name`` (``jetson-orin`` or ``jetson-orin-nx:16gb``).

    Raises:
        TargetError: unknown name (listing the closest), or an invalid profile.
    """
    wanted = str(name).strip().lower()
    if TARGET_REF.fullmatch(wanted) is None:
        raise TargetError(f"--target must be a profile name like jetson-orin or jetson-orin-nx:16gb (lower-case "
                          f"letters, digits, '-' and '_'), received {shown(name)} (see `edgeres targets`)")
    base, _, variant = wanted.partition(":")
    paths = _profile_paths(targets_dir)
    if base not in paths:
        base = _aliases(paths).get(base, base)
    if base not in paths:
        close = difflib.get_close_matches(base, [*paths, *_aliases(paths)], n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise TargetError(f"unknown target {shown(name)}{hint} (known: {', '.join(sorted(paths))}; see `edgeres targets`)")
    return target_from_file(paths[base], variant or None)


def list_targets(targets_dir: str | os.PathLike[str] | None = None) -> list[Target]:
    """Every profile, validated, sorted by name; one bad file is an error naming it."""
    return [target_from_file(path) for _, path in sorted(_profile_paths(targets_dir).items())]


def compute_capability_mismatch(expected: Sequence[int] | None, local: Sequence[int] | None, *,
                                target: str | None = None, device_name: str | None = None) -> str | None:
    """None when an engine built on a GPU of ``local`` compute capability runs on ``expected``, else why not.

    The one comparison (and message) for the build planner, ``edgeres compile`` and
    the TensorRT adapter: an engine only loads on the compute capability it was
    built for. An unknown side (None) is no mismatch; the caller reports a missing GPU.
    """
    if expected is None or local is None or tuple(expected) == tuple(local):
        return None
    who = f"target {target}" if target else "the target"
    gpu = f"this GPU ({device_name})" if device_name else "this GPU"
    return (f"{who} has compute capability {expected[0]}.{expected[1]}, {gpu} has {local[0]}.{local[1]}: "
            "its engine would not load there; build on the target (or pass --allow-mismatch)")

