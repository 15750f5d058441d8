"""NVIDIA's release tables as data, and the checks doctor and ``edgeres compile`` run.

A check is a function ``(facts, subject) -> list[Problem]``; :data:`CHECKS`
lists them with the rule each follows. Severities: ``error`` (what is needed
is missing or wrong: doctor exits 1, compile refuses), ``warning`` (it will
run, but slower or untested: benchmarks are not comparable, tactics are
skipped).

Tables and where each row was read:

* L4T -> JetPack: dusty-nv/jetson-containers ``jetson_containers/l4t_version.py``
  (``get_jetpack_version``'s ``NVIDIA_JETPACK`` table, which cites NVIDIA's
  JetPack archive https://developer.nvidia.com/embedded/jetpack-archive).
* JetPack -> TensorRT, CUDA, cuDNN, Python:
  - 4.6.1-4.6.5 (L4T 32.7.x): TensorRT 8.2.1, CUDA 10.2, cuDNN 8.2.1 (JetPack 4.6.x
    component table, gist Tiryoh/2b5dc1f86ab6bc3e6922e97a4c1ac2f2 citing NVIDIA's
    Jetson release notes; https://developer.nvidia.com/jetpack-sdk-463); Ubuntu 18.04,
    Python 3.6 (jetson-containers ``get_lsb_release``: r32 -> 18.04).
  - 5.1, 5.1.1, 5.1.2 (L4T 35.2.1, 35.3.1, 35.4.1): TensorRT 8.5.2, CUDA 11.4, cuDNN 8.6.0
    (edgehook/Jetson-AI-task README component table; targets/jetson-orin.toml: JetPack 5.1
    release notes); Ubuntu 20.04, Python 3.8.
  - 6.0 (L4T 36.3): TensorRT 8.6.2, CUDA 12.2, cuDNN 8.9.4 (jetson-containers
    ``packages/tensorrt/config.py``: ``nv-tensorrt-local-repo-l4t-8.6.2-cuda-12.2`` for r36;
    mlcommons/inference_results_v4.1 ``closed/NVIDIA/systems/Orin_TRT.json``: "Jetpack 6.0,
    CUDA 12.2, cuDNN 8.9.4"); Ubuntu 22.04, Python 3.10.
  - 6.1 (L4T 36.4.0), 6.2 (L4T 36.4.3): TensorRT 10.3, CUDA 12.6, cuDNN 9.3
    (https://pytorch.org/TensorRT/getting_started/jetpack.html and its 6.2 page, citing
    NVIDIA's JetPack release notes); Python 3.10.
* Kernel -> L4T major (to see the host's L4T from inside a container, where
  /etc/nv_tegra_release is the image's): 4.9 -> r32, 5.10 -> r34/r35 (JetPack 5),
  5.15 -> r36 (JetPack 6), 6.8 -> r38 (JetPack 7, docs.nvidia.com/jetson/archives/r38.2.1
  Jetson Software Architecture: "Linux kernel 6.8"). The 5.10/5.15 rows are from a
  third-party Orin kernel guide (ai-hpc.github.io ... Orin-Nano-Kernel-Internals), r32's
  4.9 is not re-read here.
* Container compatibility: jetson-containers ``l4t_version_compatible``: a container
  built for L4T r35.x runs on any r35 host, r36 only within r36 (split at 36.4), r32.7
  within r32.7. Here the host side is known only to its major release (from the
  kernel), so only the major is compared.
* SoC -> compute capability: https://developer.nvidia.com/cuda-gpus and
  https://developer.nvidia.com/cuda-legacy-gpus (as in targets/*.toml).
* Plans and timing caches need major, minor, patch and build of TensorRT to match
  (NVIDIA TensorRT developer guide, "Version Compatibility"/support policy, as issue 11
  item 3 quotes it), and the same compute capability.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from edgeres.errors import BuildError, TensorRTUnavailableError

SEVERITIES = ("error", "warning")
MIN_PYTHON = (3, 10)  # pyproject.toml requires-python


@dataclasses.dataclass(frozen=True)
class Release:
    """One JetPack release: what its L4T ships."""

    jetpack: str
    l4t: str
    tensorrt: str
    cuda: str
    cudnn: str
    python: str


# L4T (as /etc/nv_tegra_release prints it, zero-padded to 3 parts) -> what the JetPack ships
RELEASES: tuple[Release, ...] = (
    Release("4.6.1", "32.7.1", "8.2.1", "10.2", "8.2.1", "3.6"),
    Release("4.6.2", "32.7.2", "8.2.1", "10.2", "8.2.1", "3.6"),
    Release("4.6.3", "32.7.3", "8.2.1", "10.2", "8.2.1", "3.6"),
    Release("4.6.4", "32.7.4", "8.2.1", "10.2", "8.2.1", "3.6"),
    Release("4.6.5", "32.7.5", "8.2.1", "10.2", "8.2.1", "3.6"),
    Release("5.1", "35.2.1", "8.5.2", "11.4", "8.6.0", "3.8"),
    Release("5.1.1", "35.3.1", "8.5.2", "11.4", "8.6.0", "3.8"),
    Release("5.1.2", "35.4.1", "8.5.2", "11.4", "8.6.0", "3.8"),
    Release("6.0", "36.3.0", "8.6.2", "12.2", "8.9.4", "3.10"),
    Release("6.1", "36.4.0", "10.3.0", "12.6", "9.3.0", "3.10"),
    Release("6.2", "36.4.3", "10.3.0", "12.6", "9.3.0", "3.10"),
)

# Linux kernel major.minor -> L4T major release (see the module docstring)
KERNEL_L4T = {"4.9": (32,), "5.10": (34, 35), "5.15": (36,), "6.8": (38,)}

# SoC (device-tree "nvidia,tegraNNN") -> GPU compute capability
SOC_COMPUTE_CAPABILITY = {
    "tegra210": (5, 3),   # Jetson Nano / TX1
    "tegra186": (6, 2),   # Jetson TX2
    "tegra194": (7, 2),   # Jetson AGX Xavier / Xavier NX
    "tegra234": (8, 7),   # Jetson AGX Orin / Orin NX / Orin Nano
}

# A build writes the plan beside the ONNX through a temporary file, then renames it;
# a plan is at most about the size of the FP32 ONNX it is built from (weights dominate).
# Need: twice the largest ONNX of the bundle, plus room for the timing cache.
DISK_MARGIN_BYTES = 64 << 20


def _parts(version: str) -> tuple[int, ...]:
    # Lenient on purpose: package versions ("8.5.2.2-1+cuda11.4" is cut at "-" by the reader) and
    # L4T/Python versions are not TensorRT version strings, so edgeres.tensorrt_version's strict parser
    # would refuse some of them; the numeric parts are all a check here compares.
    out = []
    for p in str(version).split("."):
        digits = "".join(c for c in p if c.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def _padded(version: str, n: int = 3) -> tuple[int, ...]:
    parts = _parts(version)
    return parts + (0,) * (n - len(parts))


def same_build(plan_version: str, device_version: str) -> bool:
    """Whether a plan of ``plan_version`` loads on ``device_version``: every part both name must match.

    A version known to fewer parts (libnvinfer8's ``8.5.2``) is compared on those.
    """
    a, b = _parts(plan_version), _parts(device_version)
    n = min(len(a), len(b), 4)
    return n >= 3 and a[:n] == b[:n]


def jetpack_for_l4t(l4t: str) -> str | None:
    return next((r.jetpack for r in RELEASES if _padded(r.l4t) == _padded(l4t)), None)


def release_for_l4t(l4t: str) -> Release | None:
    return next((r for r in RELEASES if _padded(r.l4t) == _padded(l4t)), None)


def l4t_majors_for_tensorrt(version: str) -> set[int]:
    """L4T major releases whose JetPack ships TensorRT ``version`` (by major.minor)."""
    return {_parts(r.l4t)[0] for r in RELEASES if _parts(r.tensorrt)[:2] == _parts(version)[:2]}


def l4t_majors_for_kernel(kernel: str) -> tuple[int, ...]:
    mm = ".".join(str(p) for p in _parts(kernel.split("-", 1)[0])[:2])
    return KERNEL_L4T.get(mm, ())


def compute_capability_of_soc(soc: str) -> tuple[int, int] | None:
    return SOC_COMPUTE_CAPABILITY.get(soc)


# ---- problems and subjects -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Problem:
    """One line of doctor's table: what is wrong, and the command or step that fixes it."""

    severity: str  # "error" or "warning"
    check: str     # name in CHECKS
    what: str
    fix: str

    def line(self) -> str:
        return f"{self.what}: {self.fix}"

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Subject:
    """What doctor compares the device with: nothing, a bundle's manifest, or a plan's sidecar."""

    kind: str = "device"            # "device", "bundle" or "plan"
    path: str | None = None
    manifest: Any = None            # edgeres.bundle.BundleManifest
    sidecar: Any = None             # edgeres.sidecar.PlanSidecar
    bundle_dir: str | None = None   # for a plan inside a bundle folder: that folder
    allow_mismatch: bool = False    # `edgeres compile --allow-mismatch`

    @property
    def needs(self) -> Any:
        return self.manifest if self.manifest is not None else self.sidecar


Check = Callable[[Any, Subject], "list[Problem]"]


def _sm(cc: Sequence[int]) -> str:
    return f"sm_{cc[0]}.{cc[1]}"


def check_python(facts: Any, subject: Subject) -> list[Problem]:
    """JetPack 4 (L4T r32) ships Python 3.6 and TensorRT 8.2: edgeres cannot run there; build.sh can."""
    release = release_for_l4t(facts.l4t) if facts.l4t else None
    old_l4t = facts.l4t is not None and _parts(facts.l4t)[0] <= 32
    old_python = facts.python is not None and _parts(facts.python)[:2] < MIN_PYTHON
    if not (old_l4t or old_python):
        return []
    where = subject.bundle_dir or (subject.path if subject.kind == "bundle" else None) or "BUNDLE"
    shipped = f"JetPack {release.jetpack} (L4T {release.l4t}) ships Python {release.python} and TensorRT {release.tensorrt}" \
        if release else f"L4T {facts.l4t or '?'} with Python {facts.python or '?'}"
    return [Problem(
        "error", "python",
        f"{shipped}; edgeres needs Python >= {MIN_PYTHON[0]}.{MIN_PYTHON[1]} and TensorRT >= 8.5",
        f"build the engine with `{where}/build.sh` (trtexec, no Python needed) and run it with trtexec "
        "or your own TensorRT 8.2 code; edgeres runs on JetPack 5 and later",
    )]


def check_tensorrt(facts: Any, subject: Subject) -> list[Problem]:
    """TensorRT's Python bindings must import (edgeres builds and runs through them)."""
    from edgeres.tensorrt_version import MIN_ADAPTER as MIN_VERSION
    from edgeres.trt.guard import INSTALL_HINT

    if facts.tensorrt is not None:
        if _parts(facts.tensorrt)[:2] >= MIN_VERSION:
            return []
        return [Problem("error", "tensorrt", f"TensorRT {facts.tensorrt} is older than edgeres supports "
                        f"({MIN_VERSION[0]}.{MIN_VERSION[1]})", "upgrade JetPack (5.1 or later) or TensorRT; " + INSTALL_HINT)]

    why = facts.tensorrt_error or "TensorRT is not importable in this Python"
    release = release_for_l4t(facts.l4t) if facts.l4t else None
    if release and facts.python and _parts(facts.python)[:2] != _parts(release.python)[:2] and "python3-libnvinfer" in facts.packages:
        fix = (f"JetPack {release.jetpack}'s python3-libnvinfer is built for Python {release.python}, this is Python "
               f"{'.'.join(facts.python.split('.')[:2])}: build TensorRT {release.tensorrt}'s Python bindings for it "
               "(NVIDIA/TensorRT python/README.md), or build the engine with the bundle's build.sh (trtexec)")
    elif facts.tensorrt_system and "python3-libnvinfer" not in facts.packages:
        fix = (f"the system has TensorRT {facts.tensorrt_system} but not its Python bindings: sudo apt install "
               "python3-libnvinfer (in a virtualenv, create it with --system-site-packages)")
    else:
        fix = INSTALL_HINT
    return [Problem("error", "tensorrt", why.split("; ")[0] if INSTALL_HINT in why else why, fix)]


def check_bindings_match_system(facts: Any, subject: Subject) -> list[Problem]:
    """A pip ``tensorrt`` wheel beside JetPack's libnvinfer: the two disagree on plans and plugins."""
    if not (facts.tensorrt and facts.tensorrt_system) or same_build(facts.tensorrt, facts.tensorrt_system):
        return []
    return [Problem(
        "error", "tensorrt-bindings",
        f"the Python bindings are TensorRT {facts.tensorrt} but the system (dpkg) has {facts.tensorrt_system}",
        "use one TensorRT: on Jetson `pip uninstall tensorrt` and use JetPack's python3-libnvinfer; "
        "elsewhere remove the other install",
    )]


def check_jetpack_tensorrt(facts: Any, subject: Subject) -> list[Problem]:
    """On a Jetson host, TensorRT should be the one its JetPack ships (others are untested by NVIDIA)."""
    release = release_for_l4t(facts.l4t) if facts.l4t else None
    if facts.container or release is None or facts.tensorrt is None or _parts(facts.l4t)[0] <= 32:
        return []
    if _parts(facts.tensorrt)[:2] == _parts(release.tensorrt)[:2]:
        return []
    return [Problem(
        "warning", "jetpack-tensorrt",
        f"TensorRT {facts.tensorrt} is not the {release.tensorrt} that JetPack {release.jetpack} (L4T {release.l4t}) ships",
        "plans built here run only with this exact TensorRT; reinstall JetPack's (sudo apt install nvidia-tensorrt) "
        "unless you installed this one on purpose",
    )]


def check_container(facts: Any, subject: Subject) -> list[Problem]:
    """In a container, its TensorRT (and its L4T image) must be built for the host's L4T release."""
    if not facts.container or not facts.kernel or not facts.kernel.endswith("tegra"):
        return []
    host = l4t_majors_for_kernel(facts.kernel)
    if not host:
        return []
    major = host[-1]
    image_l4t = _parts(facts.l4t)[0] if facts.l4t else None
    trt = facts.tensorrt or facts.tensorrt_system
    trt_l4t = l4t_majors_for_tensorrt(trt) if trt else set()
    fix = f"use a container built for L4T r{major}.x (e.g. a jetson-containers or nvcr.io/nvidia/l4t-* image tagged r{major}.x)"
    if image_l4t is not None and image_l4t not in host:
        return [Problem("error", "container",
                        f"container image is for L4T r{facts.l4t}, the host runs L4T r{major} (kernel {facts.kernel})", fix)]
    if trt_l4t and not trt_l4t & set(host):
        shipped = "/".join(f"r{m}" for m in sorted(trt_l4t))
        return [Problem("error", "container",
                        f"container TensorRT {'.'.join(str(p) for p in _parts(trt)[:2])} on an L4T {major} host "
                        f"(that TensorRT ships with L4T {shipped})", fix)]
    return []


def check_gpu(facts: Any, subject: Subject) -> list[Problem]:
    """A bundle or plan is built for one compute capability; an engine runs only there."""
    needs = subject.needs
    if needs is None:
        return []
    want = tuple(needs.compute_capability)
    target = getattr(needs, "target", None)
    label = f"{_sm(want)} ({target})" if target else _sm(want)
    if facts.compute_capability is None:
        if facts.tensorrt is None:
            return []  # check_tensorrt already says what is missing
        return [Problem("error", "gpu", f"{subject.kind} is for {label}, and no GPU is visible here",
                        "check the driver and CUDA_VISIBLE_DEVICES (in a container: --runtime nvidia)")]
    have = tuple(facts.compute_capability)
    if have == want:
        return []
    if subject.kind == "bundle":
        if subject.allow_mismatch:
            return [Problem("warning", "gpu", f"bundle is for {label}, this GPU is {_sm(have)}",
                            "--allow-mismatch: the engine will run only on this GPU")]
        fix = f"compile on a {target or _sm(want)} device, or pass --allow-mismatch to build for this GPU"
    else:
        fix = "rebuild the engine on this device (`edgeres compile BUNDLE`, or `edgeres build` here)"
    return [Problem("error", "gpu", f"{subject.kind} is for {label}, this GPU is {_sm(have)}", fix)]


def check_dla(facts: Any, subject: Subject) -> list[Problem]:
    """``dla_core`` N needs a device with more than N DLA cores."""
    needs = subject.needs
    core = getattr(needs, "dla_core", None) if needs is not None else None
    if core is None or facts.dla_cores is None or core < facts.dla_cores:
        return []
    has = "no DLA" if facts.dla_cores == 0 else f"{facts.dla_cores} DLA core(s), 0..{facts.dla_cores - 1}"
    fix = "rebuild without --dla-core" if facts.dla_cores == 0 else f"rebuild with --dla-core {facts.dla_cores - 1} or lower"
    return [Problem("error", "dla", f"{subject.kind} needs DLA core {core}, this device has {has}", fix)]


def check_plan_tensorrt(facts: Any, subject: Subject) -> list[Problem]:
    """A plan loads only with the TensorRT (major.minor.patch.build) that built it."""
    if subject.sidecar is None or facts.tensorrt is None or same_build(subject.sidecar.tensorrt_version, facts.tensorrt):
        return []
    rebuild = f"run `edgeres compile {subject.bundle_dir}`" if subject.bundle_dir else \
        "rebuild it here (`edgeres compile BUNDLE` on the bundle it came from)"
    return [Problem("error", "plan-tensorrt",
                    f"plan built with TensorRT {subject.sidecar.tensorrt_version}, this device has {facts.tensorrt}",
                    rebuild)]


def check_bundle_tensorrt(facts: Any, subject: Subject) -> list[Problem]:
    """The bundle must hold the ONNX this TensorRT compiles, and should be meant for it (major.minor)."""
    from edgeres.tensorrt_version import MIN_ADAPTER as MIN_VERSION
    from edgeres.trtexec import onnx_file_for

    m = subject.manifest
    if m is None or facts.tensorrt is None or _parts(facts.tensorrt)[:2] < MIN_VERSION:
        return []  # no TensorRT, or one too old: check_tensorrt says so

    mode = m.int8_mode if m.precision == "int8" else None
    rebuild = f"rebuild the bundle with `edgeres build --target {m.target} --trt-version {'.'.join(str(p) for p in _parts(facts.tensorrt)[:3])} ...`"
    try:
        name = onnx_file_for(m.precision, mode, facts.tensorrt)
    except BuildError as exc:
        return [Problem("error", "bundle-tensorrt", str(exc), rebuild)]
    meant = ", ".join(m.tensorrt_versions)
    if name not in m.files:
        return [Problem("error", "bundle-tensorrt",
                        f"TensorRT {facts.tensorrt} compiles {m.precision} from {name}, which this bundle lacks (it is meant for TensorRT {meant})",
                        rebuild)]
    if not any(_parts(v)[:2] == _parts(facts.tensorrt)[:2] for v in m.tensorrt_versions):
        return [Problem("warning", "bundle-tensorrt",
                        f"bundle is meant for TensorRT {meant}, this device has {facts.tensorrt}",
                        f"it should compile, untested; or {rebuild}")]
    return []


def check_disk(facts: Any, subject: Subject) -> list[Problem]:
    """The engine build needs room for the plan (written through a temporary file) and the timing cache."""
    m = subject.manifest
    if m is None or facts.disk_free_bytes is None:
        return []
    onnx = max((int(e.get("bytes", 0)) for n, e in m.files.items() if n.endswith(".onnx")), default=0)
    need = 2 * onnx + DISK_MARGIN_BYTES
    if facts.disk_free_bytes >= need:
        return []
    return [Problem("error", "disk",
                    f"{facts.disk_free_bytes >> 20} MiB free at {facts.disk_path}, less than the {need >> 20} MiB the engine build needs",
                    "free disk space, or copy the bundle to a larger disk and compile it there")]


def check_memory(facts: Any, subject: Subject) -> list[Problem]:
    """Less free memory than the workspace limit: the builder skips tactics that need more."""
    m = subject.manifest
    if m is None or facts.mem_available_bytes is None:
        return []
    workspace = int(m.workspace_mib) << 20
    if facts.mem_available_bytes >= workspace:
        return []
    return [Problem("warning", "memory",
                    f"{facts.mem_available_bytes >> 20} MiB memory available, below the bundle's {m.workspace_mib} MiB workspace limit",
                    f"close other programs, or pass --workspace {max(64, (facts.mem_available_bytes >> 20) // 2)} to `edgeres compile`")]


def max_power_modes(facts: Any) -> tuple[tuple[int, str], ...]:
    """The fastest nvpmodel modes: any MAXN* mode, else the highest wattage in the names (/etc/nvpmodel.conf)."""
    modes = tuple(facts.power_modes)
    maxn = tuple((i, n) for i, n in modes if n.upper().startswith("MAXN"))
    if maxn or not modes:
        return maxn
    watts = {(i, n): int(w.group(1)) for i, n in modes if (w := re.search(r"(\d+)W", n))}
    top = max(watts.values(), default=None)
    return tuple(k for k, w in watts.items() if w == top)


def check_power_mode(facts: Any, subject: Subject) -> list[Problem]:
    """Benchmarks and builds are timed at the maximum power mode (MLPerf's Jetson results run at MaxN)."""
    if not facts.is_jetson or facts.power_mode is None:
        return []
    best = max_power_modes(facts)
    if best and any(n == facts.power_mode for _, n in best):
        return []
    if not best and facts.power_mode.upper().startswith("MAXN"):
        return []
    target = best[-1] if best else None
    fix = f"sudo nvpmodel -m {target[0]}  ({target[1]})" if target else \
        "sudo nvpmodel -m <id of MAXN>  (modes are listed in /etc/nvpmodel.conf)"
    return [Problem("warning", "power-mode", f"power mode {facts.power_mode} is not the maximum", fix)]


def check_clocks(facts: Any, subject: Subject) -> list[Problem]:
    """Clocks not pinned: latency varies with DVFS (MLPerf Jetson runs pin them with jetson_clocks)."""
    if not facts.is_jetson or facts.jetson_clocks_on is not False:
        return []
    return [Problem("warning", "clocks", "jetson_clocks off (CPU/GPU clocks scale with load)",
                    "sudo jetson_clocks  (undo: sudo jetson_clocks --restore, after --store)")]


#: name -> (check, used by the compile preflight, the rule it follows)
CHECKS: Mapping[str, tuple[Check, bool, str]] = {
    "python": (check_python, True, "pyproject requires-python >= 3.10; JetPack 4.6.x ships Python 3.6"),
    "tensorrt": (check_tensorrt, True, "edgeres builds and runs through TensorRT's Python bindings (>= 8.5)"),
    "tensorrt-bindings": (check_bindings_match_system, True, "one TensorRT per process: bindings and libnvinfer must be the same build"),
    "jetpack-tensorrt": (check_jetpack_tensorrt, False, "JetPack release table (RELEASES)"),
    "container": (check_container, True, "jetson-containers l4t_version_compatible; kernel -> L4T table"),
    "gpu": (check_gpu, True, "an engine runs only on the compute capability it was built for"),
    "dla": (check_dla, True, "DLA cores are numbered 0..N-1 (targets/*.toml dla_cores)"),
    "plan-tensorrt": (check_plan_tensorrt, False, "plans need TensorRT major.minor.patch.build to match"),
    "bundle-tensorrt": (check_bundle_tensorrt, True, "edgeres.trtexec.onnx_file_for; manifest tensorrt_versions"),
    "disk": (check_disk, True, "2 x the largest bundle ONNX + 64 MiB (plan through a temporary file, timing cache)"),
    "memory": (check_memory, False, "builder workspace limit (manifest workspace_mib)"),
    "power-mode": (check_power_mode, False, "MLPerf Jetson submissions run at MaxN (mlcommons/ck setup-nvidia-jetson-orin.md)"),
    "clocks": (check_clocks, False, "jetson_clocks pins CPU/GPU/EMC clocks (jetson_stats jetson_clocks_alive)"),
}


def diagnose(facts: Any, subject: Subject | None = None, *, only: Sequence[str] | None = None) -> list[Problem]:
    """Every problem :data:`CHECKS` (or the ``only`` ones) find, errors first, in check order."""
    subject = subject or Subject()
    problems = [p for name, (check, _, _) in CHECKS.items() if only is None or name in only
                for p in check(facts, subject)]
    return sorted(problems, key=lambda p: SEVERITIES.index(p.severity))


class PreflightError(BuildError):
    """``edgeres compile`` refused before building: the build would fail, or its engine would not run here."""


class PreflightTensorRTError(PreflightError, TensorRTUnavailableError):
    """The preflight found no usable TensorRT (or no GPU for it)."""


# check -> the error class its refusal raises (TensorRT/GPU absence stays a TensorRTUnavailableError)
_REFUSAL = {"tensorrt": PreflightTensorRTError, "gpu": PreflightTensorRTError}


def preflight_problems(manifest: Any, facts: Any, *, allow_mismatch: bool = False,
                       bundle: str | None = None) -> list[Problem]:
    """What ``edgeres compile`` checks before building ``manifest``'s engine on the device ``facts`` describe."""
    subject = Subject(kind="bundle", path=bundle, manifest=manifest, bundle_dir=bundle, allow_mismatch=allow_mismatch)
    return diagnose(facts, subject, only=[name for name, (_, pre, _) in CHECKS.items() if pre])


def check_preflight(manifest: Any, facts: Any, *, allow_mismatch: bool = False, bundle: str | None = None) -> None:
    """Raise :class:`PreflightError` naming the first blocking problem and its fix; warnings pass.

    Raises:
        PreflightError: (:class:`PreflightTensorRTError` for a missing TensorRT or GPU) one line.
    """
    errors = [p for p in preflight_problems(manifest, facts, allow_mismatch=allow_mismatch, bundle=bundle)
              if p.severity == "error"]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more: run `edgeres doctor {bundle or 'BUNDLE'}`)" if len(errors) > 1 else ""
        raise _REFUSAL.get(first.check, PreflightError)(f"{first.line()}{more}")


def subject_for(path: str | Path, *, allow_mismatch: bool = False) -> Subject:
    """A bundle folder (its manifest.json) or a plan file (its sidecar) as a :class:`Subject`.

    Raises:
        EdgeresError: the path is neither, or its manifest/sidecar is malformed.
    """
    from edgeres.bundle import MANIFEST, load_manifest
    from edgeres.errors import EngineError
    from edgeres.sidecar import read_sidecar, sidecar_path

    p = Path(path)
    if p.is_dir():
        return Subject(kind="bundle", path=str(p), manifest=load_manifest(p), bundle_dir=str(p), allow_mismatch=allow_mismatch)
    if p.is_file() or sidecar_path(p).is_file():
        sidecar = read_sidecar(p)
        if sidecar is None:
            raise EngineError(f"plan {p} has no sidecar {sidecar_path(p).name}; doctor compares a plan through its sidecar "
                              "(written by `edgeres build`/`edgeres compile`)")
        bundle_dir = str(p.parent) if (p.parent / MANIFEST).is_file() else None
        return Subject(kind="plan", path=str(p), sidecar=sidecar, bundle_dir=bundle_dir)
    raise EngineError(f"{p} is neither a bundle folder nor a plan file")
