"""Deploy bundles: everything a device needs to build its engine, verified by sha256.

A bundle is a folder made where no engine can be built (a workstation
preparing a Jetson deployment). ``manifest.json`` names every other file with
its sha256 and role, the target, precision, input shape and batch range, the
preprocessing recipe, the source checkpoint's hash, the edgeres version and
the TensorRT versions the bundle is meant for; ``build.sh`` is the equivalent
``trtexec`` command. ``edgeres compile BUNDLE`` (:func:`edgeres.device_build.compile_bundle`)
verifies every hash before it builds anything.

The manifest holds no timestamps or absolute paths, so the same inputs give
a byte-identical bundle.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from edgeres._io import OUTPUT_MARKER, output_dir, sha256_file
from edgeres.errors import BundleError

BUNDLE_FORMAT = "edgeres-bundle/1"
MANIFEST = "manifest.json"
BUILD_SCRIPT = "build.sh"
OPTIONAL_FIELDS = ("onnx_for", "dla_fallback")  # newer manifest fields; manifests without them still read

# file name -> role: what each bundle file is for
FILE_ROLES = {
    "model.onnx": "FP32 ONNX, BatchNorm folded (TensorRT 8.x/10.x builds FP32/FP16, and INT8 with the calibration cache)",
    "model.fp16.onnx": "FP16 ONNX with FP32 I/O (TensorRT 11 FP16)",
    "model.qdq.onnx": "Q/DQ ONNX, INT8 weights -> DequantizeLinear, FP32 elsewhere (TensorRT 10.x explicit INT8)",
    "model.qdq.trt8.onnx": "Q/DQ ONNX, FP32 weights -> QuantizeLinear -> DequantizeLinear (TensorRT 8.5/8.6 explicit INT8)",
    "model.qdq.fp16.onnx": "Q/DQ ONNX, FP16 elsewhere, FP32 I/O (TensorRT 11 INT8)",
    "calib.cache": "TensorRT INT8 calibration cache (implicit calibration, TensorRT <= 10)",
    "calib_report.json": "calibration report: INT8 vs FP32 accuracy, per-layer scales",
    "build.sh": "the equivalent trtexec command, verifying these hashes first",
    OUTPUT_MARKER: "marker: this folder is an `edgeres build` output (edgeres._io.output_dir)",
}


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
    # TensorRT version -> the ONNX file it builds from (edgeres.trtexec.onnx_file_for); None in older manifests
    onnx_for: Mapping[str, str] | None = None
    # DLA builds: the layers that will fall back to the GPU [{layer, op, reason, source, certainty}] (edgeres.dla_lint)
    dla_fallback: tuple[Mapping[str, Any], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["compute_capability"] = list(self.compute_capability)
        d["input_shape"] = list(self.input_shape)
        d["tensorrt_versions"] = list(self.tensorrt_versions)
        d["files"] = {k: dict(v) for k, v in sorted(self.files.items())}
        for key in OPTIONAL_FIELDS:  # left out when empty, so older readers and older bundles see the same fields
            if d.get(key) is None:
                d.pop(key, None)
        if self.dla_fallback is not None:
            d["dla_fallback"] = [dict(x) for x in self.dla_fallback]
        return {"format": BUNDLE_FORMAT, **d}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = MANIFEST) -> "BundleManifest":
        if d.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{where}: format must be {BUNDLE_FORMAT!r}, received {d.get('format')!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(n for n in names if n not in d and n not in ("calibration", *OPTIONAL_FIELDS))
        if missing:
            raise BundleError(f"{where}: missing field(s) {', '.join(missing)}")
        kw = {k: v for k, v in d.items() if k in names}
        try:
            kw["compute_capability"] = tuple(int(x) for x in d["compute_capability"])
            kw["input_shape"] = tuple(int(x) for x in d["input_shape"])
            kw["tensorrt_versions"] = tuple(str(x) for x in d["tensorrt_versions"])
            if d.get("onnx_for") is not None:
                if not isinstance(d["onnx_for"], dict) or not all(isinstance(v, str) for v in d["onnx_for"].values()):
                    raise TypeError("onnx_for must map TensorRT versions to file names")
                kw["onnx_for"] = {str(k): v for k, v in d["onnx_for"].items()}
            if d.get("dla_fallback") is not None:
                if not isinstance(d["dla_fallback"], list) or not all(isinstance(x, dict) for x in d["dla_fallback"]):
                    raise TypeError("dla_fallback must be a list of {layer, op, reason, source}")
                kw["dla_fallback"] = tuple(dict(x) for x in d["dla_fallback"])
            if not isinstance(d["files"], dict) or not all(isinstance(v, dict) and "sha256" in v for v in d["files"].values()):
                raise TypeError("files must map names to {sha256: ...}")
            return cls(**kw)
        except (TypeError, ValueError) as exc:
            raise BundleError(f"{where}: malformed field ({exc})") from exc

    def file_for(self, name: str) -> bool:
        return name in self.files


def manifest_json(manifest: BundleManifest) -> str:
    """Canonical JSON text (sorted keys, fixed indent): the same manifest gives the same bytes."""
    return json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n"


def file_entries(folder: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """{name: {sha256, bytes, role}} for ``names`` inside ``folder``."""
    return {
        name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size, "role": FILE_ROLES.get(name, "")}
        for name in sorted(names)
    }


def make_bundle(
    out_dir: str | os.PathLike[str],
    files: Mapping[str, str | os.PathLike[str]],
    manifest_fields: Mapping[str, Any],
    build_sh: str,
    *,
    force: bool = False,
) -> BundleManifest:
    """Write a bundle folder atomically: copy ``files`` in, add ``build.sh`` and ``manifest.json``.

    Args:
        out_dir: bundle folder; replaced only once the new one is complete, and only when it is an
            earlier build (its ``.edgeres-output.json`` marker; any folder with ``force``), never
            when a source file lives inside it (:func:`edgeres._io.output_dir`).
        files: bundle file name -> source path.
        manifest_fields: every :class:`BundleManifest` field except ``files``.
        build_sh: text of ``build.sh``.

    Raises:
        BundleError: a source file is missing.
        OutputPathError: ``out_dir`` may not be replaced.
    """
    for name, src in files.items():
        if not Path(src).is_file():
            raise BundleError(f"cannot bundle {name}: {src} does not exist")
    with output_dir(out_dir, "build", inputs=files.values(), force=force) as tmp:
        for name, src in sorted(files.items()):
            shutil.copyfile(src, tmp / name)
        return finish_bundle(tmp, manifest_fields, build_sh)


def finish_bundle(folder: Path, manifest_fields: Mapping[str, Any], build_sh: str) -> BundleManifest:
    """Add ``build.sh`` and ``manifest.json`` (hashing every other file) to a staged bundle folder."""
    script = folder / BUILD_SCRIPT
    script.write_text(build_sh, encoding="utf-8")
    script.chmod(0o755)
    names = [p.name for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST]
    manifest = BundleManifest(**{**manifest_fields, "files": file_entries(folder, names)})
    (folder / MANIFEST).write_text(manifest_json(manifest), encoding="utf-8")
    # temporary folders and files are private (0700/0600); a bundle is meant to be copied and shared
    folder.chmod(0o755)
    for path in folder.iterdir():
        if path.is_file() and path.name != BUILD_SCRIPT:
            path.chmod(0o644)
    return manifest


def load_manifest(bundle: str | os.PathLike[str]) -> BundleManifest:
    """Read and parse ``BUNDLE/manifest.json`` (no hash checks; see :func:`verify_bundle`)."""
    folder = Path(bundle)
    if not folder.is_dir():
        raise BundleError(f"bundle {folder} is not a folder (expected the output of `edgeres build`)")
    path = folder / MANIFEST
    if not path.is_file():
        raise BundleError(f"bundle {folder} has no {MANIFEST}; is it an edgeres bundle?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{path} must hold a JSON object, received {type(data).__name__}")
    return BundleManifest.from_dict(data, str(path))


def verify_bundle(bundle: str | os.PathLike[str]) -> BundleManifest:
    """Check every file the manifest names exists and matches its sha256; return the manifest.

    Raises:
        BundleError: naming the first missing file or the first hash mismatch.
    """
    folder = Path(bundle)
    manifest = load_manifest(folder)
    for name, entry in sorted(manifest.files.items()):
        if Path(name).name != name:
            raise BundleError(f"bundle {folder}: manifest names {name!r}, which is not a plain file name")
        path = folder / name
        if not path.is_file():
            raise BundleError(f"bundle {folder} is incomplete: {name} is missing (listed in {MANIFEST})")
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise BundleError(
                f"bundle {folder}: {name} fails its sha256 check (expected {entry['sha256'][:12]}..., "
                f"found {digest[:12]}...); the file was changed or truncated in transfer"
            )
    return manifest
