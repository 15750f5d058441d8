"""TensorRT rules per version, as data: one entry per rule with its version range, its fix and its source.

Every rule edgeres follows when it writes a bundle for a TensorRT version, or
builds one on the device, is a :class:`TrtRule` in :data:`RULES`. A rule with a
check (:data:`CHECKS`) is tested by ``edgeres build`` (``resolve_build``, through
:func:`edgeres.trtexec.check_spec`) and by ``edgeres compile``
(:func:`edgeres.device_build.settings_for_bundle`) before any work; a violated
rule is one line, ``rule <id>: <what> ; <fix>`` (:meth:`Violation.line`), raised
as the caller's error type (errors) or reported (warnings). Rules without a
check are implemented by a table elsewhere and listed here so the whole set can
be read in one place (``edgeres targets --rules``, ``docs/targets.md``):
the Q/DQ weight form (:data:`edgeres.calibrate.qdq.WEIGHT_FORM_RULES`, read
from there, the one place), the trtexec flag table
(:data:`edgeres.trtexec.TRTEXEC_FLAGS`) and the DLA layer table
(:data:`edgeres.dla_lint.DLA_LAYERS`).

Version ranges are half-open ``[since, until)`` over ``(major, minor)``.
Pure module: the standard library, :mod:`edgeres.errors` and
:mod:`edgeres.tensorrt_version` (the weight-form rules are read lazily).

Not verified here (no TensorRT on the machine this was written on): that each
TensorRT version behaves as the cited page says; the rules follow the sources.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from edgeres.errors import BuildError, EdgeresError
from edgeres.tensorrt_version import VersionLike, parse_version

Version = tuple[int, int]
SEVERITIES = ("error", "warning", "info")

# versions with TensorRT DLA support (half-open ranges); edgeres.trtexec.DLA_SUPPORT is this table
DLA_SUPPORT: tuple[tuple[Version, Version | None], ...] = (((8, 0), (10, 8)), ((11, 4), None))
# the newest ONNX opset each parser documents, where it is below what edgeres exports by default (17)
MAX_OPSET: tuple[tuple[Version, Version | None, int], ...] = (((8, 0), (8, 5), 13),)
# GPUs where TensorRT has no fast INT8 path (no DP4A / INT8 tensor cores): compute capability -> device
NO_FAST_INT8: Mapping[Version, str] = {(5, 3): "Jetson Nano (Maxwell)", (6, 2): "Jetson TX2 (Pascal GP10B)"}


@dataclasses.dataclass(frozen=True)
class TrtRule:
    """One documented TensorRT rule: what it says, where it applies, what edgeres does, where it is written."""

    id: str
    since: Version | None
    until: Version | None
    severity: str
    rule: str
    fix: str
    source: str

    def covers(self, version: VersionLike) -> bool:
        v = parse_version(version)
        return (self.since is None or v >= self.since) and (self.until is None or v < self.until)

    def versions(self) -> str:
        lo = "any" if self.since is None else f"{self.since[0]}.{self.since[1]}"
        if self.until is None:
            return "all" if self.since is None else f"{lo}+"
        return f"{lo} .. <{self.until[0]}.{self.until[1]}" if self.since else f"<{self.until[0]}.{self.until[1]}"


@dataclasses.dataclass(frozen=True)
class RuleContext:
    """What a rule is checked against: one build (or compile) for one TensorRT version.

    ``stage`` is ``"build"`` (host: the bundle is written for ``trt_version``) or
    ``"compile"`` (edgeres itself builds the engine with ``trt_version`` here).
    """

    trt_version: str
    precision: str
    int8_mode: str | None = None
    dla_core: int | None = None
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    compute_capability: Version | None = None
    opset: int | None = None
    stage: str = "build"


@dataclasses.dataclass(frozen=True)
class Violation:
    """A rule a context breaks, with the detail of how."""

    rule: TrtRule
    detail: str

    @property
    def severity(self) -> str:
        return self.rule.severity

    def line(self) -> str:
        return f"rule {self.rule.id}: {self.detail}; {self.rule.fix}"


def _range(lo: Version, hi: Version | None) -> str:
    return f"{lo[0]}.{lo[1]}" + (f"-{hi[0]}.{hi[1] - 1 if hi[1] else 'x'}" if hi else "+")


RULES: tuple[TrtRule, ...] = (
    TrtRule(
        "int8-fast-path", None, None, "error",
        "INT8 needs DP4A or INT8 tensor cores: Jetson Nano (sm_53) and TX2 (sm_62) have neither, TensorRT reports "
        "platformHasFastInt8 false there",
        "use --precision fp16 on sm_53/sm_62",
        "targets/jetson-nano.toml, targets/jetson-tx2.toml provenance.precisions (Maxwell lacks DP4A, sm_61+; "
        "TensorRT builder.platform_has_fast_int8 is false on TX2)",
    ),
    TrtRule(
        "trtexec-min", None, (8, 2), "error",
        "build.sh is generated from trtexec's option table, read from NVIDIA/TensorRT samples/common/sampleOptions.cpp "
        "release/8.2 on",
        "use TensorRT 8.2 or newer (JetPack 4.6.1+)",
        "edgeres.tensorrt_version.SUPPORTED['trtexec']; tests/data/trtexec_documented_flags.json",
    ),
    TrtRule(
        "edgeres-needs-8.5", None, (8, 5), "error",
        "edgeres compile and the edgeres runtime use the name-based tensor API (get_tensor_name, set_tensor_address, "
        "execute_async_v3) new in TensorRT 8.5, and edgeres needs Python >= 3.10; JetPack 4.6.x (Nano, TX2, Xavier on "
        "JetPack 4) ships TensorRT 8.2.1 and Python 3.6",
        "on TensorRT 8.2 build the engine with the bundle's build.sh (trtexec, no Python) and run it with trtexec or "
        "your own TensorRT 8.2 code",
        "edgeres.tensorrt_version.SUPPORTED['adapter']; pyproject requires-python >= 3.10; JetPack 4.6.x component "
        "table (edgeres.doctor.rules.RELEASES)",
    ),
    TrtRule(
        "onnx-opset-8.2", (8, 0), (8, 5), "error",
        "the TensorRT 8.2 ONNX parser documents operators up to opset 13",
        "bundles for targets that list TensorRT 8.2 are exported at opset 13 (all ResNet ops and per-channel Q/DQ exist "
        "at 13); re-export at opset <= 13",
        "onnx/onnx-tensorrt release/8.2 docs/operators.md: 'TensorRT 8.2 supports operators up to Opset 13' "
        "(8.4 not checked here; treated the same)",
    ),
    TrtRule(
        "qdq-weights-8.2", (8, 0), (8, 5), "info",
        "TensorRT 8.0-8.4 (build.sh only) read Q/DQ weights as 8.5/8.6 do: FP32 weights with QuantizeLinear -> "
        "DequantizeLinear (model.qdq.trt8.onnx); 8.4.1 refuses INT8 weight constants",
        "build.sh builds INT8 Q/DQ there from model.qdq.trt8.onnx (edgeres.trtexec.onnx_file_for)",
        "TensorRT 8.x developer guide 'Explicit Quantization' (Q/DQ since 8.0: FP32 weights); NVIDIA/TensorRT#2163 "
        "('invalid weights type of Int8' on 8.4.1)",
    ),
    TrtRule(
        "calibration-cache", None, (8, 5), "error",
        "implicit INT8 calibration reads a calibration cache; edgeres writes caches for TensorRT 8.5 to 10.x only "
        "(TensorRT 11 removed implicit calibration: rule strongly-typed-11)",
        "use --int8-mode qdq, or a TensorRT from 8.5 to 10.x for --int8-mode calibrator",
        "TensorRT Support Policies (11.0 removed IInt8Calibrator); edgeres.tensorrt_version.SUPPORTED['calibration_cache']",
    ),
    TrtRule(
        "trtexec-flags", (8, 2), None, "info",
        "trtexec flags differ per version: --workspace until 9.x, --memPoolSize from 8.4, --buildOnly until 9.x, "
        "--skipInference from 8.6, --fp16/--int8/--calib until 10.x, --explicitBatch never emitted",
        "build.sh uses the flags of the detected version (edgeres.trtexec.TRTEXEC_FLAGS)",
        "NVIDIA/TensorRT samples/common/sampleOptions.cpp on each release/<version> branch",
    ),
    TrtRule(
        "dla-available", None, None, "error",
        "DLA exists in TensorRT " + ", ".join(_range(lo, hi) for lo, hi in DLA_SUPPORT)
        + " (10.7 was the last 10.x with DLA; 11.0-11.3 have none; 11.4.1 brings it back on AGX Orin with JetPack 7.2.2)",
        "drop --dla-core or use a TensorRT with DLA",
        "TensorRT 10.8 release notes (DLA removed); TensorRT 11.4.1 'Working with DLA' "
        "(https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/inference-library/work-with-dla.html)",
    ),
    TrtRule(
        "dla-precision", None, None, "error",
        "DLA runs FP16 or INT8 only",
        "pass --precision fp16 or int8 with --dla-core",
        "TensorRT developer guide, 'Working with DLA': 'DLA support is currently limited to networks running in FP16 "
        "and INT8 mode'",
    ),
    TrtRule(
        "dla-static-shapes", None, None, "error",
        "DLA does not support dynamic dimensions: the optimization profile's min, opt and max must be equal",
        "with --dla-core pass --batch N alone (min = opt = max = N), or --batch N --max-batch N",
        "TensorRT 'DLA Supported Layers and Restrictions', General Restrictions "
        "(https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/dla-layer-restrictions.html)",
    ),
    TrtRule(
        "dla-implicit-int8", (8, 0), (11, 0), "error",
        "before TensorRT 11, DLA does not run explicitly quantized (Q/DQ) networks: INT8 on DLA is implicit "
        "calibration, model.onnx with a calibration cache (--int8 --calib=calib.cache --useDLACore=N "
        "--allowGPUFallback)",
        "drop --int8-mode qdq with --dla-core: edgeres builds DLA INT8 from model.onnx + calib.cache",
        "NVIDIA/TensorRT#2222 (NVIDIA: 'DLA doesn't support QAT yet'; 'if you convert it to implicit quantization, it "
        "would work with DLA'); NVIDIA/Model-Optimizer PR #1661 ('DLA still only supports IQ', workflow: Q/DQ model -> "
        "qdq-translator -> calib.cache + the non-quantized model)",
    ),
    TrtRule(
        "dla-qdq-placement-11", (11, 0), None, "info",
        "TensorRT 11 removed implicit calibration, so INT8 on DLA builds from a Q/DQ model with ModelOpt's DLA "
        "placement (quantize(..., target_dla=True)): Q/DQ on every activation input of every node (graph input, both "
        "Add inputs, pooling inputs and outputs, Flatten output, the classifier Gemm), none on tensors read only by "
        "ReLU, so the whole DLA region has INT8 scales",
        "with --dla-core, 11.x builds model.qdq.dla.fp16.onnx (model.qdq.dla.onnx typed FP16; scales of calib.cache); "
        "manifest onnx_for, build.sh and edgeres compile pick it (edgeres.trtexec.onnx_file_for); not verified on a DLA",
        "NVIDIA/Model-Optimizer PR #1661 'Add support for ONNX Q/DQ node placement for DLA' (--target_dla; "
        "modelopt/onnx/quantization/int8.py quantize: every op type quantized, GEMV and small-Conv exclusions skipped; "
        "'On DLA, the whole DLA-eligible region is compiled as one node ... it expects scales to be present "
        "throughout'); onnxruntime quantization/operators/activation.py QDQRemovableActivation (ReLU input); "
        "edgeres.calibrate.qdq.DLA_PLACEMENT_RULE, benchmarks/results/modelopt_dla_placement.txt",
    ),
    TrtRule(
        "strongly-typed-11", (11, 0), None, "error",
        "TensorRT 11 networks are strongly typed: --fp16/--int8/--best/--calib are gone, precision comes from the ONNX "
        "(model.fp16.onnx, model.qdq.fp16.onnx), and implicit INT8 calibration was removed",
        "use --int8-mode qdq for INT8 with TensorRT 11",
        "NVIDIA/TensorRT release/11.x samples/common/sampleOptions.cpp (flags removed); TensorRT 11.0 release notes",
    ),
    TrtRule(
        "dla-layers", (8, 0), None, "warning",
        "DLA runs only the layers in NVIDIA's DLA layer table, within its limits; the rest falls back to the GPU "
        "(with --allowGPUFallback) and splits the network into several DLA loadables",
        "see the build's DLA fallback list (manifest dla_fallback); change the model or accept the GPU layers",
        "TensorRT 'DLA Supported Layers and Restrictions' (edgeres.dla_lint.DLA_LAYERS lists the rows used)",
    ),
)
RULES_BY_ID: Mapping[str, TrtRule] = {r.id: r for r in RULES}


def weight_form_rules() -> tuple[TrtRule, ...]:
    """The Q/DQ weight-form rules, read from :data:`edgeres.calibrate.qdq.WEIGHT_FORM_RULES` (the one place)."""
    from edgeres.calibrate.qdq import WEIGHT_FORM_RULES

    return tuple(
        TrtRule(f"qdq-weights-{w.form}", w.trt_min, w.trt_max, "info", f"{w.graph} ({w.file_name})",
                f"the bundle carries {w.file_name} for these versions; manifest onnx_for says which file serves which",
                w.source)
        for w in WEIGHT_FORM_RULES
    )


def all_rules() -> tuple[TrtRule, ...]:
    """Every rule, the weight-form ones included, in listing order."""
    return RULES[:4] + weight_form_rules() + RULES[4:]


# ---- checks: (rule, context) -> the detail of a violation, or None --------------------------------

def _dla(ctx: RuleContext) -> bool:
    return ctx.dla_core is not None


def _dla_supported(version: VersionLike) -> bool:
    v = parse_version(version)
    return any(v >= lo and (hi is None or v < hi) for lo, hi in DLA_SUPPORT)


def max_opset(version: VersionLike) -> int | None:
    """The newest ONNX opset the parser of ``version`` documents, where edgeres knows a limit."""
    v = parse_version(version)
    return next((n for lo, hi, n in MAX_OPSET if v >= lo and (hi is None or v < hi)), None)


def _check_int8_fast(ctx: RuleContext) -> str | None:
    device = NO_FAST_INT8.get(tuple(ctx.compute_capability)) if ctx.compute_capability else None  # type: ignore[arg-type]
    if ctx.precision == "int8" and device:
        return f"INT8 requested for {device}, sm_{ctx.compute_capability[0]}.{ctx.compute_capability[1]}"  # type: ignore[index]
    return None


def _check_edgeres_min(ctx: RuleContext) -> str | None:
    return f"edgeres cannot build or run engines with TensorRT {ctx.trt_version}" if ctx.stage == "compile" else None


def _check_opset(ctx: RuleContext) -> str | None:
    limit = max_opset(ctx.trt_version)
    if ctx.opset is not None and limit is not None and ctx.opset > limit:
        return f"the ONNX is opset {ctx.opset}, TensorRT {ctx.trt_version}'s parser documents up to {limit}"
    return None


def _check_calibration(ctx: RuleContext) -> str | None:
    if ctx.precision == "int8" and ctx.int8_mode == "calibrator":
        return f"--int8-mode calibrator for TensorRT {ctx.trt_version}"
    return None


def _check_strongly_typed(ctx: RuleContext) -> str | None:
    if ctx.precision == "int8" and ctx.int8_mode == "calibrator":
        return f"TensorRT {ctx.trt_version} removed implicit INT8 calibration (int8 mode 'calibrator')"
    return None


def _check_dla_available(ctx: RuleContext) -> str | None:
    if _dla(ctx) and not _dla_supported(ctx.trt_version):
        return f"TensorRT {ctx.trt_version} has no DLA support"
    return None


def _check_dla_precision(ctx: RuleContext) -> str | None:
    return f"precision {ctx.precision} with --dla-core (DLA runs FP16 or INT8 only)" if _dla(ctx) and ctx.precision == "fp32" else None


def _check_dla_static(ctx: RuleContext) -> str | None:
    if _dla(ctx) and not ctx.min_batch == ctx.opt_batch == ctx.max_batch:
        return f"DLA profile min/opt/max batch {ctx.min_batch}/{ctx.opt_batch}/{ctx.max_batch}"
    return None


def _check_dla_implicit(ctx: RuleContext) -> str | None:
    if _dla(ctx) and ctx.precision == "int8" and ctx.int8_mode == "qdq":
        return f"--int8-mode qdq with --dla-core on TensorRT {ctx.trt_version}"
    return None


CHECKS: Mapping[str, Callable[[RuleContext], str | None]] = {
    "int8-fast-path": _check_int8_fast,
    "edgeres-needs-8.5": _check_edgeres_min,
    "onnx-opset-8.2": _check_opset,
    "calibration-cache": _check_calibration,
    "strongly-typed-11": _check_strongly_typed,
    "dla-available": _check_dla_available,
    "dla-precision": _check_dla_precision,
    "dla-static-shapes": _check_dla_static,
    "dla-implicit-int8": _check_dla_implicit,
}


def dla_int8_mode(version: VersionLike) -> str:
    """How TensorRT ``version`` runs INT8 on DLA: ``"calibrator"`` (implicit, rule dla-implicit-int8) or ``"qdq"``.

    Before 11, DLA runs implicit calibration only; from 11 (no implicit calibration), the Q/DQ model with the DLA
    placement (rule dla-qdq-placement-11).
    """
    return "calibrator" if RULES_BY_ID["dla-implicit-int8"].covers(version) else "qdq"


def violations(ctx: RuleContext) -> list[Violation]:
    """Every rule with a check that ``ctx`` breaks, errors first, in table order."""
    found = []
    for rule in RULES:
        check = CHECKS.get(rule.id)
        if check is None or not rule.covers(ctx.trt_version):
            continue
        detail = check(ctx)
        if detail is not None:
            found.append(Violation(rule, detail))
    return sorted(found, key=lambda v: SEVERITIES.index(v.severity))


def check_rules(ctx: RuleContext, *, error: type[EdgeresError] = BuildError) -> list[Violation]:
    """Raise ``error`` with the first violated error rule's one line; return the warnings.

    Raises:
        ``error`` (BuildError by default): ``rule <id>: <what>; <fix>``.
    """
    found = violations(ctx)
    errors = [v for v in found if v.severity == "error"]
    if errors:
        raise error(errors[0].line())
    return [v for v in found if v.severity == "warning"]


def rules_table() -> list[dict[str, Any]]:
    """Every rule as a row (id, versions, severity, rule, fix, source, checked) for listings."""
    return [dict(id=r.id, versions=r.versions(), severity=r.severity, rule=r.rule, fix=r.fix, source=r.source,
                 checked=r.id in CHECKS) for r in all_rules()]
