"""The on-device half of a build: a verified bundle folder (or a folded model) -> ``model.plan`` here.

``edgeres compile BUNDLE`` runs only this; ``edgeres build`` calls it when an
engine can be built on this machine (:func:`engine_possible_here`). Steps:
:func:`settings_for_bundle` (manifest + local TensorRT and GPU -> EngineSettings,
with :func:`cache_for_version` re-headering a calibration cache), then
:func:`compile_folder` / :func:`compile_bundle` (EngineSettings -> plan, through
:mod:`edgeres.trt`), or :func:`compile_torch_tensorrt` for the Torch-TensorRT frontend.

The TensorRT adapter (``edgeres.trt``) is imported inside the functions, so
importing this module loads neither torch nor TensorRT. Not verified here: a
real TensorRT build (no GPU or TensorRT on the machine this was written on).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from edgeres._timing import StageTimer
from edgeres.errors import BuildError, BundleError, TensorRTUnavailableError
from edgeres.targets import Target, compute_capability_mismatch
from edgeres.trt_rules import RuleContext, check_rules, dla_int8_mode
from edgeres.trtexec import onnx_file_for


def engine_possible_here(target: Target, allow_mismatch: bool = False) -> tuple[bool, str | None]:
    """(True, "TensorRT x.y") where TensorRT imports and the GPU matches the target, else (False, why)."""
    try:
        from edgeres.trt import local_compute_capability, require_tensorrt

        trt = require_tensorrt()
    except TensorRTUnavailableError:
        return False, "TensorRT is not installed here"
    except ImportError as exc:
        return False, f"the TensorRT adapter cannot load ({exc})"
    try:
        local = local_compute_capability()
    except Exception as exc:  # a broken CUDA install is a reason for a bundle, not a crash
        return False, f"no usable GPU ({type(exc).__name__}: {exc})"
    if local is None:
        return False, "no GPU here"
    why = compute_capability_mismatch(target.compute_capability, local, target=target.name)
    if why is not None and not allow_mismatch:
        return False, why
    return True, f"TensorRT {trt.__version__}"


def installed_tensorrt_version() -> str | None:
    """The importable TensorRT's version, or None."""
    try:
        from edgeres.trt import require_tensorrt

        return str(require_tensorrt().__version__)
    except (TensorRTUnavailableError, ImportError):
        return None


def settings_for_bundle(folder: Path, manifest: Any, *, allow_mismatch: bool = False,
                        trt_version: str | None = None, workspace_mib: int | None = None) -> Any:
    """The EngineSettings that build ``folder``'s engine here, after checking TensorRT and the GPU.

    Raises:
        TensorRTUnavailableError: no TensorRT (with install hints) or no GPU.
        BuildError: the GPU is not the bundle's target (unless ``allow_mismatch``).
        BundleError: the bundle lacks the ONNX this TensorRT version compiles from.
    """
    from edgeres.trt import EngineSettings, local_compute_capability, require_tensorrt

    trt = require_tensorrt()
    version = trt_version or str(trt.__version__)
    local = local_compute_capability()
    expected = tuple(manifest.compute_capability)
    if local is None:
        raise TensorRTUnavailableError("TensorRT is installed but no GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)")
    why = compute_capability_mismatch(expected, local, target=manifest.target)
    if why is not None and not allow_mismatch:
        raise BuildError(why)
    mode = manifest.int8_mode if manifest.precision == "int8" else None
    dla = manifest.dla_core is not None
    if dla and mode is not None and mode == dla_int8_mode(manifest.tensorrt_version):
        # a DLA bundle made with the DLA INT8 mode of its version (edgeres.build.BuildPlan.spec_for) serves each listed
        # version with that version's mode: implicit before 11, the DLA Q/DQ model from 11 (manifest onnx_for says so);
        # a bundle stating another mode keeps it, and the rules below judge it
        mode = dla_int8_mode(version)
    # the rule table (edgeres.trt_rules) for this TensorRT, before any work: one line naming the rule and the fix
    check_rules(RuleContext(trt_version=version, precision=manifest.precision, int8_mode=mode,
                            dla_core=manifest.dla_core, min_batch=manifest.min_batch, opt_batch=manifest.opt_batch,
                            max_batch=manifest.max_batch, compute_capability=expected, stage="compile"))
    # the file this version builds from: the weight-form rule for Q/DQ (8.5/8.6: model.qdq.trt8.onnx, 10.x:
    # model.qdq.onnx), the typed ONNX for 11 (model.qdq.dla.fp16.onnx on DLA); manifest onnx_for records the same
    # choice per listed version
    onnx_name = onnx_file_for(manifest.precision, mode, version, dla=dla)
    if onnx_name not in manifest.files:
        raise BundleError(
            f"TensorRT {version} compiles {manifest.precision} from {onnx_name}, which this bundle lacks "
            f"(it is meant for TensorRT {', '.join(manifest.tensorrt_versions)}); rebuild it with --trt-version {version}"
        )
    calib_cache = folder / "calib.cache" if "calib.cache" in manifest.files else None
    if mode == "calibrator" and calib_cache is not None:
        calib_cache = cache_for_version(calib_cache, version)
    return EngineSettings(
        onnx_path=folder / onnx_name, plan_path=folder / "model.plan", precision=manifest.precision,
        int8_mode=mode or "qdq", calib_cache=calib_cache,
        input_name=manifest.input_name, input_shape=tuple(manifest.input_shape), min_batch=manifest.min_batch,
        opt_batch=manifest.opt_batch, max_batch=manifest.max_batch,
        workspace_bytes=(workspace_mib or manifest.workspace_mib) << 20,
        dla_core=manifest.dla_core, gpu_fallback=manifest.gpu_fallback, timing_cache=folder / "timing.cache",
        target=manifest.target, expected_compute_capability=expected, allow_mismatch=allow_mismatch,
        recipe=dict(manifest.recipe) if manifest.recipe else None,
    )


def cache_for_version(cache: Path, trt_version: str) -> Path:
    """``cache`` if its header names ``trt_version``, else a re-headered copy beside it.

    TensorRT ignores a calibration cache written for another version (and would
    need calibration data it does not have on the device); the scales themselves
    mean the same from 8.5 to 10.x, so only the header changes. The bundle's own
    ``calib.cache`` stays as hashed.
    """
    from edgeres.calibrate.cache import parse_calibration_cache, trt_version_code, write_calibration_cache

    text = cache.read_text(encoding="utf-8")
    header_version, _name, scales = parse_calibration_cache(text, str(cache))
    if trt_version_code(header_version) == trt_version_code(trt_version):
        return cache
    return write_calibration_cache(cache.with_name(f"calib.trt-{trt_version}.cache"), scales, trt_version)


def compile_folder(folder: Path, manifest: Any, *, allow_mismatch: bool = False) -> Any:
    """Build ``folder/model.plan`` (+ sidecar) from a verified bundle folder with the local TensorRT."""
    from edgeres.trt import build_engine

    return build_engine(settings_for_bundle(folder, manifest, allow_mismatch=allow_mismatch))


def compile_bundle(bundle: str | os.PathLike[str], *, allow_mismatch: bool = False,
                   workspace_mib: int | None = None, report: Callable[[str], None] | None = None) -> Any:
    """``edgeres compile``: verify every sha256, check TensorRT and the GPU, build ``model.plan``.

    The plan is written into the bundle folder atomically (temporary file, then
    rename), so a failed compile leaves the bundle as it was.
    """
    from edgeres.bundle import verify_bundle

    timer = StageTimer(report)
    start = time.perf_counter()
    # every check runs before any progress output, so a refusal is one line
    manifest = verify_bundle(bundle)
    # refuse what would fail anyway (edgeres.doctor), before TensorRT is required
    from edgeres.doctor import check_preflight, collect_facts

    check_preflight(manifest, collect_facts(disk_path=bundle), allow_mismatch=allow_mismatch, bundle=str(bundle))
    settings = settings_for_bundle(Path(bundle), manifest, allow_mismatch=allow_mismatch, workspace_mib=workspace_mib)
    timer.report(f"- verified {len(manifest.files)} files in {time.perf_counter() - start:.2f} s")
    with timer.stage("compile"):
        from edgeres.trt import build_engine

        sidecar = build_engine(settings)
    return sidecar


def compile_torch_tensorrt(model: Any, spec: Any, target: Target, folder: Path, recipe: Any) -> Any:
    """Torch-TensorRT (dynamo) FP32/FP16 engine of ``model`` for ``spec`` -> ``folder/model.plan`` + sidecar.

    Not verified: torch_tensorrt cannot be installed on the machine this was written on.
    """
    try:
        import torch_tensorrt  # noqa: F401
    except ImportError as exc:
        raise TensorRTUnavailableError(
            "--frontend torch-tensorrt needs torch-tensorrt (pip install torch-tensorrt, matching your torch; "
            "on Jetson use NVIDIA's JetPack wheels); or use the default ONNX frontend"
        ) from exc
    import torch

    import hashlib

    import edgeres
    from edgeres._io import atomic_files, sha256_file
    from edgeres.sidecar import PlanSidecar, TensorSpec, write_sidecar
    from edgeres.trt import local_compute_capability, require_tensorrt

    s = spec
    shape = tuple(s.input_shape)
    dtype = torch.half if s.precision == "fp16" else torch.float
    example = torch.zeros(max(2, s.opt_batch), *shape).cuda()
    batch_dim = torch.export.Dim("batch", min=max(2, s.min_batch), max=max(2, s.max_batch))
    exported = torch.export.export(model.cuda().eval(), (example,), dynamic_shapes=({0: batch_dim},))
    inputs = [torch_tensorrt.Input(min_shape=(s.min_batch, *shape), opt_shape=(s.opt_batch, *shape),
                                   max_shape=(s.max_batch, *shape), dtype=torch.float)]
    engine = bytes(torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine(
        exported, inputs=inputs, enabled_precisions={dtype}, workspace_size=s.workspace_mib << 20,
    ))
    plan_path = folder / "model.plan"
    cc = local_compute_capability() or target.compute_capability
    sidecar = PlanSidecar(
        tensorrt_version=str(require_tensorrt().__version__), compute_capability=tuple(cc),
        device_name=torch.cuda.get_device_name(0), precision=s.precision,
        inputs=(TensorSpec("input", (-1, *shape), "float32"),),
        outputs=(TensorSpec("logits", (-1, recipe.num_classes), "float32"),),
        min_batch=s.min_batch, opt_batch=s.opt_batch, max_batch=s.max_batch, plan_sha256=hashlib.sha256(engine).hexdigest(),
        onnx_sha256=sha256_file(folder / "model.onnx"), edgeres_version=edgeres.__version__, dla_core=None,
        target=target.name, recipe=recipe.to_dict(), extra={"frontend": "torch-tensorrt"},
    )
    with atomic_files(folder) as staging:  # plan and sidecar appear together
        (staging / plan_path.name).write_bytes(engine)
        write_sidecar(staging / plan_path.name, sidecar)
    return sidecar
