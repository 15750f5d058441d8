"""``edgeres build``: a PyTorch ResNet to an engine or a deploy bundle (the host side).

Stages: (resolve the build once, checking every option) -> fold -> export (both
through :mod:`edgeres.pipeline`) -> (calibrate) -> (FP16 ONNX for strongly typed
TensorRT) -> bundle -> (compile), each timed. Everything is written into a
temporary folder renamed onto ``output`` at the end, so a failure leaves nothing.

An engine is built only where TensorRT imports and the local GPU has the
target's compute capability; otherwise the folder is a deploy bundle that
``edgeres compile BUNDLE`` finishes on the device. The on-device half (bundle ->
engine) lives in :mod:`edgeres.device_build`. Either way the folder has
``manifest.json`` and ``build.sh``.

Reproducibility: the same model, weights, data and options give byte-identical
ONNX, Q/DQ, calibration cache and manifest (no timestamps, deterministic
serialization); engines are not (TensorRT's tactic timing is not).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from edgeres import device_build, pipeline
from edgeres._timing import StageTime, StageTimer
from edgeres.calibrate.calibrators import DEFAULT_METHOD
from edgeres.errors import BuildError
from edgeres.targets import Target, load_target
from edgeres.tensorrt_version import DEFAULT_TENSORRT, SUPPORTED, parse_version
from edgeres.calibrate.qdq import DLA_QDQ_NAME
from edgeres.trt_rules import dla_int8_mode, max_opset
from edgeres.trtexec import FP16_SOURCES, ONNX_FOR_DLA, TrtexecSpec, build_script_for_versions, check_spec, onnx_file_for
from edgeres.trtexec import strongly_typed

FRONTENDS = ("onnx", "torch-tensorrt")
DEFAULT_CALIB_SIZE = 512
DEFAULT_ARCH_WITH_WEIGHTS = "resnet50"  # --weights without --arch


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
    force: bool = False  # replace an existing -o folder that is not an earlier build (never one holding an input)



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
        """``edgeres compile OUT``, or ``sh OUT/build.sh`` where every listed TensorRT is older than edgeres supports."""
        versions = getattr(self.manifest, "tensorrt_versions", None) or (self.trt_version,)
        if all(not SUPPORTED["adapter"].contains(v) for v in versions):
            return (f"sh {self.output}/build.sh   (TensorRT {', '.join(versions)}: edgeres itself needs TensorRT >= 8.5 "
                    "and Python >= 3.10, rule edgeres-needs-8.5)")
        return f"edgeres compile {self.output}"



@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """A request resolved against its target once, before any work ("plan" alone means an engine file).

    The sample shape is not part of it: it comes from the model (:meth:`spec`),
    and none of the checks depends on it.
    """

    request: BuildRequest
    target: Target
    precision: str
    int8_mode: str | None
    trt_version: str
    opt_batch: int
    max_batch: int
    workspace_mib: int
    engine_here: bool
    reason: str | None
    needs_fp16_onnx: bool
    bundle_versions: tuple[str, ...] = ()  # the TensorRT versions the bundle serves (build.sh, manifest onnx_for)
    left_out: tuple[str, ...] = ()  # "TensorRT v: rule ..." for the target's versions the bundle cannot serve
    opset: int | None = None  # ONNX opset to export (None: the default, 17); 13 where a listed parser needs it
    notes: tuple[str, ...] = ()  # adjustments resolve_build made, each one line

    @property
    def min_batch(self) -> int:
        """1, or the batch itself on DLA (static shapes: min = opt = max, rule dla-static-shapes)."""
        return self.opt_batch if self.request.dla_core is not None else 1

    @property
    def own_model(self) -> bool:
        """True for --arch/--weights builds, False for the shipped reference model."""
        return self.request.arch is not None or self.request.weights is not None

    @property
    def arch(self) -> str | None:
        """The architecture the front end builds (None: the reference model)."""
        if not self.own_model:
            return None
        return self.request.arch or DEFAULT_ARCH_WITH_WEIGHTS

    def spec(self, input_shape: tuple[int, int, int]) -> TrtexecSpec:
        """The engine's trtexec spec for samples of ``input_shape`` (C, H, W)."""
        return TrtexecSpec(
            precision=self.precision, int8_mode=self.int8_mode, input_shape=input_shape, min_batch=self.min_batch,
            opt_batch=self.opt_batch, max_batch=self.max_batch, workspace_mib=self.workspace_mib,
            dla_core=self.request.dla_core, gpu_fallback=True,
        )

    def spec_for(self, version: str, input_shape: tuple[int, int, int] = (0, 0, 0)) -> TrtexecSpec:
        """The spec TensorRT ``version`` builds: INT8 on DLA without --int8-mode takes that version's DLA mode
        (:func:`edgeres.trt_rules.dla_int8_mode`: implicit before 11, the DLA Q/DQ model from 11)."""
        s = self.spec(input_shape)
        if self.request.dla_core is not None and self.precision == "int8" and self.request.int8_mode is None:
            return dataclasses.replace(s, int8_mode=dla_int8_mode(version))
        return s

    def onnx_files(self) -> dict[str, str]:
        """TensorRT version -> the bundle ONNX it builds from, for every served version (manifest ``onnx_for``)."""
        specs = {v: self.spec_for(v) for v in self.bundle_versions}
        return {v: onnx_file_for(s.precision, s.int8_mode, v, dla=s.dla_core is not None) for v, s in specs.items()}


# ---- resolve ------------------------------------------------------------------------------------

def resolve_build(request: BuildRequest) -> BuildPlan:
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
    notes: list[str] = []
    own_model = r.arch is not None or r.weights is not None
    if precision == "int8" and own_model and r.calib_data is None:
        raise BuildError(
            f"INT8 ({'the default for ' + target.name if r.precision is None else 'requested'}) for your own model "
            "needs --calib-data (an image folder, .npy or .npz of its inputs); received none "
            "(the shipped calibration data belongs to the reference model). Pass --calib-data, or --precision fp16"
        )
    batch = target.default_batch if r.batch is None else r.batch
    if r.dla_core is not None:  # rule dla-static-shapes: min = opt = max; an explicit other --max-batch is refused
        max_batch = batch if r.max_batch is None else r.max_batch
    else:
        max_batch = max(batch, target.default_batch) if r.max_batch is None else r.max_batch
    target.check_batch(batch, max_batch)
    workspace_mib = r.workspace_mib or target.workspace_mib
    if workspace_mib < 1:
        raise BuildError(f"workspace must be at least 1 MiB, received {workspace_mib}")
    engine_here, reason = (False, "a bundle was requested") if r.bundle_only else device_build.engine_possible_here(target, r.allow_mismatch)
    local_trt = device_build.installed_tensorrt_version() if engine_here else None
    trt_version = target.check_tensorrt(r.trt_version) if r.trt_version else (local_trt or target.default_tensorrt)
    if r.dla_core is not None and precision == "int8" and r.int8_mode is None:
        # rules dla-implicit-int8 (before 11: model.onnx + calib.cache) and dla-qdq-placement-11 (the DLA Q/DQ model)
        int8_mode = dla_int8_mode(trt_version)
    needs_fp16 = precision in ("fp16", "int8") and any(
        strongly_typed(parse_version(v)) for v in (*target.tensorrt_versions, trt_version)
    )
    plan = BuildPlan(r, target, precision, int8_mode, trt_version, batch, max_batch, workspace_mib, engine_here,
                     reason, needs_fp16, notes=tuple(notes))
    # precision, batch range, DLA, version, the rule table (edgeres.trt_rules): no shape is checked
    check_spec(plan.spec((0, 0, 0)), trt_version, compute_capability=target.compute_capability)
    served, left_out = _bundle_versions(plan)
    # typed FP16 ONNX only where a served version is strongly typed (a DLA bundle leaves 11.x out)
    needs_fp16 = needs_fp16 and any(strongly_typed(parse_version(v)) for v in served)
    # ONNX opset: the lowest limit of a served version's parser (13 where TensorRT 8.2 is served, rule onnx-opset-8.2)
    served_limits = [n for n in (max_opset(v) for v in served) if n is not None]
    plan = dataclasses.replace(plan, bundle_versions=served, left_out=left_out, needs_fp16_onnx=needs_fp16,
                               opset=min(served_limits) if served_limits else None)
    if r.dla_core is not None and precision == "int8":
        modes = {plan.spec_for(v).int8_mode for v in served}
        if "calibrator" in modes:
            notes.append("DLA INT8 before TensorRT 11 uses implicit calibration: model.onnx + calib.cache "
                         "(rule dla-implicit-int8)")
        if "qdq" in modes:
            notes.append(f"DLA INT8 on TensorRT 11 builds {ONNX_FOR_DLA[(True, 'int8', 'qdq')]}, "
                         "ModelOpt's DLA Q/DQ placement (rule dla-qdq-placement-11; not verified on a DLA)")
        plan = dataclasses.replace(plan, notes=tuple(notes))
    if int8_mode == "calibrator" and not SUPPORTED["calibration_cache"].contains(trt_version):
        raise BuildError(
            f"edgeres writes calibration caches for TensorRT 8.5 to 10.x, received --trt-version {trt_version}; "
            "use --int8-mode qdq"
        )
    if r.frontend == "torch-tensorrt":
        if precision == "int8":
            raise BuildError("the torch-tensorrt frontend builds fp32/fp16 only; use the default ONNX frontend for INT8")
        if not engine_here:
            raise BuildError(f"the torch-tensorrt frontend builds engines only, and none can be built here: {reason}")
    if not own_model:
        pipeline.reference_module()  # a missing reference model is an option error too
    return plan


# ---- stages -------------------------------------------------------------------------------------

def _calibration_dataset(plan: BuildPlan, recipe: Any) -> Any:
    """The calibration set: ``calib_size`` samples, or all of them up to DEFAULT_CALIB_SIZE when None.

    :func:`resolve_build` has checked that a model of one's own comes with --calib-data.
    """
    from edgeres.data import load_dataset

    request = plan.request
    source, recipe = ("reference:calib", None) if request.calib_data is None else (request.calib_data, recipe)
    if request.calib_size is not None:
        return load_dataset(source, recipe, size=request.calib_size, seed=request.seed)
    dataset = load_dataset(source, recipe, seed=request.seed)
    if len(dataset) > DEFAULT_CALIB_SIZE:
        dataset = load_dataset(source, recipe, size=DEFAULT_CALIB_SIZE, seed=request.seed)
    return dataset


def _reference_eval_dataset(plan: BuildPlan) -> Any:
    """The reference model's labelled test split (for INT8 accuracy), or None for other models."""
    if plan.own_model or plan.request.calib_data is not None:
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


def _sources(plan: BuildPlan) -> set[str]:
    """The bundle ONNX files the served versions build from, and the FP32 files their typed copies come from."""
    files = set(plan.onnx_files().values())
    return files | {FP16_SOURCES[n][0] for n in files if n in FP16_SOURCES}


def _cache_version(plan: BuildPlan) -> str:
    """The TensorRT version for the calibration cache header: the build's, else the newest <= 10.x."""
    def usable(v: str) -> bool:
        return SUPPORTED["calibration_cache"].contains(v)

    if usable(plan.trt_version):
        return plan.trt_version
    candidates = sorted((v for v in plan.target.tensorrt_versions if usable(v)), key=parse_version)
    return candidates[-1] if candidates else DEFAULT_TENSORRT


def build(request: BuildRequest, *, report: Callable[[str], None] | None = None) -> BuildResult:
    """Run a build: engine where possible, else a deploy bundle (see the module docstring).

    Raises:
        EdgeresError subclasses: bad options (before any work), or a failing stage;
        ``request.output`` is untouched on failure.
    """
    import edgeres
    from edgeres._io import check_output_folder, output_dir

    timer = StageTimer(report)
    # the folder is replaced as a whole: only an earlier build's (or with --force), never one holding an input
    out = check_output_folder(request.output, "build", inputs=build_inputs(request), force=request.force)
    plan = resolve_build(request)  # every option is checked against the target before the model is loaded
    for line in (*plan.notes, *(f"left out {x}" for x in plan.left_out)):
        timer.report(f"  note: {line}")
    with timer.stage("fold"):
        if request.arch is not None and request.weights is None:
            timer.report(f"  note: {request.arch} has random weights (no --weights); fine for a dry run, not for deployment")
        made = pipeline.front_end(plan.arch, request.weights, seed=request.seed)
        spec = plan.spec(made.input_shape)
    calibration = None
    with output_dir(out, "build", inputs=build_inputs(request), force=request.force) as tmp:
        with timer.stage("export"):
            pipeline.onnx_from_folded(made.folded, tmp / "model.onnx", made.example, opset=plan.opset)
        dla_fallback = None
        if request.dla_core is not None:
            with timer.stage("dla lint"):
                from edgeres.dla_lint import dla_fallback_from_onnx

                found = dla_fallback_from_onnx(tmp / "model.onnx", plan.trt_version,
                                               batch=plan.opt_batch, input_shape=made.input_shape)
                dla_fallback = [f.to_dict() for f in found]
                for f in found:
                    timer.report(f"  DLA -> GPU fallback: {f.line()}")
                if not found:
                    timer.report("  DLA: every layer is in NVIDIA's DLA layer table")
        if plan.precision == "int8":
            with timer.stage("calibrate"):
                from edgeres.calibrate import calibrate

                dataset = _calibration_dataset(plan, made.recipe)
                eval_dataset = _reference_eval_dataset(plan)
                result = calibrate(tmp / "model.onnx", dataset, tmp, method=request.calib_method,
                                   trt_version=_cache_version(plan), eval_dataset=eval_dataset, progress=False,
                                   timing=False,  # wall times would make identical builds differ
                                   dla=DLA_QDQ_NAME in _sources(plan))
                calibration = _calibration_summary(result.report)
        if plan.needs_fp16_onnx:
            with timer.stage("fp16 onnx"):
                from edgeres.precision import write_fp16_onnx

                for typed in dict.fromkeys(n for n in plan.onnx_files().values() if n in FP16_SOURCES):
                    source, qdq = FP16_SOURCES[typed]
                    write_fp16_onnx(tmp / source, tmp / typed, qdq=qdq)
        fields = _manifest_fields(plan, spec, made.recipe, made.source, edgeres.__version__, calibration, dla_fallback)
        with timer.stage("compile" if plan.engine_here else "bundle"):
            from edgeres.bundle import file_entries, finish_bundle

            sha = {k: v["sha256"] for k, v in file_entries(tmp, [p.name for p in tmp.iterdir() if p.is_file()]).items()}
            script = build_script_for_versions({v: plan.spec_for(v, made.input_shape) for v in plan.bundle_versions},
                                               target=plan.target.name,
                                               edgeres_version=edgeres.__version__, sha256=sha)
            manifest = finish_bundle(tmp, fields, script)
            if plan.engine_here:
                if request.frontend == "torch-tensorrt":
                    device_build.compile_torch_tensorrt(made.folded, spec, plan.target, tmp, made.recipe)
                else:
                    device_build.compile_folder(tmp, manifest, allow_mismatch=request.allow_mismatch)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
    return BuildResult(
        kind="engine" if plan.engine_here else "bundle", output=out, target=plan.target, precision=plan.precision,
        trt_version=plan.trt_version, reason=None if plan.engine_here else plan.reason, files=files,
        stages=tuple(timer.stages), calibration=calibration, manifest=manifest,
    )


def build_inputs(request: BuildRequest) -> tuple[str | os.PathLike[str], ...]:
    """The files and folders a build reads (weights, calibration data, targets folder): never inside ``-o``."""
    from edgeres.data import source_path

    data = source_path(request.calib_data) if request.calib_data is not None else None
    return tuple(p for p in (request.weights, data, request.targets_dir) if p is not None)


def _bundle_versions(plan: BuildPlan) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(versions the bundle serves, one line per target version left out and why); the build's own version first."""
    s = plan.spec((0, 0, 0))
    served, left_out = [plan.trt_version], []
    for v in plan.target.tensorrt_versions:
        if v == plan.trt_version:
            continue
        sv = plan.spec_for(v)
        try:
            check_spec(sv, v, compute_capability=plan.target.compute_capability)
        except BuildError as exc:
            left_out.append(f"TensorRT {v}: {exc}")
            continue
        if strongly_typed(parse_version(v)) and not plan.needs_fp16_onnx and s.precision != "fp32":
            continue
        served.append(v)
    order = {v: i for i, v in enumerate(plan.target.tensorrt_versions)}
    return tuple(sorted(served, key=lambda v: (order.get(v, len(order)), parse_version(v)))), tuple(left_out)


def _manifest_fields(plan: BuildPlan, spec: TrtexecSpec, recipe: Any, source: Mapping[str, Any], version: str,
                     calibration: Mapping[str, Any] | None,
                     dla_fallback: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    from edgeres.export import INPUT_NAME, OUTPUT_NAME

    s = spec
    meant_for = list(plan.bundle_versions)
    return dict(
        target=plan.target.name, compute_capability=plan.target.compute_capability, precision=plan.precision,
        int8_mode=plan.int8_mode, input_name=INPUT_NAME, output_name=OUTPUT_NAME, input_shape=s.input_shape,
        min_batch=s.min_batch, opt_batch=s.opt_batch, max_batch=s.max_batch, workspace_mib=s.workspace_mib,
        dla_core=s.dla_core, gpu_fallback=s.gpu_fallback, tensorrt_version=plan.trt_version,
        tensorrt_versions=tuple(meant_for), recipe=recipe.to_dict() if recipe is not None else None,
        source=dict(source), edgeres_version=version, calibration=dict(calibration) if calibration else None,
        onnx_for=plan.onnx_files(),
        dla_fallback=tuple(dla_fallback) if dla_fallback is not None else None,
    )


# ---- moved to edgeres.device_build (the on-device half); old imports keep working ------------------

_MOVED = ("cache_for_version", "compile_bundle", "compile_folder", "compile_torch_tensorrt", "engine_possible_here",
          "installed_tensorrt_version", "settings_for_bundle")


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import warnings

        warnings.warn(f"edgeres.build.{name} moved to edgeres.device_build.{name}", DeprecationWarning, stacklevel=2)
        return getattr(device_build, name)
    raise AttributeError(f"module 'edgeres.build' has no attribute {name!r}")
