"""Fake devices for the doctor tests (not a test module): filesystem trees, command outputs, Python probes.

Formats are copied from what the devices print (see edgeres/doctor/facts.py for
each source): ``/etc/nv_tegra_release`` lines as jetson-containers'
``l4t_version.py`` quotes them, ``dpkg-query -W -f='${db:Status-Abbrev} ${Package}
${Version}\\n'`` lines with the package versions each JetPack ships,
``nvpmodel -q`` and ``jetson_clocks --show`` as printed on Orin (jetson_stats'
regex comments and user reports), ``nvidia-smi --query-gpu`` CSV.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from edgeres.doctor.facts import DPKG_QUERY, JETSON_CLOCKS_SHOW, NVIDIA_SMI_QUERY, NVPMODEL_QUERY, DeviceFacts, collect_facts

ORIN_MODES = "\n".join([
    "< POWER_MODEL ID=0 NAME=MAXN >", "CPU_ONLINE CORE_0 1", "< POWER_MODEL ID=1 NAME=MODE_15W >",
    "< POWER_MODEL ID=2 NAME=MODE_30W >", "< POWER_MODEL ID=3 NAME=MODE_50W >", "< PM_CONFIG DEFAULT=3 >",
]) + "\n"
ORIN_NANO_MODES = "< POWER_MODEL ID=0 NAME=15W >\n< POWER_MODEL ID=1 NAME=7W >\n< PM_CONFIG DEFAULT=0 >\n"
XAVIER_NX_MODES = "\n".join(f"< POWER_MODEL ID={i} NAME={n} >" for i, n in [
    (0, "MODE_15W_2CORE"), (1, "MODE_15W_4CORE"), (2, "MODE_15W_6CORE"), (3, "MODE_10W_2CORE"),
    (4, "MODE_10W_4CORE"), (8, "MODE_20W_6CORE")]) + "\n"
NANO_MODES = "< POWER_MODEL ID=0 NAME=MAXN >\n< POWER_MODEL ID=1 NAME=5W >\n"


def clocks_show(*, locked: bool, cpus: int = 4, cpu_max: int = 2201600, gpu_max: int = 1300500000) -> str:
    """``jetson_clocks --show`` on an Orin: per-CPU lines, GPU, EMC, fan, power mode."""
    lo = cpu_max if locked else 729600
    lines = ["SOC family:tegra234  Machine:Jetson AGX Orin", f"Online CPUs: 0-{cpus - 1}"]
    lines += [f"cpu{i}: Online=1 Governor=schedutil MinFreq={lo} MaxFreq={cpu_max} CurrentFreq={cpu_max} "
              "IdleStates: WFI=1 c7=1 " for i in range(cpus)]
    lines += [f"GPU MinFreq={gpu_max if locked else 306000000} MaxFreq={gpu_max} CurrentFreq={gpu_max}",
              f"EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride={1 if locked else 0}",
              "FAN Dynamic Speed control=active hwmon4_pwm1=62", "NV Power Mode: MAXN"]
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class FakeDevice:
    """One fake device: files under its root, what its commands print, what its Python sees."""

    files: Mapping[str, str]
    commands: Mapping[tuple[str, ...], str]
    probe: Mapping[str, Any]

    def build(self, root: Path) -> Path:
        for rel, text in self.files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return root

    def run(self, argv: Any) -> str | None:
        return self.commands.get(tuple(argv))

    def facts(self, root: Path, disk_path: Path | None = None) -> DeviceFacts:
        self.build(root)
        return collect_facts(root, run=self.run, probe=lambda: dict(self.probe), disk_path=disk_path or root)


def dpkg(*lines: str) -> str:
    return "".join(f"ii  {line}\n" for line in lines)


def _jetson(release_line: str, osrelease: str, compatible: str, model: str, packages: str, modes: str,
            nvpmodel: str | None, clocks: str | None, probe: Mapping[str, Any], dla: int = 0,
            extra: Mapping[str, str] | None = None) -> FakeDevice:
    files = {
        "etc/nv_tegra_release": release_line + "\n# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n",
        "proc/sys/kernel/osrelease": osrelease + "\n",
        "proc/device-tree/compatible": compatible,
        "proc/device-tree/model": model + "\x00",
        "proc/meminfo": "MemTotal:       30536844 kB\nMemFree:        25000000 kB\nMemAvailable:   28000000 kB\n",
        "etc/nvpmodel.conf": modes,
        "sys/bus/platform/devices/3160000.i2c": "",
        **{f"dev/nvhost-nvdla{i}": "" for i in range(dla)},
        **{f"dev/nvhost-ctrl-nvdla{i}": "" for i in range(dla)},
        **(extra or {}),
    }
    commands = {DPKG_QUERY: packages}
    if nvpmodel is not None:
        commands[NVPMODEL_QUERY] = nvpmodel
    if clocks is not None:
        commands[JETSON_CLOCKS_SHOW] = clocks
    return FakeDevice(files, commands, probe)


ORIN_COMPATIBLE = "nvidia,p3737-0000+p3701-0005\x00nvidia,p3701-0005\x00nvidia,tegra234\x00"
ORIN_NANO_COMPATIBLE = "nvidia,p3768-0000+p3767-0005\x00nvidia,p3767-0005\x00nvidia,tegra234\x00"


def agx_orin_jp512() -> FakeDevice:
    """AGX Orin, JetPack 5.1.2 (L4T 35.4.1, TensorRT 8.5.2.2); Python 3.10 with bindings built for it; MAXN, clocks on."""
    return _jetson(
        "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023",
        "5.10.120-tegra", ORIN_COMPATIBLE, "Jetson AGX Orin Developer Kit",
        dpkg("nvidia-l4t-core 35.4.1-20230801124926", "nvidia-jetpack 5.1.2-b104", "tensorrt 8.5.2.2-1+cuda11.4",
             "libnvinfer8 8.5.2-1+cuda11.4", "python3-libnvinfer 8.5.2-1+cuda11.4", "cuda-cudart-11-4 11.4.298-1",
             "libcudnn8 8.6.0.166-1+cuda11.4"),
        ORIN_MODES, "NV Power Mode: MAXN\n0\n", clocks_show(locked=True, cpus=12),
        {"python": "3.10.12", "tensorrt": "8.5.2.2", "compute_capability": (8, 7), "cuda_runtime": "11.4",
         "cuda_driver": "11.4", "cuda_python": "11.8.3"},
        dla=2,
    )


def agx_orin_jp60() -> FakeDevice:
    """AGX Orin, JetPack 6.0 (L4T 36.3, TensorRT 8.6.2.3); 30 W mode, clocks not pinned."""
    return _jetson(
        "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6 17:34:21 UTC 2024",
        "5.15.136-tegra", ORIN_COMPATIBLE, "NVIDIA Jetson AGX Orin Developer Kit",
        dpkg("nvidia-l4t-core 36.3.0-20240506102626", "nvidia-jetpack 6.0+b106", "tensorrt 8.6.2.3-1+cuda12.2",
             "libnvinfer8 8.6.2.3-1+cuda12.2", "python3-libnvinfer 8.6.2.3-1+cuda12.2", "cuda-cudart-12-2 12.2.140-1",
             "libcudnn8 8.9.4.25-1+cuda12.2"),
        ORIN_MODES, "NV Power Mode: MODE_30W\n2\n", clocks_show(locked=False, cpus=12),
        {"python": "3.10.12", "tensorrt": "8.6.2.3", "compute_capability": (8, 7), "cuda_runtime": "12.2",
         "cuda_driver": "12.2", "cuda_python": "12.2.1"},
        dla=2,
    )


def agx_orin_jp62() -> FakeDevice:
    """AGX Orin, JetPack 6.2 (L4T 36.4.3, TensorRT 10.3.0.30); MAXN, clocks on."""
    return _jetson(
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025",
        "5.15.148-tegra", ORIN_COMPATIBLE, "NVIDIA Jetson AGX Orin Developer Kit",
        dpkg("nvidia-l4t-core 36.4.3-20250107174145", "nvidia-jetpack 6.2+b77", "tensorrt 10.3.0.30-1+cuda12.5",
             "libnvinfer10 10.3.0.30-1+cuda12.5", "python3-libnvinfer 10.3.0.30-1+cuda12.5", "cuda-cudart-12-6 12.6.68-1",
             "libcudnn9-cuda-12 9.3.0.75-1"),
        ORIN_MODES, "NV Power Mode: MAXN\n0\n", clocks_show(locked=True, cpus=12),
        {"python": "3.10.12", "tensorrt": "10.3.0.30", "compute_capability": (8, 7), "cuda_runtime": "12.6",
         "cuda_driver": "12.6", "cuda_python": "12.6.2"},
        dla=2,
    )


def orin_nano_container_mismatch() -> FakeDevice:
    """Orin Nano on an L4T 35 host (kernel 5.10), in a Docker container that brings TensorRT 8.6 (a JetPack 6 stack).

    In a container /etc/nv_tegra_release is the image's (here: none, an ubuntu:22.04 base),
    /dev has no DLA nodes (Orin Nano has none), nvpmodel and jetson_clocks are not installed.
    """
    return FakeDevice(
        files={
            ".dockerenv": "",
            "proc/1/cgroup": "0::/\n",
            "proc/sys/kernel/osrelease": "5.10.120-tegra\n",
            "proc/device-tree/compatible": ORIN_NANO_COMPATIBLE,
            "proc/device-tree/model": "NVIDIA Jetson Orin Nano Developer Kit\x00",
            "proc/meminfo": "MemTotal:        7620000 kB\nMemAvailable:    5200000 kB\n",
            "sys/bus/platform/devices/3160000.i2c": "",
            "dev/null": "",
        },
        commands={DPKG_QUERY: dpkg("tensorrt 8.6.2.3-1+cuda12.2", "libnvinfer8 8.6.2.3-1+cuda12.2",
                                   "python3-libnvinfer 8.6.2.3-1+cuda12.2", "cuda-cudart-12-2 12.2.140-1")},
        probe={"python": "3.10.12", "tensorrt": "8.6.2.3", "compute_capability": (8, 7), "cuda_runtime": "12.2"},
    )


def xavier_nx_jp512() -> FakeDevice:
    """Xavier NX, JetPack 5.1.2; 15 W mode (its fastest is MODE_20W_6CORE); GPU known only from the SoC."""
    return _jetson(
        "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023",
        "5.10.120-tegra", "nvidia,p3509-0000+p3668-0001\x00nvidia,jetson-xavier-nx\x00nvidia,tegra194\x00",
        "NVIDIA Jetson Xavier NX Developer Kit",
        dpkg("nvidia-l4t-core 35.4.1-20230801124926", "tensorrt 8.5.2.2-1+cuda11.4", "libnvinfer8 8.5.2-1+cuda11.4",
             "python3-libnvinfer 8.5.2-1+cuda11.4", "cuda-cudart-11-4 11.4.298-1", "libcudnn8 8.6.0.166-1+cuda11.4"),
        XAVIER_NX_MODES, "NV Power Mode: MODE_15W_6CORE\n2\n", None,
        {"python": "3.10.12", "tensorrt": "8.5.2.2"},
        dla=2,
        extra={f"sys/devices/system/cpu/cpu{i}/cpufreq/{k}": v for i in range(2)
               for k, v in (("scaling_min_freq", "1190400\n"), ("scaling_max_freq", "1907200\n"))},
    )


def nano_jp461() -> FakeDevice:
    """Jetson Nano, JetPack 4.6.1 (L4T 32.7.1): Python 3.6, TensorRT 8.2.1 (what the fake says; edgeres cannot run there)."""
    return _jetson(
        "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, DATE: Sat Feb 19 17:05:08 UTC 2022",
        "4.9.253-tegra", "nvidia,p3450-0000\x00nvidia,tegra210\x00", "NVIDIA Jetson Nano Developer Kit",
        dpkg("nvidia-l4t-core 32.7.1-20220219090432", "tensorrt 8.2.1.8-1+cuda10.2", "libnvinfer8 8.2.1-1+cuda10.2",
             "python3-libnvinfer 8.2.1-1+cuda10.2", "cuda-cudart-10-2 10.2.300-1", "libcudnn8 8.2.1.32-1+cuda10.2"),
        NANO_MODES, "NV Power Mode: MAXN\n0\n", None,
        {"python": "3.6.9", "tensorrt": "8.2.1.8"},
    )


def desktop_rtx4090(*, smi_only: bool = True) -> FakeDevice:
    """x86 desktop, GeForce RTX 4090, pip TensorRT 10.3.0.26; the GPU from nvidia-smi (or from cuda-python)."""
    probe: dict[str, Any] = {"python": "3.11.9", "tensorrt": "10.3.0.26", "cuda_runtime": "12.4", "cuda_driver": "12.4",
                             "cuda_python": "12.4.0"}
    if not smi_only:
        probe["compute_capability"] = (8, 9)
    return FakeDevice(
        files={"proc/meminfo": "MemTotal:       65536000 kB\nMemAvailable:   60000000 kB\n",
               "proc/sys/kernel/osrelease": "6.8.0-45-generic\n", "proc/1/cgroup": "0::/init.scope\n"},
        commands={NVIDIA_SMI_QUERY: "NVIDIA GeForce RTX 4090, 8.9, 550.54.14\n"},
        probe=probe,
    )


DEVICES = {
    "agx-orin-jp5.1.2": agx_orin_jp512,
    "agx-orin-jp6.0": agx_orin_jp60,
    "agx-orin-jp6.2": agx_orin_jp62,
    "orin-nano-container": orin_nano_container_mismatch,
    "xavier-nx-jp5.1.2": xavier_nx_jp512,
    "nano-jp4.6.1": nano_jp461,
    "desktop-rtx4090": desktop_rtx4090,
}


def manifest_fields(**over: Any) -> dict[str, Any]:
    """BundleManifest fields for a jetson-orin FP16 bundle (as `edgeres build --target jetson-orin` writes them)."""
    fields: dict[str, Any] = dict(
        target="jetson-orin", compute_capability=(8, 7), precision="fp16", int8_mode=None, input_name="input",
        output_name="logits", input_shape=(3, 224, 224), min_batch=1, opt_batch=1, max_batch=8, workspace_mib=4096,
        dla_core=None, gpu_fallback=True, tensorrt_version="10.3.0", tensorrt_versions=("8.5.2", "8.6.2", "10.3.0"),
        recipe=None, source={"weights_sha256": "0" * 64}, edgeres_version="0.0.0", calibration=None,
    )
    fields.update(over)
    return fields


def manifest(files: Mapping[str, int] | None = None, **over: Any) -> Any:
    from edgeres.bundle import BundleManifest

    files = files or {"model.onnx": 100 << 20, "model.fp16.onnx": 50 << 20, "build.sh": 900}
    entries = {n: {"sha256": "0" * 64, "bytes": b, "role": ""} for n, b in files.items()}
    return BundleManifest(**manifest_fields(**over), files=entries)


def sidecar(**over: Any) -> Any:
    from edgeres.sidecar import PlanSidecar, TensorSpec

    fields: dict[str, Any] = dict(
        tensorrt_version="8.6.2.3", compute_capability=(8, 7), device_name="Orin", precision="fp16",
        inputs=(TensorSpec("input", (-1, 3, 224, 224), "float32"),), outputs=(TensorSpec("logits", (-1, 1000), "float32"),),
        min_batch=1, opt_batch=1, max_batch=8, plan_sha256="0" * 64, onnx_sha256="0" * 64, edgeres_version="0.0.0",
        dla_core=None, target="jetson-orin",
    )
    fields.update(over)
    return PlanSidecar(**fields)
