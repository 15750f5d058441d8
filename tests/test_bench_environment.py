"""Environment probes on fake filesystem trees."""

from __future__ import annotations

from pathlib import Path

from edgeres.bench.environment import (
    clocks_locked,
    collect_environment,
    cpu_model,
    jetson_power_mode,
    jetson_release,
    nvidia_driver,
    parse_nvpmodel_query,
)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def jetson_root(root: Path, locked: bool) -> Path:
    _write(root / "etc/nv_tegra_release", "# R35 (release), REVISION: 3.1, GCID: 32827747, BOARD: t186ref, EABI: aarch64\n")
    _write(root / "proc/device-tree/model", "NVIDIA Jetson AGX Orin Developer Kit\x00")
    _write(root / "proc/cpuinfo", "processor\t: 0\nBogoMIPS\t: 62.50\n")
    _write(root / "var/lib/nvpmodel/status", "pmode:0000 fmode:fanNull\n")
    for cpu in ("cpu0", "cpu1"):
        _write(root / f"sys/devices/system/cpu/{cpu}/cpufreq/scaling_min_freq", "2201600\n" if locked else "115200\n")
        _write(root / f"sys/devices/system/cpu/{cpu}/cpufreq/scaling_max_freq", "2201600\n")
    gpu = root / "sys/class/devfreq/17000000.ga10b"
    _write(gpu / "min_freq", "1300500000\n" if locked else "306000000\n")
    _write(gpu / "max_freq", "1300500000\n")
    _write(root / "sys/class/devfreq/other.dev/min_freq", "1\n")
    _write(root / "sys/class/devfreq/other.dev/max_freq", "2\n")
    return root


def test_jetson_probes(tmp_path: Path) -> None:
    root = jetson_root(tmp_path, locked=True)
    assert jetson_release(root) == "R35.3.1", "L4T release from nv_tegra_release"
    assert cpu_model(root) == "NVIDIA Jetson AGX Orin Developer Kit", "ARM without model name: device-tree model"
    assert jetson_power_mode(root) == {"name": None, "id": 0, "source": "/var/lib/nvpmodel/status"}, "mode from status file"
    assert clocks_locked(root) == {"cpu": True, "gpu": True}, "min == max on every CPU and the GPU devfreq"
    env = collect_environment(root, probe_gpu=False)
    assert env["jetson"]["l4t"] == "R35.3.1" and env["jetson"]["power_mode"]["id"] == 0, f"jetson block: {env['jetson']}"


def test_unlocked_clocks(tmp_path: Path) -> None:
    assert clocks_locked(jetson_root(tmp_path, locked=False)) == {"cpu": False, "gpu": False}, "min < max: not locked"


def test_desktop_and_empty(tmp_path: Path) -> None:
    _write(tmp_path / "proc/cpuinfo", "processor\t: 0\nmodel name\t: AMD EPYC 7742 64-Core Processor\n")
    _write(tmp_path / "proc/driver/nvidia/version",
           "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\nGCC version:  gcc 12\n")
    assert cpu_model(tmp_path) == "AMD EPYC 7742 64-Core Processor", "x86 model name"
    assert nvidia_driver(tmp_path) == "535.104.05", "driver from /proc/driver/nvidia/version"
    assert clocks_locked(tmp_path) == {"cpu": None, "gpu": None}, "no frequency files: unknown"
    env = collect_environment(tmp_path, probe_gpu=False)
    assert env["jetson"] is None and "numpy" in env["libraries"], f"desktop env: {env['jetson']}, {env['libraries']}"


def test_parse_nvpmodel_query() -> None:
    assert parse_nvpmodel_query("NV Power Mode: MAXN\n0\n") == {"name": "MAXN", "id": 0}, "name and id"
    assert parse_nvpmodel_query("NVPM WARN: something\nNV Power Mode: 15W\n2") == {"name": "15W", "id": 2}, "warnings skipped"
    assert parse_nvpmodel_query("garbage") is None, "unparseable: None"
