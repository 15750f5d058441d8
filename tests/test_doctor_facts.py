"""edgeres.doctor.facts: the parsers on real output formats, the readers on fake trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeres.doctor import facts as F
from tests.doctor_fixtures import DEVICES, clocks_show, dpkg


def test_nv_tegra_release_lines() -> None:
    cases = {
        "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023": "35.4.1",
        "# R32 (release), REVISION: 7.1, GCID: 29689809, BOARD: t186ref, EABI: aarch64, DATE: Wed Feb  2 21:33:23 UTC 2022": "32.7.1",
        "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6 17:34:21 UTC 2024": "36.3.0",
    }
    for line, want in cases.items():
        assert F.parse_nv_tegra_release(line + "\n# KERNEL_VARIANT: oot\n") == want, f"{line!r} -> {want}"
    assert F.parse_nv_tegra_release("garbage") is None, "an unknown format is no answer, not a guess"


def test_dpkg_lines_and_versions() -> None:
    text = dpkg("nvidia-l4t-core 35.4.1-20230801124926", "tensorrt 8.5.2.2-1+cuda11.4", "libnvinfer8 8.5.2-1+cuda11.4",
                "cuda-cudart-11-4 11.4.298-1", "libcudnn8 8.6.0.166-1+cuda11.4") + "rc  libnvinfer7 7.1.3-1+cuda10.2\n"
    packages = F.parse_dpkg(text)
    assert "libnvinfer7" not in packages, "a removed package (rc: config files only) is not installed"
    assert F.tensorrt_from_packages(packages) == "8.5.2.2", "the tensorrt meta-package has all four parts"
    assert F.tensorrt_from_packages({"libnvinfer10": "10.3.0.30-1+cuda12.5"}) == "10.3.0.30", "libnvinferN when no meta-package"
    assert F.cuda_from_packages(packages) == "11.4.298" and F.cudnn_from_packages(packages) == "8.6.0.166", packages
    assert F.cudnn_from_packages({"libcudnn9-cuda-12": "9.3.0.75-1"}) == "9.3.0.75", "cuDNN 9 package naming"
    assert F.upstream_version("6.0+b106") == "6.0" and F.upstream_version("5.1.2-b104") == "5.1.2", "nvidia-jetpack versions"
    assert F.parse_dpkg("tensorrt 8.6.2.3-1+cuda12.2\n") == {"tensorrt": "8.6.2.3-1+cuda12.2"}, "the two-field format too"


def test_jetson_clocks_show() -> None:
    on = F.parse_jetson_clocks(clocks_show(locked=True))
    off = F.parse_jetson_clocks(clocks_show(locked=False))
    assert on == {"cpu": True, "gpu": True, "emc": True}, f"min == max everywhere after jetson_clocks: {on}"
    assert off == {"cpu": False, "gpu": False, "emc": False}, f"DVFS ranges: {off}"
    offline = "cpu0: Online=1 Governor=schedutil MinFreq=5 MaxFreq=5 CurrentFreq=5 IdleStates: WFI=0\n" \
              "cpu1: Online=0 Governor=schedutil MinFreq=1 MaxFreq=5 CurrentFreq=1 IdleStates: WFI=0\n"
    assert F.parse_jetson_clocks(offline)["cpu"] is True, "an offline CPU does not count"
    assert F.parse_jetson_clocks("") == {"cpu": None, "gpu": None, "emc": None}, "nothing printed: unknown"


def test_nvpmodel_conf_and_smi() -> None:
    modes = F.parse_nvpmodel_conf("< POWER_MODEL ID=0 NAME=MAXN >\nCPU_ONLINE CORE_0 1\n< POWER_MODEL ID=2 NAME=MAXN_SUPER >\n")
    assert modes == [(0, "MAXN"), (2, "MAXN_SUPER")], f"mode ids and names: {modes}"
    smi = F.parse_nvidia_smi("NVIDIA GeForce RTX 4090, 8.9, 550.54.14\n")
    assert smi == {"name": "NVIDIA GeForce RTX 4090", "compute_capability": (8, 9), "driver": "550.54.14"}, smi
    assert F.parse_nvidia_smi("") is None, "no nvidia-smi output: no GPU from it"
    assert F.cuda_version_string(12060) == "12.6" and F.cuda_version_string(11040) == "11.4", "CUDA integer versions"


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_fake_devices_read_back(name: str, tmp_path: Path) -> None:
    facts = DEVICES[name]().facts(tmp_path)
    want = {
        "agx-orin-jp5.1.2": ("35.4.1", "5.1.2", "8.5.2.2", (8, 7), 2, "MAXN", True),
        "agx-orin-jp6.0": ("36.3.0", "6.0", "8.6.2.3", (8, 7), 2, "MODE_30W", False),
        "agx-orin-jp6.2": ("36.4.3", "6.2", "10.3.0.30", (8, 7), 2, "MAXN", True),
        "orin-nano-container": (None, None, "8.6.2.3", (8, 7), 0, None, None),
        "xavier-nx-jp5.1.2": ("35.4.1", "5.1.2", "8.5.2.2", (7, 2), 2, "MODE_15W_6CORE", False),
        "nano-jp4.6.1": ("32.7.1", "4.6.1", "8.2.1.8", (5, 3), 0, "MAXN", None),
        "desktop-rtx4090": (None, None, "10.3.0.26", (8, 9), 0, None, None),
    }[name]
    got = (facts.l4t, facts.jetpack, facts.tensorrt, facts.compute_capability, facts.dla_cores, facts.power_mode,
           facts.jetson_clocks_on)
    assert got == want, f"{name}: (l4t, jetpack, tensorrt, cc, dla, power mode, clocks) = {got}, expected {want}"
    assert facts.is_jetson == name.startswith(("agx", "orin", "xavier", "nano")), f"{name}: Jetson or not"


def test_container_and_status_fallbacks(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run/.containerenv").write_text("")
    assert F.read_container(tmp_path) == "podman", "/run/.containerenv marks podman"
    other = tmp_path / "k8s"
    (other / "proc/1").mkdir(parents=True)
    (other / "proc/1/cgroup").write_text("12:memory:/kubepods/besteffort/pod1/abc\n")
    assert F.read_container(other) == "kubepods", "a cgroup path names the runtime"
    dev = tmp_path / "dev"
    (dev / "etc").mkdir(parents=True)
    (dev / "etc/nvpmodel.conf").write_text("< POWER_MODEL ID=0 NAME=15W >\n< POWER_MODEL ID=1 NAME=7W >\n")
    (dev / "var/lib/nvpmodel").mkdir(parents=True)
    (dev / "var/lib/nvpmodel/status").write_text("pmode:0001 fmode:quiet\n")
    facts = F.collect_facts(dev, probe=dict)
    assert (facts.power_mode_id, facts.power_mode) == (1, "7W"), "without nvpmodel: the status file's id, named by the conf"


def test_real_readers_never_fail(tmp_path: Path) -> None:
    facts = F.collect_facts(tmp_path, probe=dict, disk_path=tmp_path / "not" / "yet")
    assert facts.l4t is None and facts.tensorrt is None and not facts.is_jetson, f"an empty tree knows nothing: {facts}"
    assert facts.disk_free_bytes and facts.disk_free_bytes > 0, "free disk of the nearest existing parent"
    assert F.run_command(["edgeres-no-such-command-xyz"]) is None, "an absent command is no output, not an error"
    assert F.probe_python()["python"], "the real probe reports at least the interpreter"
