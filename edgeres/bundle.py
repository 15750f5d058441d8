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

import json
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any, Mapping

from edgeres._io import OUTPUT_MARKER, output_dir, sha256_file
from edgeres._names import FILE_NAME, TENSORRT_VERSION
from edgeres._readers import file_kind, shown
from edgeres.bundle_manifest import (  # noqa: F401 - re-exported: edgeres.bundle.BundleManifest etc. keep working
    BUNDLE_FORMAT,
    MANIFEST,
    OPTIONAL_FIELDS,
    BundleManifest,
    load_manifest_file,
    manifest_from_dict,
)
from edgeres.errors import BundleError

BUILD_SCRIPT = "build.sh"

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

# Files `edgeres compile` writes into a bundle on the device (not in the manifest, which was hashed
# before): each is checked against its own record by verify_bundle (see _check_device_file).
PLAN, PLAN_SIDECAR = "model.plan", "model.plan.json"
TIMING_CACHE, TIMING_STAMP = "timing.cache", "timing.cache.json"
DEVICE_FILES = (PLAN, PLAN_SIDECAR, TIMING_CACHE, TIMING_STAMP)
# edgeres.device_build.cache_for_version names it calib.trt-<the device's trt.__version__>.cache
REHEADERED_CACHE = re.compile(rf"calib\.trt-({TENSORRT_VERSION.pattern})\.cache", re.ASCII)


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
    # the writer is held to the reader's schema: a manifest edgeres writes is one it reads back
    manifest = manifest_from_dict(json.loads(manifest_json(manifest)), f"{folder.name}/{MANIFEST} (being written)")
    (folder / MANIFEST).write_text(manifest_json(manifest), encoding="utf-8")
    # temporary folders and files are private (0700/0600); a bundle is meant to be copied and shared
    folder.chmod(0o755)
    for path in folder.iterdir():
        if path.is_file() and path.name != BUILD_SCRIPT:
            path.chmod(0o644)
    return manifest


def load_manifest(bundle: str | os.PathLike[str]) -> BundleManifest:
    """Read and type-check ``BUNDLE/manifest.json`` (no hash checks; see :func:`verify_bundle`).

    Bounded and typed (:mod:`edgeres.bundle_manifest`): a deep, huge, non-UTF-8 or
    wrongly typed manifest is one BundleError naming the field.
    """
    folder = Path(bundle)
    if not folder.is_dir():
        raise BundleError(f"bundle {folder} is not a folder (expected the output of `edgeres build`)")
    path = folder / MANIFEST
    if path.is_symlink():
        raise BundleError(f"bundle {folder}: {MANIFEST} is a symbolic link; a bundle's files must be its own")
    if not os.path.lexists(path):
        raise BundleError(f"bundle {folder} has no {MANIFEST}; is it an edgeres bundle?")
    return load_manifest_file(path, BundleError)


def folder_entries(folder: Path) -> dict[str, os.stat_result]:
    """name -> lstat of every entry of a bundle folder, refusing what a bundle never holds.

    Refused: symbolic links (even to a file whose hash matches: the target can change, and
    it lies outside the bundle), sub-folders, FIFOs, devices and sockets, and names that
    are not plain file names (``..``, hidden files, undecodable bytes, control characters).
    """
    entries: dict[str, os.stat_result] = {}
    try:
        listing = list(os.scandir(folder))
    except OSError as exc:
        raise BundleError(f"bundle {folder} cannot be listed: {exc.strerror or exc}") from None
    for entry in listing:
        name = entry.name
        if name not in (MANIFEST, OUTPUT_MARKER) and FILE_NAME.fullmatch(name) is None:
            raise BundleError(f"bundle {folder} holds {shown(name)}, which is not a plain file name a bundle has "
                              "(remove it, or rebuild the bundle)")
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise BundleError(f"bundle {folder}: {name} is a symbolic link; a bundle's files must be its own "
                              "(copy the bundle with cp -rL or rsync -L)")
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"bundle {folder}: {name} is {file_kind(st.st_mode)}; a bundle holds regular files only")
        entries[name] = st
    return entries


def _check_own_file(folder: Path, name: str, st: os.stat_result) -> None:
    # Decision (issue 14): a file with more than one hard link is refused. Its other name may lie
    # outside the bundle (a link to a file the user never meant to ship, or one another process
    # rewrites after verification), and nothing can tell where; a bundle copied with cp/rsync/scp
    # never has extra links. Fix: copy the bundle (cp -r), not cp -l or ln.
    if st.st_nlink > 1:
        raise BundleError(f"bundle {folder}: {name} has {st.st_nlink} hard links; a bundle's files must be its own "
                          "(copy the bundle with cp -r, not cp -l or ln)")


def verify_bundle(bundle: str | os.PathLike[str]) -> BundleManifest:
    """Check the manifest, every file it lists (sha256) and every file it does not; return the manifest.

    * every listed file exists, is a regular file of its own (no symlink, one hard link) and
      matches its sha256;
    * a file the manifest does not list is refused, except those ``edgeres compile`` writes
      on the device, each checked against its own record: ``model.plan`` against its sidecar
      ``model.plan.json`` (sha256, and built from one of the bundle's ONNX files),
      ``timing.cache`` by its stamp ``timing.cache.json``, ``calib.trt-<version>.cache`` by
      parsing it (header version and the same scales as ``calib.cache``); and the output
      marker :data:`OUTPUT_MARKER`.

    Raises:
        BundleError: naming the first file that fails and why.
    """
    folder = Path(bundle)
    manifest = load_manifest(folder)
    entries = folder_entries(folder)
    _check_own_file(folder, MANIFEST, entries[MANIFEST])
    for name, entry in sorted(manifest.files.items()):
        if name not in entries:
            raise BundleError(f"bundle {folder} is incomplete: {name} is missing (listed in {MANIFEST})")
        _check_own_file(folder, name, entries[name])
        digest = sha256_file(folder / name)
        if digest != entry["sha256"]:
            raise BundleError(
                f"bundle {folder}: {name} fails its sha256 check (expected {entry['sha256'][:12]}..., "
                f"found {digest[:12]}...); the file was changed or truncated in transfer"
            )
    for name in sorted(set(entries) - set(manifest.files) - {MANIFEST}):
        _check_own_file(folder, name, entries[name])
        _check_device_file(folder, name, manifest, entries)
    return manifest


def _check_device_file(folder: Path, name: str, manifest: BundleManifest, entries: Mapping[str, Any]) -> None:
    """Accept an unlisted file only if it is one ``edgeres compile`` writes and matches its own record."""
    from edgeres.errors import EdgeresError

    path = folder / name
    try:
        if name == OUTPUT_MARKER:
            return  # the output-ownership marker: checked by the code that writes and reads it
        if name in (PLAN, PLAN_SIDECAR):
            _check_plan(folder, manifest, entries)
            return
        if name in (TIMING_CACHE, TIMING_STAMP):
            _check_timing_cache(folder, entries)
            return
        match = REHEADERED_CACHE.fullmatch(name)
        if match is not None:
            _check_reheadered_cache(folder, path, match.group(1), manifest)
            return
    except BundleError:
        raise
    except EdgeresError as exc:
        raise BundleError(f"bundle {folder}: {name} is not a file edgeres compile wrote: {exc}") from None
    raise BundleError(f"bundle {folder} holds {name}, which its {MANIFEST} does not list and edgeres compile does "
                      "not write; remove it (a bundle must hold exactly the files it was made with)")


def _check_plan(folder: Path, manifest: BundleManifest, entries: Mapping[str, Any]) -> None:
    from edgeres.sidecar import read_sidecar

    sidecar = read_sidecar(folder / PLAN)  # typed, bounded; None when model.plan.json is absent
    if PLAN not in entries:
        return  # a sidecar alone: the build stopped between the sidecar and the plan's rename
    if sidecar is None:
        raise BundleError(f"bundle {folder}: {PLAN} has no {PLAN_SIDECAR} to check it against; remove {PLAN} "
                          "and run edgeres compile again")
    digest = sha256_file(folder / PLAN)
    if digest != sidecar.plan_sha256:
        raise BundleError(f"bundle {folder}: {PLAN} fails its sha256 check against {PLAN_SIDECAR} (expected "
                          f"{sidecar.plan_sha256[:12]}..., found {digest[:12]}...); remove it and compile again")
    onnx_digests = {e["sha256"] for n, e in manifest.files.items() if n.endswith(".onnx")}
    if sidecar.onnx_sha256 not in onnx_digests:
        raise BundleError(f"bundle {folder}: {PLAN} was built from an ONNX this bundle does not hold (sidecar "
                          f"onnx_sha256 {sidecar.onnx_sha256[:12]}...); remove it and compile again")


def _check_timing_cache(folder: Path, entries: Mapping[str, Any]) -> None:
    from edgeres.sidecar import read_timing_cache_stamp

    version = read_timing_cache_stamp(folder / TIMING_CACHE, BundleError)  # typed; BundleError if malformed
    if TIMING_CACHE in entries and version is None:
        raise BundleError(f"bundle {folder}: {TIMING_CACHE} has no {TIMING_STAMP} naming the TensorRT that wrote it; "
                          f"remove {TIMING_CACHE} (the next compile writes a fresh one)")


def _check_reheadered_cache(folder: Path, path: Path, version: str, manifest: BundleManifest) -> None:
    from edgeres.calibrate.cache import read_calibration_cache_file

    if "calib.cache" not in manifest.files:
        raise BundleError(f"bundle {folder} holds {path.name} but lists no calib.cache it could be re-headered from")
    from edgeres.tensorrt_version import parse_version

    header, _name, scales = read_calibration_cache_file(path)
    _h, _n, original = read_calibration_cache_file(folder / "calib.cache")
    if parse_version(header).release != parse_version(version).release or scales != original:
        raise BundleError(f"bundle {folder}: {path.name} is not calib.cache re-headered for TensorRT {version} "
                          f"(header {header}, {'same' if scales == original else 'different'} scales); remove it")
