"""The ``trtexec`` command line equivalent to an edgeres build, per TensorRT version.

Pure functions: a :class:`TrtexecSpec` and a TensorRT version in, an argv list
or ``build.sh`` text out. Which flags each version parses is a declarative
table, :data:`TRTEXEC_FLAGS`, read off NVIDIA's ``samples/common/sampleOptions.cpp``
on each ``release/<version>`` branch of github.com/NVIDIA/TensorRT (the
extracted option lists are in ``tests/data/trtexec_documented_flags.json``):

* ``--workspace=N`` (MiB) until 9.x; ``--memPoolSize=workspace:N`` (MiB) from 8.4; 10.0 dropped ``--workspace``.
* ``--explicitBatch`` is a deprecated no-op in 8.x and gone in 10.0: never emitted.
* ``--buildOnly`` until 9.x; ``--skipInference`` from 8.6.
* ``--fp16``/``--int8``/``--best``/``--calib`` until 10.x; 11.0 removed them (networks are
  strongly typed: precision comes from the ONNX, ``--stronglyTyped`` is a no-op there).
* DLA: TensorRT 10.7 was the last 10.x with DLA; 11.0-11.3 have none; 11.4 brings it back on
  AGX Orin with JetPack 7.2.2 (TensorRT 11.4.1 "Working with DLA" guide). The ranges and every other
  per-version rule (DLA static shapes, implicit INT8 on DLA, ...) are data in :mod:`edgeres.trt_rules`,
  which :func:`check_spec` applies.
* Which ONNX each version builds from: :func:`onnx_file_for` (the Q/DQ weight form per version from
  ``edgeres.calibrate.qdq.weight_form_for``: 8.x ``model.qdq.trt8.onnx``, 10.x ``model.qdq.onnx``;
  INT8 on DLA with 11.x: ``model.qdq.dla.fp16.onnx``, :data:`ONNX_FOR_DLA`).
* ``build.sh``: :func:`build_script_for_versions` (every version of a bundle, picked by the installed
  TensorRT) or :func:`build_script` (one version).

Nothing here runs trtexec; the command lines are checked against the parsed-option
lists, not executed (no TensorRT on the machine that wrote this).
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any, Sequence

from edgeres._io import OUTPUT_MARKER
from edgeres._names import check_name
from edgeres._readers import is_int
from edgeres.errors import BuildError
from edgeres.tensorrt_version import MIN_TRTEXEC, SUPPORTED, TensorRTVersion, parse_version, strongly_typed
from edgeres.trt_rules import DLA_SUPPORT, RuleContext, check_rules

Version = tuple[int, int]  # major.minor bounds of the tables below; compared with TensorRTVersion as a prefix

# flag -> (first version that parses it, first version that no longer does / None)
TRTEXEC_FLAGS: dict[str, tuple[Version, Version | None]] = {
    "--onnx": ((8, 0), None),
    "--saveEngine": ((8, 0), None),
    "--minShapes": ((8, 0), None),
    "--optShapes": ((8, 0), None),
    "--maxShapes": ((8, 0), None),
    "--timingCacheFile": ((8, 0), None),
    "--useDLACore": ((8, 0), None),
    "--allowGPUFallback": ((8, 0), None),
    "--workspace": ((8, 0), (10, 0)),
    "--memPoolSize": ((8, 4), None),
    "--explicitBatch": ((8, 0), (10, 0)),
    "--buildOnly": ((8, 0), (10, 0)),
    "--skipInference": ((8, 6), None),
    "--fp16": ((8, 0), (11, 0)),
    "--int8": ((8, 0), (11, 0)),
    "--best": ((8, 0), (11, 0)),
    "--calib": ((8, 0), (11, 0)),
    "--stronglyTyped": ((9, 0), None),
}

# versions with TensorRT DLA support: edgeres.trt_rules.DLA_SUPPORT (imported above; the rule table holds it)
# the oldest version build.sh supports is edgeres.tensorrt_version.MIN_TRTEXEC (8.2, for Nano/TX2), older
# than the edgeres adapter's MIN_ADAPTER (8.5): a bundle for JetPack 4 is built by trtexec, not by edgeres.

# the Q/DQ file of TensorRT 8.x/10.x depends on the weight form that version reads:
# edgeres.calibrate.qdq.weight_form_for (WEIGHT_FORM_RULES: 8.5/8.6 model.qdq.trt8.onnx, 10.x model.qdq.onnx)
QDQ_BY_WEIGHT_FORM = "<Q/DQ file of the weight form of the version>"
# which ONNX file of a bundle each (strongly typed?, precision, int8 mode) compiles from
ONNX_FOR = {
    (False, "fp32", None): "model.onnx",
    (False, "fp16", None): "model.onnx",
    (False, "int8", "qdq"): QDQ_BY_WEIGHT_FORM,
    (False, "int8", "calibrator"): "model.onnx",
    (True, "fp32", None): "model.onnx",
    (True, "fp16", None): "model.fp16.onnx",
    (True, "int8", "qdq"): "model.qdq.fp16.onnx",
}
# the same for a DLA build (--dla-core), where it differs: TensorRT 11.x runs INT8 on DLA from the Q/DQ model with
# ModelOpt's DLA placement (rule dla-qdq-placement-11, edgeres.calibrate.qdq.DLA_QDQ_NAME), typed FP16 for 11;
# 8.x-10.x DLA INT8 is implicit (model.onnx + calib.cache, rule dla-implicit-int8), as in ONNX_FOR
ONNX_FOR_DLA = {
    (True, "int8", "qdq"): "model.qdq.dla.fp16.onnx",
}
# typed FP16 file (TensorRT 11) -> (the FP32 file it is written from, whether that file has Q/DQ), for
# edgeres.precision.write_fp16_onnx
FP16_SOURCES = {
    "model.fp16.onnx": ("model.onnx", False),
    "model.qdq.fp16.onnx": ("model.qdq.onnx", True),
    "model.qdq.dla.fp16.onnx": ("model.qdq.dla.onnx", True),
}
# builder precision flags for TensorRT < 11 (the unquantized rest of an INT8 network runs FP16)
PRECISION_FLAGS = {
    ("fp32", None): (),
    ("fp16", None): ("--fp16",),
    ("int8", "qdq"): ("--int8", "--fp16"),
    ("int8", "calibrator"): ("--int8", "--fp16"),
}


def flag_supported(flag: str, version: TensorRTVersion | Version) -> bool:
    since, until = TRTEXEC_FLAGS[flag]
    return since <= version and (until is None or version < until)


def dla_supported(version: TensorRTVersion) -> bool:
    return any(lo <= version and (hi is None or version < hi) for lo, hi in DLA_SUPPORT)


@dataclasses.dataclass(frozen=True)
class TrtexecSpec:
    """What to build, in bundle-relative file names.

    Attributes:
        precision: ``fp32``, ``fp16`` or ``int8``.
        int8_mode: ``qdq`` or ``calibrator`` (INT8 only).
        input_name: the ONNX input (``input``).
        input_shape: (C, H, W) of one sample.
        min_batch, opt_batch, max_batch: the optimization profile.
        workspace_mib: builder workspace limit.
        dla_core: DLA core or None for the GPU.
        gpu_fallback: let layers DLA cannot run fall back to the GPU.
        plan: engine file to write.
        timing_cache: timing cache file (read and updated), or None.
        calib_cache: INT8 calibration cache (calibrator mode).
    """

    precision: str
    input_shape: tuple[int, int, int]
    int8_mode: str | None = None
    input_name: str = "input"
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    workspace_mib: int = 1024
    dla_core: int | None = None
    gpu_fallback: bool = True
    plan: str = "model.plan"
    timing_cache: str | None = "timing.cache"
    calib_cache: str = "calib.cache"

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> "TrtexecSpec":
        """From an ``edgeres.trt.settings.EngineSettings`` (file names made bundle-relative)."""
        from pathlib import Path

        kw = dict(
            precision=settings.precision,
            int8_mode=settings.int8_mode if settings.precision == "int8" else None,
            input_name=settings.input_name,
            input_shape=tuple(settings.input_shape),
            min_batch=settings.min_batch,
            opt_batch=settings.opt_batch,
            max_batch=settings.max_batch,
            workspace_mib=max(1, int(settings.workspace_bytes) >> 20),
            dla_core=settings.dla_core,
            gpu_fallback=settings.gpu_fallback,
            plan=Path(settings.plan_path).name,
            timing_cache=Path(settings.timing_cache).name if settings.timing_cache else None,
            calib_cache=Path(settings.calib_cache).name if getattr(settings, "calib_cache", None) else "calib.cache",
        )
        kw.update(overrides)
        return cls(**kw)


def onnx_file_for(precision: str, int8_mode: str | None, trt_version: str, *, dla: bool = False) -> str:
    """The bundle ONNX file that TensorRT ``trt_version`` compiles for this precision (``dla``: on a DLA core)."""
    version = parse_version(trt_version, error=BuildError)
    key = (strongly_typed(version), precision, int8_mode if precision == "int8" else None)
    if dla and key in ONNX_FOR_DLA:
        return ONNX_FOR_DLA[key]
    if key not in ONNX_FOR:
        if precision == "int8" and strongly_typed(version):
            raise BuildError(
                f"TensorRT {trt_version} removed implicit INT8 calibration (int8 mode 'calibrator'); "
                "use int8 mode 'qdq' (the Q/DQ model) for TensorRT 11"
            )
        raise BuildError(f"no ONNX for precision {precision!r} with int8 mode {int8_mode!r}")
    name = ONNX_FOR[key]
    if name == QDQ_BY_WEIGHT_FORM:
        from edgeres.calibrate.qdq import weight_form_for, weight_form_rule
        from edgeres.errors import CalibrationError

        if (8, 0) <= parse_version(trt_version) < (8, 5):
            # build.sh-only versions (8.2 on JetPack 4): TensorRT 8.x's explicit quantization (since 8.0) takes
            # FP32 weights with Q->DQ, the same rule as 8.5/8.6; WEIGHT_FORM_RULES starts at 8.5 (the adapter's floor)
            return weight_form_rule("fp32").file_name
        try:
            return weight_form_for(trt_version).file_name
        except CalibrationError as exc:
            raise BuildError(str(exc)) from None
    return name


def _shape(spec: TrtexecSpec, batch: int) -> str:
    return f"{spec.input_name}:{'x'.join(str(d) for d in (batch, *spec.input_shape))}"


MAX_DIM = 1 << 16  # any sample axis or batch; TensorRT's own limit on a dimension is far above anything meant
MAX_WORKSPACE_MIB = 1 << 24  # 16 TiB


def check_spec_values(spec: TrtexecSpec) -> None:
    """Types and patterns of every value that reaches a trtexec argv or ``build.sh``.

    Names go through :mod:`edgeres._names` (no control characters, quotes, ``$`` or
    path separators); numbers must be ints (not bools) within bounds.
    """
    check_name("tensor", spec.input_name, "input name", BuildError)
    for what, name in (("plan file", spec.plan), ("timing cache file", spec.timing_cache),
                       ("calibration cache file", spec.calib_cache)):
        if name is not None:
            check_name("file", name, what, BuildError)
    for what, value in (("min batch", spec.min_batch), ("opt batch", spec.opt_batch), ("max batch", spec.max_batch)):
        if not (is_int(value) and 1 <= value <= MAX_DIM):
            raise BuildError(f"{what} must be an integer in 1..{MAX_DIM}, received {value!r:.60}")
    if not (is_int(spec.workspace_mib) and 1 <= spec.workspace_mib <= MAX_WORKSPACE_MIB):
        raise BuildError(f"workspace must be an integer in 1..{MAX_WORKSPACE_MIB} MiB, received {spec.workspace_mib!r:.60}")
    if spec.dla_core is not None and not (is_int(spec.dla_core) and 0 <= spec.dla_core <= 15):
        raise BuildError(f"DLA core must be an integer in 0..15, received {spec.dla_core!r:.60}")
    if not isinstance(spec.gpu_fallback, bool):
        raise BuildError(f"gpu_fallback must be true or false, received {spec.gpu_fallback!r:.60}")


def check_input_shape(shape: object) -> tuple[int, int, int]:
    """The (C, H, W) sample shape of an argv (checked there, not in :func:`check_spec`: a build
    plan is checked before the model, hence the shape, is known)."""
    if not (isinstance(shape, tuple) and len(shape) == 3 and all(is_int(d) and 1 <= d <= MAX_DIM for d in shape)):
        raise BuildError(f"input shape must be (C, H, W) of integers in 1..{MAX_DIM}, received {shape!r:.60}")
    return shape  # type: ignore[return-value]


def check_spec(spec: TrtexecSpec, trt_version: str, *, compute_capability: tuple[int, int] | None = None,
               stage: str = "build") -> TensorRTVersion:
    """Refuse combinations the TensorRT version cannot build (one line naming the rule); return the parsed version."""
    check_name("tensorrt_version", trt_version, "TensorRT version", BuildError)
    version = parse_version(trt_version, error=BuildError)
    check_spec_values(spec)
    if version < MIN_TRTEXEC:
        raise BuildError(f"TensorRT {trt_version} is older than the oldest supported ({MIN_TRTEXEC[0]}.{MIN_TRTEXEC[1]}: "
                         f"{SUPPORTED['trtexec'].reason})")
    if spec.precision not in ("fp32", "fp16", "int8"):
        raise BuildError(f"precision must be fp32, fp16 or int8, received {spec.precision!r}")
    if spec.precision == "int8" and spec.int8_mode not in ("qdq", "calibrator"):
        raise BuildError(f"INT8 needs int8_mode 'qdq' or 'calibrator', received {spec.int8_mode!r}")
    if not 1 <= spec.min_batch <= spec.opt_batch <= spec.max_batch:
        raise BuildError(
            f"batch range must satisfy 1 <= min <= opt <= max, received {spec.min_batch}/{spec.opt_batch}/{spec.max_batch}"
        )
    # the documented per-version rules (DLA availability, precision, static shapes, implicit INT8, ...)
    check_rules(rule_context(spec, trt_version, stage=stage, compute_capability=compute_capability))
    onnx_file_for(spec.precision, spec.int8_mode, trt_version, dla=spec.dla_core is not None)
    return version


def rule_context(spec: TrtexecSpec, trt_version: str, *, stage: str = "build", **extra: Any) -> RuleContext:
    """The :class:`edgeres.trt_rules.RuleContext` of building ``spec`` with TensorRT ``trt_version``."""
    return RuleContext(trt_version=trt_version, precision=spec.precision,
                       int8_mode=spec.int8_mode if spec.precision == "int8" else None, dla_core=spec.dla_core,
                       min_batch=spec.min_batch, opt_batch=spec.opt_batch, max_batch=spec.max_batch, stage=stage,
                       **extra)


def trtexec_argv(spec: TrtexecSpec, trt_version: str, *, trtexec: str = "trtexec") -> list[str]:
    """The trtexec argv that builds ``spec`` with TensorRT ``trt_version``.

    Raises:
        BuildError: a combination that version cannot build (DLA, implicit INT8 on 11, ...).
    """
    version = check_spec(spec, trt_version)
    check_input_shape(spec.input_shape)
    mode = spec.int8_mode if spec.precision == "int8" else None
    argv = [trtexec, f"--onnx={onnx_file_for(spec.precision, mode, trt_version, dla=spec.dla_core is not None)}",
            f"--saveEngine={spec.plan}"]
    argv += [
        f"--minShapes={_shape(spec, spec.min_batch)}",
        f"--optShapes={_shape(spec, spec.opt_batch)}",
        f"--maxShapes={_shape(spec, spec.max_batch)}",
    ]
    if not strongly_typed(version):
        argv += PRECISION_FLAGS[(spec.precision, mode)]
        if mode == "calibrator":
            argv.append(f"--calib={spec.calib_cache}")
    if flag_supported("--memPoolSize", version):
        argv.append(f"--memPoolSize=workspace:{spec.workspace_mib}")
    else:
        argv.append(f"--workspace={spec.workspace_mib}")
    if spec.dla_core is not None:
        argv.append(f"--useDLACore={spec.dla_core}")
        if spec.gpu_fallback:
            argv.append("--allowGPUFallback")
    if spec.timing_cache:
        argv.append(f"--timingCacheFile={spec.timing_cache}")
    argv.append("--skipInference" if flag_supported("--skipInference", version) else "--buildOnly")
    unsupported = [a.split("=", 1)[0] for a in argv[1:] if not flag_supported(a.split("=", 1)[0], version)]
    if unsupported:  # the table and the generator disagree: a bug here, not user error
        raise AssertionError(f"generated flags {unsupported} that TensorRT {trt_version} does not parse")
    return argv


def _check_script_names(target: str, edgeres_version: str, sha256: dict[str, str] | None) -> None:
    """Names ``build.sh`` writes outside a quoted argument: the comment's target and edgeres version, and the
    ``sha256sum`` here-document's file names and digests (a name holding a newline or ``EOF`` could end it)."""
    check_name("target", target, "target name", BuildError)
    check_name("edgeres_version", edgeres_version, "edgeres version", BuildError)
    for name, digest in (sha256 or {}).items():
        if name != OUTPUT_MARKER:  # the one dot-name a bundle holds (a constant of edgeres._io)
            check_name("file", name, "bundle file name", BuildError)
        check_name("sha256", digest, f"sha256 of {name}", BuildError)


def build_script(
    spec: TrtexecSpec,
    trt_version: str,
    *,
    target: str,
    edgeres_version: str,
    sha256: dict[str, str] | None = None,
) -> str:
    """``build.sh``: verify the bundle's files, then run the trtexec command.

    For a device with trtexec but no edgeres; ``edgeres compile`` does the same
    and also writes the plan sidecar.

    Nothing unchecked reaches the script: the target and edgeres versions are checked
    against :mod:`edgeres._names` (they appear in a comment), the file names and digests
    of the ``sha256sum`` here-document against the file-name and hex patterns (a name
    holding a newline or ``EOF`` could otherwise end it early), and every trtexec
    argument is validated (:func:`check_spec_values`) and ``shlex.quote``-d.
    """
    _check_script_names(target, edgeres_version, sha256)
    argv = trtexec_argv(spec, trt_version, trtexec='"${TRTEXEC:-trtexec}"')
    head, *rest = argv
    command = " \\\n    ".join([head, *(shlex.quote(a) for a in rest)])
    lines = [
        "#!/bin/sh",
        f"# Generated by edgeres {edgeres_version} for target {target}, TensorRT {trt_version}.",
        "# Builds the engine on the device; `edgeres compile .` does the same and writes model.plan.json.",
        "set -eu",
        'cd "$(dirname "$0")"',
    ]
    if sha256:
        lines += ["sha256sum -c - <<'EOF'", *(f"{digest}  {name}" for name, digest in sorted(sha256.items())), "EOF"]
    lines += [command, ""]
    return "\n".join(lines)


def format_argv(argv: Sequence[str]) -> str:
    """One shell-quoted line, for printing."""
    return " ".join(shlex.quote(a) for a in argv)


# ---- build.sh for several TensorRT versions ---------------------------------------------------------
# How build.sh finds the installed TensorRT, in order:
# 1. $TRT_VERSION (major.minor[.patch]) when set: the user's override;
# 2. trtexec's start banner "&&&& RUNNING TensorRT.trtexec [TensorRT v8502] # ..." (NV_TENSORRT_VERSION: 8502 is
#    8.5.2, 100300 is 10.3.0), printed by main() before it parses --help (samples/trtexec/trtexec.cpp:
#    defineTest + reportTestStart come first; the banner as seen in a TensorRT 8.5.2 log in
#    NVIDIA-AI-IOT/cuDLA-samples#19). Not run here: no trtexec on the machine this was written on;
# 3. dpkg's version of libnvinfer-bin (JetPack/apt installs, the package that holds trtexec).
_DETECT = r'''TRTEXEC="${TRTEXEC:-trtexec}"
trt_version() {
    if [ -n "${TRT_VERSION:-}" ]; then
        echo "$TRT_VERSION"
        return
    fi
    code=$("$TRTEXEC" --help 2>&1 | sed -n 's/.*\[TensorRT v\([0-9][0-9]*\)\].*/\1/p' | head -n 1)
    if [ -n "$code" ]; then
        if [ "$code" -ge 100000 ]; then
            echo "$((code / 10000)).$((code / 100 % 100)).$((code % 100))"
        else
            echo "$((code / 1000)).$((code / 100 % 10)).$((code % 100))"
        fi
        return
    fi
    dpkg-query -W -f='${Version}\n' libnvinfer-bin 2>/dev/null | head -n 1 | cut -d- -f1
}
found=$(trt_version)'''


def _inert(text: str) -> str:
    """A value for a ``#`` comment line: printable, no newline (names come from user profiles)."""
    return "".join(c if c.isprintable() and c not in "\r\n" else "?" for c in str(text))


def build_script_for_versions(
    specs: "dict[str, TrtexecSpec]",
    *,
    target: str,
    edgeres_version: str,
    sha256: dict[str, str] | None = None,
) -> str:
    """``build.sh`` for every TensorRT version of a bundle: verify every hash, detect the version, run its command.

    ``specs``: TensorRT version -> the spec to build with it (usually the same spec). The
    script picks the command by the installed version's major.minor (``case``); a version
    the bundle is not for stops with one line. Every argument is shell-quoted; the
    script has no other input than ``$TRTEXEC`` and ``$TRT_VERSION``.

    Raises:
        BuildError: a version that cannot build its spec (see :func:`check_spec`).
    """
    versions = list(specs)
    if not versions:
        raise BuildError("build.sh needs at least one TensorRT version")
    _check_script_names(target, edgeres_version, sha256)  # every trtexec argument: trtexec_argv, then quoted
    lines = [
        "#!/bin/sh",
        f"# Generated by edgeres {_inert(edgeres_version)} for target {_inert(target)}, "
        f"TensorRT {_inert(', '.join(versions))}.",
        "# Verifies every file, detects the installed TensorRT ($TRT_VERSION, else trtexec's banner, else dpkg)",
        "# and runs the trtexec command for it; `edgeres compile .` does the same and writes model.plan.json.",
        "set -eu",
        'cd "$(dirname "$0")"',
    ]
    if sha256:
        lines += ["sha256sum -c - <<'EOF'", *(f"{digest}  {name}" for name, digest in sorted(sha256.items())), "EOF"]
    lines += [_DETECT, 'case "$found" in']
    seen: set[tuple[int, int]] = set()
    for v in versions:
        mm = parse_version(v, error=BuildError).major_minor
        if mm in seen:
            continue
        seen.add(mm)
        argv = trtexec_argv(specs[v], v, trtexec='"$TRTEXEC"')
        head, *rest = argv
        pattern = f"{mm[0]}.{mm[1]}|{mm[0]}.{mm[1]}.*"
        onnx = rest[0].split("=", 1)[1]  # a file name from ONNX_FOR: no shell characters
        lines.append(f"    {pattern})")
        lines.append(f'        echo "TensorRT $found: building {onnx} (bundle made for TensorRT {parse_version(v)})"')
        lines.append("        " + " \\\n            ".join([head, *(shlex.quote(a) for a in rest)]) + " ;;")
    listed = ", ".join(str(parse_version(v)) for v in versions)  # digits and dots only
    lines += [
        "    *)",
        f"        echo \"error: this bundle is for TensorRT {listed}, found ${{found:-no TensorRT}}; set "
        "TRT_VERSION=major.minor to choose, or rebuild with edgeres build --trt-version\" >&2",
        "        exit 1 ;;",
        "esac",
        "",
    ]
    return "\n".join(lines)
