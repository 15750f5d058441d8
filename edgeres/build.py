"""``edgeres build`` and ``edgeres compile``: a PyTorch ResNet to an engine or a deploy bundle.

Stages: fold -> export -> (calibrate) -> (FP16 ONNX for strongly typed TensorRT)
-> compile, each timed. Everything is checked before the first stage runs (target,
precision, DLA core, batch range, TensorRT version), everything is written into a
temporary folder renamed onto ``output`` at the end, so a failure leaves nothing.

An engine is built only where TensorRT imports and the local GPU has the
target's compute capability; otherwise the folder is a deploy bundle that
``edgeres compile BUNDLE`` finishes on the device. Either way the folder has
``manifest.json`` and ``build.sh``.

Reproducibility: the same model, weights, data and options give byte-identical
ONNX, Q/DQ, calibration cache and manifest (no timestamps, deterministic
serialization); engines are not (TensorRT's tactic timing is not).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from edgeres.calibrate.calibrators import DEFAULT_METHOD
from edgeres.errors import BuildError, BundleError, TensorRTUnavailableError
from edgeres.targets import Target, load_target
from edgeres.trtexec import TrtexecSpec, build_script, onnx_file_for, parse_version, strongly_typed

FRONTENDS = ("onnx", "torch-tensorrt")
DEFAULT_CALIB_SIZE = 512


@dataclasses.dataclass(frozen=True)
class BuildRequest:
    """Options of one build; None means "the target's default".

    ``arch`` None builds the shipped reference model (with its weights and
    calibration data) unless ``weights`` names a checkpoint of ``arch``.
    """

    target: str
    output: str | os.PathLike[str]
    arch: str | None = None
    weights: str | os.PathLike[str] | None = None
    precision: str | None = None
    int8_mode: str | None = None
    calib_data: str | None = None
    calib_size: int | None = None
    calib_method: str = DEFAULT_METHOD
    batch: int | None = None
    max_batch: int | None = None
    dla_core: int | None = None
    trt_version: str | None = None
    workspace_mib: int | None = None
    targets_dir: str | os.PathLike[str] | None = None
    frontend: str = "onnx"
    bundle_only: bool = False
    allow_mismatch: bool = False
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class StageTime:
    name: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class BuildResult:
    """What a build made.

    Attributes:
        kind: ``"engine"`` or ``"bundle"``.
        output: the folder.
        target: the resolved target profile.
        precision: the resolved precision.
        trt_version: TensorRT the build (or ``build.sh``) is for.
        reason: why no engine was built (bundles), else None.
        files: file name -> bytes, of everything in the folder.
        stages: wall time of each stage.
        calibration: INT8-vs-FP32 summary from the calibration report, or None.
        manifest: the bundle manifest.
    """

    kind: str
    output: Path
    target: Target
    precision: str
    trt_version: str
    reason: str | None
    files: Mapping[str, int]
    stages: tuple[StageTime, ...]
    calibration: Mapping[str, Any] | None
    manifest: Any

    @property
    def compile_command(self) -> str:
        return f"edgeres compile {self.output}"


@dataclasses.dataclass(frozen=True)
class Plan:
    """A request resolved against its target, before any work."""

    request: BuildRequest
    target: Target
    precision: str
    int8_mode: str | None
    trt_version: str
    spec: TrtexecSpec
    input_shape: tuple[int, int, int]
    engine_here: bool
    reason: str | None
    needs_fp16_onnx: bool


class _Timer:
    def __init__(self, report: Callable[[str], None] | None) -> None:
        self.stages: list[StageTime] = []
        self.report = report or (lambda _msg: None)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.report(f"- {name} ...")
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.stages.append(StageTime(name, seconds))
        self.report(f"  {name} done in {seconds:.2f} s")


# ---- where can the engine be built --------------------------------------------------------------

def engine_possible_here(target: Target, allow_mismatch: bool = False) -> tuple[bool, str | None]:
    """(True, None) where TensorRT imports and the GPU matches the target, else (False, why)."""
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
    if tuple(local) != target.compute_capability and not allow_mismatch:
        return False, f"the local GPU is sm_{local[0]}.{local[1]}, target {target.name} is sm_{target.sm}"
    return True, f"TensorRT {trt.__version__}"


def installed_tensorrt_version() -> str | None:
    try:
        from edgeres.trt import require_tensorrt

        return str(require_tensorrt().__version__)
    except (TensorRTUnavailableError, ImportError):
        return None


# ---- plan ---------------------------------------------------------------------------------------

def plan_build(request: BuildRequest, *, input_shape: tuple[int, int, int]) -> Plan:
    """Resolve a request against its target, checking every option before any work.

    Raises:
        TargetError, BuildError: one line saying what is wrong and what to pass instead.
    """
    r = request
    if r.frontend not in FRONTENDS:
        raise BuildError(f"frontend must be one of {', '.join(FRONTENDS)}, received {r.frontend!r}")
    target = load_target(r.target, r.targets_dir)
    precision = target.resolve_precision(r.precision)
    int8_mode = (r.int8_mode or target.int8_mode) if precision == "int8" else None
    target.check_dla_core(r.dla_core)
    own_model = r.arch is not None or r.weights is not None
    if precision == "int8" and own_model and r.calib_data is None:
        raise BuildError(
            f"INT8 ({'the default for ' + target.name if r.precision is None else 'requested'}) for your own model "
            "needs --calib-data (an image folder, .npy or .npz of its inputs); received none. "
            "Pass --calib-data, or --precision fp16"
        )
    batch = target.default_batch if r.batch is None else r.batch
    max_batch = max(batch, target.default_batch) if r.max_batch is None else r.max_batch
    target.check_batch(batch, max_batch)
    workspace_mib = r.workspace_mib or target.workspace_mib
    if workspace_mib < 1:
        raise BuildError(f"workspace must be at least 1 MiB, received {workspace_mib}")
    engine_here, reason = (False, "a bundle was requested") if r.bundle_only else engine_possible_here(target, r.allow_mismatch)
    local_trt = installed_tensorrt_version() if engine_here else None
    trt_version = target.check_tensorrt(r.trt_version) if r.trt_version else (local_trt or target.default_tensorrt)
    spec = TrtexecSpec(
        precision=precision, int8_mode=int8_mode, input_shape=input_shape, min_batch=1, opt_batch=batch,
        max_batch=max_batch, workspace_mib=workspace_mib, dla_core=r.dla_core, gpu_fallback=True,
    )
    from edgeres.trtexec import check_spec

    check_spec(spec, trt_version)
    if int8_mode == "calibrator" and parse_version(trt_version) < (8, 5):
        raise BuildError(
            f"edgeres writes calibration caches for TensorRT 8.5 to 10.x, received --trt-version {trt_version}; "
            "use --int8-mode qdq"
        )
    needs_fp16 = precision in ("fp16", "int8") and any(
        strongly_typed(parse_version(v)) for v in (*target.tensorrt_versions, trt_version)
    )
    if r.frontend == "torch-tensorrt":
        if precision == "int8":
            raise BuildError("the torch-tensorrt frontend builds fp32/fp16 only; use the default ONNX frontend for INT8")
        if not engine_here:
            raise BuildError(f"the torch-tensorrt frontend builds engines only, and none can be built here: {reason}")
    return Plan(r, target, precision, int8_mode, trt_version, spec, input_shape, engine_here, reason, needs_fp16)


# ---- stages -------------------------------------------------------------------------------------

def _reference_module() -> Any:
    try:
        from edgeres import reference
    except ImportError as exc:
        raise BuildError(
            f"the shipped reference model is not available in this install ({exc}); "
            "pass --arch and --weights to build your own model"
        ) from exc
    return reference


def _model_and_recipe(request: BuildRequest) -> tuple[Any, Any, dict[str, Any]]:
    """(eval model, recipe, source description) for the request."""
    from edgeres._io import sha256_file

    if request.arch is None and request.weights is None:
        reference = _reference_module()

        model = reference.reference_model()
        weights_path = Path(reference.reference_weights_path())
        return model.eval(), reference.reference_recipe(), {
            "arch": "reference", "weights": weights_path.name, "weights_sha256": sha256_file(weights_path)
        }
    from edgeres.models import recipe_for
    from edgeres.weights import model_from_weights

    import torch

    arch = request.arch or "resnet50"
    torch.manual_seed(request.seed)  # random-init builds (no --weights) are reproducible too
    model = model_from_weights(arch, request.weights)
    recipe = recipe_for(arch, in_channels=model.conv1.in_channels)
    source: dict[str, Any] = {"arch": arch, "weights": None, "weights_sha256": None}
    if request.weights is not None:
        source.update(weights=Path(request.weights).name, weights_sha256=sha256_file(request.weights))
    return model.eval(), recipe, source


def _input_shape(model: Any, recipe: Any) -> tuple[int, int, int]:
    return (int(model.conv1.in_channels), int(recipe.input_size[0]), int(recipe.input_size[1]))


def _calibration_dataset(request: BuildRequest, recipe: Any) -> Any:
    """The calibration set: ``calib_size`` samples, or all of them up to DEFAULT_CALIB_SIZE when None."""
    from edgeres.data import load_dataset

    if request.calib_data is None:
        if request.arch is not None or request.weights is not None:
            raise BuildError(
                "INT8 for your own model needs --calib-data (an image folder, .npy or .npz of its inputs); "
                "received none (the shipped calibration data belongs to the reference model)"
            )
        source, recipe = "reference:calib", None
    else:
        source = request.calib_data
    if request.calib_size is not None:
        return load_dataset(source, recipe, size=request.calib_size, seed=request.seed)
    dataset = load_dataset(source, recipe, seed=request.seed)
    if len(dataset) > DEFAULT_CALIB_SIZE:
        dataset = load_dataset(source, recipe, size=DEFAULT_CALIB_SIZE, seed=request.seed)
    return dataset


def _reference_eval_dataset(request: BuildRequest) -> Any:
    """The reference model's labelled test split (for INT8 accuracy), or None for other models."""
    if request.arch is not None or request.weights is not None or request.calib_data is not None:
        return None
    from edgeres.data import load_dataset

    return load_dataset("reference:test", None)


def _calibration_summary(report: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """INT8-vs-FP32 figures of a calibration report (``report["model"]``: compare_logits output)."""
    if not report or not isinstance(report.get("model"), Mapping):
        return None
    model = report["model"]
    summary: dict[str, Any] = {"method": report.get("method"), "evaluated_on": report.get("evaluated_on")}
    for key in ("samples", "top1_agreement", "accuracy_ref", "accuracy", "sqnr_db", "cosine", "max_abs"):
        if model.get(key) is not None:
            summary[key] = model[key]
    if summary.get("accuracy") is not None and summary.get("accuracy_ref") is not None:
        summary["accuracy_drop"] = summary["accuracy_ref"] - summary["accuracy"]
    summary["excluded_layers"] = len(report.get("excluded_layers") or [])
    return summary


def _cache_version(plan: "Plan") -> str:
    """The TensorRT version for the calibration cache header: the build's, else the newest <= 10.x."""
    def usable(v: str) -> bool:
        return (8, 5) <= parse_version(v) < (11, 0)

    if usable(plan.trt_version):
        return plan.trt_version
    candidates = sorted((v for v in plan.target.tensorrt_versions if usable(v)), key=parse_version)
    return candidates[-1] if candidates else "10.3.0"


def _strip_timing(report_path: Path) -> None:
    """Drop wall times from calib_report.json so identical builds give identical bundles."""
    import json

    data = json.loads(report_path.read_text(encoding="utf-8"))
    data.pop("timing", None)
    report_path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def build(request: BuildRequest, *, report: Callable[[str], None] | None = None) -> BuildResult:
    """Run a build: engine where possible, else a deploy bundle (see the module docstring).

    Raises:
        EdgeresError subclasses: bad options (before any work), or a failing stage;
        ``request.output`` is untouched on failure.
    """
    import edgeres
    from edgeres._io import atomic_dir, check_writable_parent

    timer = _Timer(report)
    out = Path(request.output)
    check_writable_parent((out.parent if str(out.parent) else Path(".")) / ".probe")
    if out.exists() and not out.is_dir():
        raise BuildError(f"output {out} is a file; pass a folder path with -o")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        # the folder is replaced as a whole: never replace one that is not an earlier build
        raise BuildError(f"output {out} exists and is not an edgeres build folder (no manifest.json); pass a new -o folder")
    # every option is checked against the target before the model is loaded (the shape comes later)
    plan_build(request, input_shape=(1, 1, 1))
    if request.arch is None and request.weights is None:
        _reference_module()
    with timer.stage("fold"):
        import torch

        from edgeres.fold import fold_batchnorm

        model, recipe, source = _model_and_recipe(request)
        if request.arch is not None and request.weights is None:
            timer.report(f"  note: {request.arch} has random weights (no --weights); fine for a dry run, not for deployment")
        shape = _input_shape(model, recipe)
        plan = plan_build(request, input_shape=shape)
        gen = torch.Generator().manual_seed(request.seed)
        folded = fold_batchnorm(model, torch.randn(2, *shape, generator=gen))
    calibration = None
    with atomic_dir(out) as tmp:
        with timer.stage("export"):
            from edgeres.export import export_onnx

            export_onnx(folded, tmp / "model.onnx", (1, *shape), dynamic_batch=True)
        if plan.precision == "int8":
            with timer.stage("calibrate"):
                from edgeres.calibrate import calibrate

                dataset = _calibration_dataset(request, recipe)
                eval_dataset = _reference_eval_dataset(request)
                result = calibrate(tmp / "model.onnx", dataset, tmp, method=request.calib_method,
                                   trt_version=_cache_version(plan), eval_dataset=eval_dataset, progress=False)
                calibration = _calibration_summary(result.report)
                _strip_timing(Path(result.report_path))
        if plan.needs_fp16_onnx:
            with timer.stage("fp16 onnx"):
                from edgeres.precision import write_fp16_onnx

                if plan.precision == "fp16":
                    write_fp16_onnx(tmp / "model.onnx", tmp / "model.fp16.onnx")
                else:
                    write_fp16_onnx(tmp / "model.qdq.onnx", tmp / "model.qdq.fp16.onnx", qdq=True)
        fields = _manifest_fields(plan, recipe, source, edgeres.__version__, calibration)
        with timer.stage("compile" if plan.engine_here else "bundle"):
            from edgeres.bundle import file_entries, finish_bundle

            sha = {k: v["sha256"] for k, v in file_entries(tmp, [p.name for p in tmp.iterdir() if p.is_file()]).items()}
            script = build_script(plan.spec, plan.trt_version, target=plan.target.name,
                                  edgeres_version=edgeres.__version__, sha256=sha)
            manifest = finish_bundle(tmp, fields, script)
            if plan.engine_here:
                if request.frontend == "torch-tensorrt":
                    compile_torch_tensorrt(folded, plan, tmp, recipe)
                else:
                    compile_folder(tmp, manifest, allow_mismatch=request.allow_mismatch)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
    return BuildResult(
        kind="engine" if plan.engine_here else "bundle", output=out, target=plan.target, precision=plan.precision,
        trt_version=plan.trt_version, reason=None if plan.engine_here else plan.reason, files=files,
        stages=tuple(timer.stages), calibration=calibration, manifest=manifest,
    )


def _manifest_fields(plan: Plan, recipe: Any, source: Mapping[str, Any], version: str,
                     calibration: Mapping[str, Any] | None) -> dict[str, Any]:
    from edgeres.export import INPUT_NAME, OUTPUT_NAME

    s = plan.spec
    meant_for = []
    for v in plan.target.tensorrt_versions:
        try:
            from edgeres.trtexec import check_spec

            check_spec(s, v)
            onnx_file_for(s.precision, s.int8_mode, v)
        except BuildError:
            continue
        if strongly_typed(parse_version(v)) and not plan.needs_fp16_onnx and s.precision != "fp32":
            continue
        meant_for.append(v)
    if plan.trt_version not in meant_for:
        meant_for.append(plan.trt_version)
    return dict(
        target=plan.target.name, compute_capability=plan.target.compute_capability, precision=plan.precision,
        int8_mode=plan.int8_mode, input_name=INPUT_NAME, output_name=OUTPUT_NAME, input_shape=plan.input_shape,
        min_batch=s.min_batch, opt_batch=s.opt_batch, max_batch=s.max_batch, workspace_mib=s.workspace_mib,
        dla_core=s.dla_core, gpu_fallback=s.gpu_fallback, tensorrt_version=plan.trt_version,
        tensorrt_versions=tuple(meant_for), recipe=recipe.to_dict() if recipe is not None else None,
        source=dict(source), edgeres_version=version, calibration=dict(calibration) if calibration else None,
    )


# ---- compile ------------------------------------------------------------------------------------

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
    if tuple(local) != expected and not allow_mismatch:
        raise BuildError(
            f"this GPU is sm_{local[0]}.{local[1]} but the bundle is for {manifest.target} (sm_{expected[0]}.{expected[1]}); "
            "an engine only runs on the GPU it was built for: compile on the target device, or pass --allow-mismatch"
        )
    mode = manifest.int8_mode if manifest.precision == "int8" else None
    onnx_name = onnx_file_for(manifest.precision, mode, version)
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

    timer = _Timer(report)
    start = time.perf_counter()
    # every check runs before any progress output, so a refusal is one line
    manifest = verify_bundle(bundle)
    # -- preflight (edgeres.doctor): refuse what would fail anyway, before TensorRT is required --
    from edgeres.doctor import check_preflight, collect_facts

    check_preflight(manifest, collect_facts(disk_path=bundle), allow_mismatch=allow_mismatch, bundle=str(bundle))
    # -- end preflight --
    settings = settings_for_bundle(Path(bundle), manifest, allow_mismatch=allow_mismatch, workspace_mib=workspace_mib)
    timer.report(f"- verified {len(manifest.files)} files in {time.perf_counter() - start:.2f} s")
    with timer.stage("compile"):
        from edgeres.trt import build_engine

        sidecar = build_engine(settings)
    return sidecar


def compile_torch_tensorrt(model: Any, plan: Plan, folder: Path, recipe: Any) -> Any:
    """Torch-TensorRT (dynamo) FP32/FP16 engine -> ``folder/model.plan`` + sidecar.

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

    import edgeres
    from edgeres._io import atomic_path, sha256_file
    from edgeres.sidecar import PlanSidecar, TensorSpec, write_sidecar
    from edgeres.trt import local_compute_capability, require_tensorrt

    s = plan.spec
    dtype = torch.half if plan.precision == "fp16" else torch.float
    example = torch.zeros(max(2, s.opt_batch), *plan.input_shape).cuda()
    batch_dim = torch.export.Dim("batch", min=max(2, s.min_batch), max=max(2, s.max_batch))
    exported = torch.export.export(model.cuda().eval(), (example,), dynamic_shapes=({0: batch_dim},))
    inputs = [torch_tensorrt.Input(min_shape=(s.min_batch, *plan.input_shape), opt_shape=(s.opt_batch, *plan.input_shape),
                                   max_shape=(s.max_batch, *plan.input_shape), dtype=torch.float)]
    engine = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine(
        exported, inputs=inputs, enabled_precisions={dtype}, workspace_size=s.workspace_mib << 20,
    )
    plan_path = folder / "model.plan"
    with atomic_path(plan_path) as tmp:
        tmp.write_bytes(bytes(engine))
    cc = local_compute_capability() or plan.target.compute_capability
    sidecar = PlanSidecar(
        tensorrt_version=str(require_tensorrt().__version__), compute_capability=tuple(cc),
        device_name=torch.cuda.get_device_name(0), precision=plan.precision,
        inputs=(TensorSpec("input", (-1, *plan.input_shape), "float32"),),
        outputs=(TensorSpec("logits", (-1, recipe.num_classes), "float32"),),
        min_batch=s.min_batch, opt_batch=s.opt_batch, max_batch=s.max_batch, plan_sha256=sha256_file(plan_path),
        onnx_sha256=sha256_file(folder / "model.onnx"), edgeres_version=edgeres.__version__, dla_core=None,
        target=plan.target.name, recipe=recipe.to_dict(), extra={"frontend": "torch-tensorrt"},
    )
    write_sidecar(plan_path, sidecar)
    return sidecar
