"""What this device has: thin readers, one source each, gathered into :class:`DeviceFacts`.

Every reader takes what it reads as an argument: files under ``root`` (``/``
on a device, a fake tree in tests), command output through a :data:`Runner`
(``run_command`` on a device, a dict of recorded outputs in tests), and the
Python bindings through a :data:`PythonProbe` (``probe_python`` on a device).
A reader that finds nothing returns None; none raises. The parsers are pure
functions of the text a device prints, so tests feed them the real formats.

Sources of the formats (copied into tests/test_doctor*.py fakes):

* ``/etc/nv_tegra_release``: ``# R35 (release), REVISION: 4.1, GCID: ..., BOARD: t186ref, ...``
  (parsed as dusty-nv/jetson-containers ``jetson_containers/l4t_version.py`` ``get_l4t_version`` does).
* ``dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Version}\\n'``: ``ii  nvidia-l4t-core 35.4.1-20230801124926``.
* ``nvpmodel -q``: ``NV Power Mode: MAXN`` then the mode id on its own line;
  ``/etc/nvpmodel.conf``: ``< POWER_MODEL ID=0 NAME=MAXN >`` per mode.
* ``jetson_clocks --show``: ``cpu0: Online=1 Governor=... MinFreq=... MaxFreq=... CurrentFreq=...``,
  ``GPU MinFreq=... MaxFreq=... CurrentFreq=...``, ``EMC ... FreqOverride=1`` (the regexes of
  rbonghi/jetson_stats ``jtop/core/jetson_clocks.py``; on means every online CPU and the GPU have
  MinFreq == MaxFreq, which is what ``jetson_clocks`` writes: it copies max_freq into min_freq).
* ``nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader``:
  ``NVIDIA GeForce RTX 4090, 8.9, 550.54.14``.

Not verified on a device here (no Jetson or GPU on the machine this was
written on): the DLA device-node names across JetPack 5 and 6, and whether
``jetson_clocks --show`` needs root on every release (without root doctor
falls back to the cpufreq/devfreq files, as ``edgeres bench`` does).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

#: Runs a command, returns its stdout (None when the command is absent or printed nothing).
Runner = Callable[[Sequence[str]], "str | None"]
#: Reads what only Python can tell: interpreter and binding versions, the GPU through CUDA.
PythonProbe = Callable[[], Mapping[str, Any]]

DPKG_QUERY = (
    "dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Package} ${Version}\\n",
    "nvidia-l4t-core", "nvidia-jetpack", "tensorrt", "libnvinfer[0-9]*", "python3-libnvinfer",
    "cuda-cudart-[0-9]*", "libcudnn[0-9]*",
)
NVPMODEL_QUERY = ("nvpmodel", "-q")
JETSON_CLOCKS_SHOW = ("jetson_clocks", "--show")
NVIDIA_SMI_QUERY = ("nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader")


def run_command(argv: Sequence[str]) -> str | None:
    """stdout of ``argv`` (even with a non-zero exit: dpkg-query exits 1 when one pattern matches nothing)."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out if out.strip() else None


def no_commands(argv: Sequence[str]) -> str | None:
    """A runner for fake trees: no command exists."""
    return None


_GPU_DEVFREQ = re.compile(r"gpu|ga10b|gv11b|gp10b|gm20b|gb10b", re.IGNORECASE)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip("\x00").strip()
    except OSError:
        return None


def parse_nvpmodel_query(text: str) -> dict[str, Any] | None:
    """``nvpmodel -q`` output (``NV Power Mode: MAXN`` then the mode id) -> {name, id}."""
    m = re.search(r"NV Power Mode:\s*(\S+)", text)
    if not m:
        return None
    id_match = re.search(r"^\s*(\d+)\s*$", text[m.end():], re.MULTILINE)
    return {"name": m.group(1), "id": int(id_match.group(1)) if id_match else None}


def clocks_locked(root: Path) -> dict[str, bool | None]:
    """Whether CPU and GPU clocks are pinned (min frequency == max frequency, as ``jetson_clocks`` sets).

    None where the frequency files are absent or unreadable.
    """
    cpu_pairs = []
    for cpufreq in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq")):
        lo, hi = _read(cpufreq / "scaling_min_freq"), _read(cpufreq / "scaling_max_freq")
        if lo and hi:
            cpu_pairs.append(lo == hi)
    gpu_pairs = []
    for devfreq in sorted((root / "sys/class/devfreq").glob("*")):
        if _GPU_DEVFREQ.search(devfreq.name):
            lo, hi = _read(devfreq / "min_freq"), _read(devfreq / "max_freq")
            if lo and hi:
                gpu_pairs.append(lo == hi)
    return {
        "cpu": all(cpu_pairs) if cpu_pairs else None,
        "gpu": all(gpu_pairs) if gpu_pairs else None,
    }


# ---- parsers (pure) --------------------------------------------------------------------------

def parse_nv_tegra_release(text: str) -> str | None:
    """``# R35 (release), REVISION: 4.1, ...`` -> ``"35.4.1"``."""
    m = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+(?:\.\d+)*)", text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def parse_dpkg(text: str) -> dict[str, str]:
    """Installed packages from ``dpkg-query -W`` lines (``ii  name version`` or ``name version``)."""
    packages = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith("i"):  # "ii " + name + version; "rc" etc. are not installed
            packages[parts[1]] = parts[2]
        elif len(parts) == 2 and not re.fullmatch(r"[a-z]{2}", parts[0]):
            packages[parts[0]] = parts[1]
    return packages


def upstream_version(deb_version: str) -> str:
    """``8.5.2.2-1+cuda11.4`` -> ``8.5.2.2``; ``35.4.1-20230801124926`` -> ``35.4.1``; ``5.1.2-b104`` -> ``5.1.2``."""
    return deb_version.split(":", 1)[-1].split("-", 1)[0].split("+", 1)[0]


def _first(packages: Mapping[str, str], pattern: str) -> str | None:
    names = sorted((n for n in packages if re.fullmatch(pattern, n)), reverse=True)
    return upstream_version(packages[names[0]]) if names else None


def tensorrt_from_packages(packages: Mapping[str, str]) -> str | None:
    """The system TensorRT: the ``tensorrt`` meta-package (4 parts), else ``libnvinferN`` (3 parts)."""
    return _first(packages, r"tensorrt") or _first(packages, r"libnvinfer\d+") or _first(packages, r"python3-libnvinfer")


def cuda_from_packages(packages: Mapping[str, str]) -> str | None:
    """``cuda-cudart-11-4 11.4.298-1`` -> ``11.4.298``."""
    return _first(packages, r"cuda-cudart-\d+-\d+")


def cudnn_from_packages(packages: Mapping[str, str]) -> str | None:
    """``libcudnn8 8.6.0.166-1+cuda11.4`` / ``libcudnn9-cuda-12 9.3.0.75-1`` -> the upstream version."""
    return _first(packages, r"libcudnn\d+(-cuda-\d+)?")


def parse_nvpmodel_conf(text: str) -> list[tuple[int, str]]:
    """``< POWER_MODEL ID=0 NAME=MAXN >`` lines of ``/etc/nvpmodel.conf`` -> [(id, name)]."""
    return [(int(i), n) for i, n in re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>", text)]


def parse_jetson_clocks(text: str) -> dict[str, bool | None]:
    """``jetson_clocks --show`` -> {cpu, gpu, emc}: True where MinFreq == MaxFreq (EMC: FreqOverride=1)."""
    cpus = [lo == hi for online, lo, hi in
            re.findall(r"^cpu\d+:\s*(?:Online=(\d)\s+)?Governor=\S+\s+MinFreq=(\d+)\s+MaxFreq=(\d+)", text, re.MULTILINE)
            if online != "0"]
    gpu = re.search(r"^GPU MinFreq=(\d+)\s+MaxFreq=(\d+)", text, re.MULTILINE)
    emc = re.search(r"^EMC .*FreqOverride=(\d)", text, re.MULTILINE)
    return {
        "cpu": all(cpus) if cpus else None,
        "gpu": gpu.group(1) == gpu.group(2) if gpu else None,
        "emc": emc.group(1) == "1" if emc else None,
    }


def parse_nvidia_smi(text: str) -> dict[str, Any] | None:
    """First line of the ``nvidia-smi --query-gpu=name,compute_cap,driver_version`` CSV."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    parts = [p.strip() for p in line.split(",")]
    if len(parts) < 3:
        return None
    cc = re.fullmatch(r"(\d+)\.(\d+)", parts[1])
    return {"name": parts[0], "compute_capability": (int(cc.group(1)), int(cc.group(2))) if cc else None,
            "driver": parts[2]}


def cuda_version_string(code: int) -> str:
    """CUDA's integer version (``12060``) -> ``"12.6"``."""
    return f"{code // 1000}.{(code % 1000) // 10}"


# ---- readers (thin I/O) ----------------------------------------------------------------------

def read_dla_cores(root: Path) -> int | None:
    """DLA cores: distinct ``nvdlaN`` among the device nodes and platform devices; None when neither folder exists."""
    found: set[str] = set()
    folders = [root / "dev", root / "sys/bus/platform/devices"]
    if not any(f.is_dir() for f in folders):
        return None
    for folder in folders:
        if folder.is_dir():
            found.update(m.group(1) for p in folder.iterdir() if (m := re.search(r"nvdla(\d+)", p.name)))
    return len(found)


def read_container(root: Path) -> str | None:
    """``docker`` (/.dockerenv), ``podman`` (/run/.containerenv), a cgroup runtime name, or None on a host."""
    if (root / ".dockerenv").exists():
        return "docker"
    if (root / "run/.containerenv").exists():
        return "podman"
    m = re.search(r"(docker|kubepods|containerd|lxc)", _read(root / "proc/1/cgroup") or "")
    return m.group(1) if m else None


def read_mem_available(root: Path) -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes (CPU and GPU share it on Jetson)."""
    m = re.search(r"^MemAvailable:\s+(\d+)\s*kB", _read(root / "proc/meminfo") or "", re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


def read_disk_free(path: Path) -> int | None:
    """Free bytes on the filesystem holding ``path`` (its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def read_soc(root: Path) -> str | None:
    """``tegra234`` from /proc/device-tree/compatible (NUL-separated ``nvidia,tegra234``)."""
    m = re.search(r"nvidia,(tegra\d+)", (_read(root / "proc/device-tree/compatible") or "").replace("\x00", " "))
    return m.group(1) if m else None


def probe_python() -> dict[str, Any]:
    """Interpreter, TensorRT (through edgeres's own adapter, so the build sees the same), CUDA bindings and GPU.

    A probe never fails: whatever cannot be read is left out or recorded as an error string.
    """
    out: dict[str, Any] = {"python": platform.python_version()}
    import edgeres.trt
    from edgeres.errors import EdgeresError

    try:
        out["tensorrt"] = str(edgeres.trt.require_tensorrt().__version__)
    except EdgeresError as exc:
        out["tensorrt_error"] = str(exc)
    for dist in ("cuda-python", "pycuda"):
        try:
            out[dist.replace("-", "_")] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    out.update(_cuda_versions())
    try:
        cc = edgeres.trt.local_compute_capability()
    except EdgeresError:
        cc = None
    if cc is not None:
        out["compute_capability"] = tuple(cc)
    return out


def _cuda_versions() -> dict[str, str]:
    """CUDA runtime and driver versions through cuda-python; empty where it is absent or sees no driver."""
    try:
        from edgeres.runtime.cuda import import_cudart

        cudart = import_cudart()
        found = {}
        for key, call in (("cuda_runtime", cudart.cudaRuntimeGetVersion), ("cuda_driver", cudart.cudaDriverGetVersion)):
            err, code = call()
            if int(err) == 0 and code:
                found[key] = cuda_version_string(int(code))
        return found
    except Exception:  # noqa: BLE001 - a probe never fails; an unloadable binding is simply no answer
        return {}


# ---- the facts -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DeviceFacts:
    """Everything doctor knows about this device; None means "could not tell"."""

    python: str | None = None
    l4t: str | None = None                 # "35.4.1"
    l4t_source: str | None = None          # "/etc/nv_tegra_release" or "dpkg nvidia-l4t-core"
    jetpack: str | None = None             # from the nvidia-jetpack package, else the L4T table
    jetpack_source: str | None = None
    model: str | None = None               # /proc/device-tree/model
    soc: str | None = None                 # "tegra234"
    kernel: str | None = None              # /proc/sys/kernel/osrelease: the host's, even in a container
    tensorrt: str | None = None            # the Python bindings' version (what edgeres builds and runs with)
    tensorrt_error: str | None = None      # why the bindings did not import
    tensorrt_system: str | None = None     # from dpkg
    cuda_runtime: str | None = None
    cuda_driver: str | None = None
    cuda_system: str | None = None         # from dpkg
    cudnn: str | None = None               # from dpkg
    cuda_python: str | None = None
    pycuda: str | None = None
    gpu_name: str | None = None
    compute_capability: tuple[int, int] | None = None
    compute_capability_source: str | None = None
    nvidia_driver: str | None = None
    dla_cores: int | None = None
    power_mode: str | None = None
    power_mode_id: int | None = None
    power_modes: tuple[tuple[int, str], ...] = ()   # every mode of /etc/nvpmodel.conf
    clocks: Mapping[str, bool | None] = dataclasses.field(default_factory=dict)  # cpu, gpu, emc
    clocks_source: str | None = None
    mem_available_bytes: int | None = None
    disk_free_bytes: int | None = None
    disk_path: str | None = None
    container: str | None = None
    packages: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def is_jetson(self) -> bool:
        return self.l4t is not None or (self.soc or "").startswith("tegra") or (self.kernel or "").endswith("-tegra")

    @property
    def jetson_clocks_on(self) -> bool | None:
        """True when CPU and GPU clocks are pinned; None when neither could be read."""
        known = [v for k, v in self.clocks.items() if k in ("cpu", "gpu") and v is not None]
        return all(known) if known else None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["compute_capability"] = list(self.compute_capability) if self.compute_capability else None
        d["power_modes"] = [{"id": i, "name": n} for i, n in self.power_modes]
        d["clocks"] = dict(self.clocks)
        d["packages"] = dict(sorted(self.packages.items()))
        d["jetson"] = self.is_jetson
        d["jetson_clocks_on"] = self.jetson_clocks_on
        return d


def collect_facts(root: str | os.PathLike[str] = "/", *, run: Runner | None = None, probe: PythonProbe | None = None,
                  disk_path: str | os.PathLike[str] | None = None) -> DeviceFacts:
    """Read every source into :class:`DeviceFacts`.

    Args:
        root: filesystem root; commands and Python probes run for real only when it is ``/``
            unless ``run``/``probe`` are given.
        run: command runner (default: real commands on ``/``, none on a fake root).
        probe: Python probe (default: :func:`probe_python` on ``/``, nothing on a fake root).
        disk_path: where the build will write (a bundle folder); the current folder if omitted.
    """
    from edgeres.doctor.rules import compute_capability_of_soc, jetpack_for_l4t

    root = Path(root)
    real = str(root) == "/"
    run = run or (run_command if real else no_commands)
    py = dict((probe or (probe_python if real else dict))())
    packages = parse_dpkg(run(DPKG_QUERY) or "")

    l4t, l4t_source = parse_nv_tegra_release(_read(root / "etc/nv_tegra_release") or ""), "/etc/nv_tegra_release"
    if l4t is None and "nvidia-l4t-core" in packages:
        l4t, l4t_source = upstream_version(packages["nvidia-l4t-core"]), "dpkg nvidia-l4t-core"
    jetpack, jetpack_source = None, None
    if "nvidia-jetpack" in packages:
        jetpack, jetpack_source = upstream_version(packages["nvidia-jetpack"]), "dpkg nvidia-jetpack"
    elif l4t is not None and jetpack_for_l4t(l4t) is not None:
        jetpack, jetpack_source = jetpack_for_l4t(l4t), "L4T -> JetPack table (edgeres.doctor.rules)"

    soc = read_soc(root)
    smi = parse_nvidia_smi(run(NVIDIA_SMI_QUERY) or "")
    cc, cc_source = py.get("compute_capability"), "CUDA (cudaGetDeviceProperties)"
    if cc is None and smi and smi["compute_capability"]:
        cc, cc_source = smi["compute_capability"], "nvidia-smi"
    if cc is None and soc and compute_capability_of_soc(soc):
        cc, cc_source = compute_capability_of_soc(soc), f"SoC {soc} (edgeres.doctor.rules)"

    mode = parse_nvpmodel_query(run(NVPMODEL_QUERY) or "") or {}
    shown = run(JETSON_CLOCKS_SHOW)
    clocks, clocks_source = (parse_jetson_clocks(shown), "jetson_clocks --show") if shown else (None, None)
    if not clocks or all(v is None for v in clocks.values()):
        clocks, clocks_source = clocks_locked(root), "cpufreq/devfreq min == max"
    if mode.get("name") is None and shown:
        mode = parse_nvpmodel_query(shown) or mode  # jetson_clocks --show ends with "NV Power Mode: ..."

    modes = tuple(parse_nvpmodel_conf(_read(root / "etc/nvpmodel.conf") or ""))
    if mode.get("id") is None:  # without nvpmodel (a container, a fake tree): the mode nvpmodel last set
        status = re.search(r"pmode:(\d+)", _read(root / "var/lib/nvpmodel/status") or "")
        if status:
            mode = {"id": int(status.group(1)), "name": dict(modes).get(int(status.group(1)))}
    elif mode.get("name") is None:
        mode = {**mode, "name": dict(modes).get(mode["id"])}

    disk = Path(disk_path) if disk_path is not None else Path.cwd()
    return DeviceFacts(
        python=py.get("python"),
        l4t=l4t, l4t_source=l4t_source if l4t else None, jetpack=jetpack, jetpack_source=jetpack_source,
        model=_read(root / "proc/device-tree/model"), soc=soc, kernel=_read(root / "proc/sys/kernel/osrelease"),
        tensorrt=py.get("tensorrt"), tensorrt_error=py.get("tensorrt_error"),
        tensorrt_system=tensorrt_from_packages(packages),
        cuda_runtime=py.get("cuda_runtime"), cuda_driver=py.get("cuda_driver"), cuda_system=cuda_from_packages(packages),
        cudnn=cudnn_from_packages(packages), cuda_python=py.get("cuda_python"), pycuda=py.get("pycuda"),
        gpu_name=py.get("gpu_name") or (smi or {}).get("name") or (_read(root / "proc/device-tree/model") if soc else None),
        compute_capability=tuple(cc) if cc else None, compute_capability_source=cc_source if cc else None,
        nvidia_driver=(smi or {}).get("driver"),
        dla_cores=read_dla_cores(root) if soc else 0 if smi else None,
        power_mode=mode.get("name"), power_mode_id=mode.get("id"),
        power_modes=modes,
        clocks=clocks, clocks_source=clocks_source,
        mem_available_bytes=read_mem_available(root), disk_free_bytes=read_disk_free(disk), disk_path=str(disk),
        container=read_container(root), packages=packages,
    )
