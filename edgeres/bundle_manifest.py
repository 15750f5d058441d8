"""The deploy bundle's ``manifest.json``: its typed reader, shared by the host side and the runtime.

:mod:`edgeres.bundle` (writing and verifying bundles) and :mod:`edgeres.runtime`
(checking a bundle's model file before running it) both read manifests through
this module, so there is one schema and one set of limits. Standard library,
:mod:`edgeres._readers`, :mod:`edgeres._names` and :mod:`edgeres.errors` only (the runtime
must not import the host side).

Every field is type-checked (:func:`manifest_from_dict`): ``min_batch: "many"``,
``precision: "int3"``, ``sha256: 5``, ``null`` where a value is required, a list where
an object is expected, or a compute capability of ``1e999`` is one error line naming
the field. Unknown top-level fields are ignored (a newer edgeres may add some), but
never reach a generated file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

from edgeres._names import EXPECTED, PATTERNS
from edgeres._io import OUTPUT_MARKER
from edgeres._readers import Fields, read_json_file
from edgeres.errors import EdgeresError

BUNDLE_FORMAT = "edgeres-bundle/1"
MANIFEST = "manifest.json"
# OUTPUT_MARKER: the output-ownership marker `edgeres build` leaves in its folder (issue 14 item 2);
# verification accepts it, its content is checked by edgeres._io, which defines and writes it.
OPTIONAL_FIELDS = ("onnx_for", "dla_fallback")  # newer manifest fields; manifests without them still read
PRECISIONS = ("fp32", "fp16", "int8")
INT8_MODES = ("qdq", "calibrator")
MAX_BATCH = 1 << 16  # the same bound as edgeres.trtexec.MAX_DIM
MAX_DIM = 1 << 16
MAX_WORKSPACE_MIB = 1 << 24
MAX_FILES = 256
MAX_FILE_BYTES = 1 << 44  # 16 TiB


@dataclasses.dataclass(frozen=True)
class BundleManifest:
    """The parsed ``manifest.json`` of a bundle."""

    target: str
    compute_capability: tuple[int, int]
    precision: str
    int8_mode: str | None
    input_name: str
    output_name: str
    input_shape: tuple[int, int, int]
    min_batch: int
    opt_batch: int
    max_batch: int
    workspace_mib: int
    dla_core: int | None
    gpu_fallback: bool
    tensorrt_version: str
    tensorrt_versions: tuple[str, ...]
    files: Mapping[str, Mapping[str, Any]]
    recipe: Mapping[str, Any] | None
    source: Mapping[str, Any]
    edgeres_version: str
    calibration: Mapping[str, Any] | None = None
    # newer optional fields (issue 10), left out of the JSON when None so older bundles read the same:
    # TensorRT version -> the ONNX file it builds from; DLA builds: layers that fall back to the GPU
    onnx_for: Mapping[str, str] | None = None
    dla_fallback: tuple[Mapping[str, Any], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["compute_capability"] = list(self.compute_capability)
        d["input_shape"] = list(self.input_shape)
        d["tensorrt_versions"] = list(self.tensorrt_versions)
        d["files"] = {k: dict(v) for k, v in sorted(self.files.items())}
        for key in OPTIONAL_FIELDS:
            if d.get(key) is None:
                d.pop(key, None)
        if self.dla_fallback is not None:
            d["dla_fallback"] = [dict(x) for x in self.dla_fallback]
        return {"format": BUNDLE_FORMAT, **d}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = MANIFEST,
                  error: type[EdgeresError] | None = None) -> "BundleManifest":
        """Type-check every field (see :func:`manifest_from_dict`)."""
        return manifest_from_dict(d, where, error)

    def file_for(self, name: str) -> bool:
        return name in self.files


def _bundle_error() -> type[EdgeresError]:
    from edgeres.errors import BundleError

    return BundleError


def _file_entries(f: Fields) -> dict[str, dict[str, Any]]:
    files = f.object("files")
    assert files is not None
    if len(files.data) > MAX_FILES:
        raise f.error(f"{f.what}: field 'files' lists {len(files.data)} files; expected at most {MAX_FILES}")
    out: dict[str, dict[str, Any]] = {}
    for name in files.data:
        plain = isinstance(name, str) and (PATTERNS["file"].fullmatch(name) is not None or name == OUTPUT_MARKER)
        if not plain or name == MANIFEST:
            shown_name = repr(name)[:60]
            raise f.error(f"{f.what}: field 'files' names {shown_name}; expected {EXPECTED['file']} "
                          f"(never {MANIFEST} itself)")
        entry = files.object(name)
        assert entry is not None
        out[name] = {"sha256": entry.str("sha256", pattern=PATTERNS["sha256"], expected=EXPECTED["sha256"])}
        size = entry.int("bytes", 0, MAX_FILE_BYTES, optional=True)
        role = entry.str("role", max_len=400, optional=True)
        if size is not None:
            out[name]["bytes"] = size
        if role is not None:
            out[name]["role"] = role
    return out


def manifest_from_dict(d: Any, where: str = MANIFEST, error: type[EdgeresError] | None = None) -> BundleManifest:
    """A :class:`BundleManifest` from parsed JSON, every field checked (``error``: BundleError by default)."""
    error = error or _bundle_error()
    f = Fields(d, where, error)
    if f.data.get("format") != BUNDLE_FORMAT:
        raise f.fail("format", repr(BUNDLE_FORMAT), f.data.get("format", None))
    precision = f.str("precision", choices=PRECISIONS)
    int8_mode = f.str("int8_mode", choices=INT8_MODES, optional=True)
    if precision == "int8" and int8_mode is None:
        raise f.fail("int8_mode", f"one of {INT8_MODES} for precision int8", None)
    cc = f.int_list("compute_capability", 2, 0, 99)
    assert cc is not None
    if cc[0] < 1:
        raise f.fail("compute_capability", "[major, minor] with major >= 1", list(cc))
    shape = f.int_list("input_shape", 3, 1, MAX_DIM)
    batches = [f.int(k, 1, MAX_BATCH) for k in ("min_batch", "opt_batch", "max_batch")]
    if not batches[0] <= batches[1] <= batches[2]:
        raise error(f"{where}: fields min_batch <= opt_batch <= max_batch must hold, received "
                    f"{batches[0]}, {batches[1]}, {batches[2]}")
    versions = f.str_list("tensorrt_versions", pattern=PATTERNS["tensorrt_version"], min_len=1, max_len=64,
                          expected="a non-empty list of versions like 10.3.0")
    recipe = f.object("recipe", optional=True)
    source = f.object("source")
    calibration = f.object("calibration", optional=True)
    assert source is not None and shape is not None and versions is not None
    onnx_for = f.check("onnx_for", lambda v: isinstance(v, dict) and len(v) <= 64 and all(
        PATTERNS["tensorrt_version"].fullmatch(str(k)) and isinstance(x, str) and PATTERNS["file"].fullmatch(x)
        for k, x in v.items()), "an object of TensorRT version -> ONNX file name", optional=True)
    dla_fallback = f.check("dla_fallback", lambda v: isinstance(v, list) and len(v) <= 4096 and all(
        isinstance(x, dict) for x in v), "a list of objects {layer, op, reason, source}", optional=True)
    return BundleManifest(
        target=f.str("target", pattern=PATTERNS["target"], expected=EXPECTED["target"]),
        compute_capability=(cc[0], cc[1]),
        precision=precision,
        int8_mode=int8_mode,
        input_name=f.str("input_name", pattern=PATTERNS["tensor"], expected=EXPECTED["tensor"]),
        output_name=f.str("output_name", pattern=PATTERNS["tensor"], expected=EXPECTED["tensor"]),
        input_shape=(shape[0], shape[1], shape[2]),
        min_batch=batches[0], opt_batch=batches[1], max_batch=batches[2],
        workspace_mib=f.int("workspace_mib", 1, MAX_WORKSPACE_MIB),
        dla_core=f.int("dla_core", 0, 15, optional=True),
        gpu_fallback=f.bool("gpu_fallback"),
        tensorrt_version=f.str("tensorrt_version", pattern=PATTERNS["tensorrt_version"],
                               expected=EXPECTED["tensorrt_version"]),
        tensorrt_versions=versions,
        files=_file_entries(f),
        recipe=None if recipe is None else dict(recipe.data),
        source=dict(source.data),
        edgeres_version=f.str("edgeres_version", pattern=PATTERNS["edgeres_version"], expected=EXPECTED["edgeres_version"]),
        calibration=None if calibration is None else dict(calibration.data),
        onnx_for=None if onnx_for is None else dict(onnx_for),
        dla_fallback=None if dla_fallback is None else tuple(dict(x) for x in dla_fallback),
    )


def read_manifest_data(path: str | os.PathLike[str], error: type[EdgeresError]) -> dict[str, Any]:
    """The JSON object of a manifest file, bounded (no FIFOs, size, depth, UTF-8, finite numbers)."""
    return read_json_file(path, "bundle manifest", error)


def load_manifest_file(path: str | os.PathLike[str], error: type[EdgeresError] | None = None) -> BundleManifest:
    """Read and type-check one ``manifest.json``."""
    error = error or _bundle_error()
    return manifest_from_dict(read_manifest_data(path, error), str(path), error)


# ---- what the runtime reads beside a model file ---------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RuntimeManifest:
    """The manifest fields the runtime uses; hand-written partial manifests are allowed.

    ``bundle`` is True for a full edgeres bundle manifest (``format`` set): then a model
    file beside it must be listed in ``files``.
    """

    path: Path
    bundle: bool
    min_batch: int | None
    opt_batch: int | None
    max_batch: int | None
    recipe: Mapping[str, Any] | None
    files: Mapping[str, Mapping[str, Any]]


def runtime_manifest(model_path: Path, error: type[EdgeresError]) -> RuntimeManifest | None:
    """The manifest beside ``model_path`` (None if there is none), checked field by field.

    A full bundle manifest (``format`` set) is checked as :func:`manifest_from_dict` does;
    a partial one (``{"max_batch": 8, "recipe": {...}}``, as examples write) only in the
    fields present.
    """
    path = model_path.parent / MANIFEST
    if not os.path.lexists(path):
        return None
    data = read_manifest_data(path, error)
    if "format" in data:
        m = manifest_from_dict(data, str(path), error)
        return RuntimeManifest(path, True, m.min_batch, m.opt_batch, m.max_batch, m.recipe, m.files)
    f = Fields(data, str(path), error)
    batch = f.object("batch", optional=True)  # older manifests: {"batch": {"min": 1, "max": 8}}

    def pick(key: str) -> int | None:
        value = f.int(f"{key}_batch", 1, MAX_BATCH, optional=True)
        if value is None and batch is not None:
            value = batch.int(key, 1, MAX_BATCH, optional=True)
        return value

    recipe = f.object("recipe", optional=True)
    files = _file_entries(f) if "files" in data else {}
    return RuntimeManifest(path, False, pick("min"), pick("opt"), pick("max"),
                           None if recipe is None else dict(recipe.data), files)


def sha256_of(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, in chunks (the runtime cannot import edgeres._io's host helpers)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def check_listed_file(manifest: RuntimeManifest, model_path: Path, error: type[EdgeresError]) -> None:
    """Refuse ``model_path`` unless the manifest beside it lists it with a matching sha256.

    A partial manifest without ``files`` lists nothing and checks nothing; a full bundle
    manifest that does not list the file refuses it (a model dropped into a bundle).
    """
    entry = manifest.files.get(model_path.name)
    if entry is None:
        if manifest.bundle:
            raise error(f"{model_path} is not listed in {manifest.path}: it is not part of that bundle "
                        "(pass verify=False to open it anyway)")
        return
    digest = sha256_of(model_path)
    if digest != entry["sha256"]:
        raise error(f"{model_path} fails its sha256 check against {manifest.path}: expected "
                    f"{entry['sha256'][:16]}..., received {digest[:16]}... (the file was changed, swapped or "
                    "truncated; rebuild the bundle, or pass verify=False to open it anyway)")
