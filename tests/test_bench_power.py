"""Jetson power: INA3221 sysfs trees (JetPack 4 and 5+ layouts), tegrastats lines, energy math."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edgeres.bench.power import (
    PowerSample,
    PowerSampler,
    TegrastatsSampler,
    energy_report,
    find_rails,
    parse_tegrastats_line,
    select_rails,
    sysfs_power_sampler,
)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def hwmon_tree(root: Path) -> Path:
    """Orin-like JetPack 5 layout: labels, mV and mA, plus the 'Sum of shunt voltages' channel."""
    hw = root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    for i, (label, mv, ma) in enumerate([("VDD_IN", 5000, 1000), ("VDD_CPU_GPU_CV", 5000, 300), ("VDD_SOC", 5000, 200)], 1):
        _write(hw / f"in{i}_label", label)
        _write(hw / f"in{i}_input", str(mv))
        _write(hw / f"curr{i}_input", str(ma))
    _write(hw / "in7_label", "Sum of shunt voltages")
    return hw


def iio_tree(root: Path) -> Path:
    """AGX Xavier-like JetPack 4 layout: rail names and mW, no input rail."""
    iio = root / "sys/bus/i2c/drivers/ina3221x/1-0040/iio:device0"
    for i, (name, mw) in enumerate([("GPU", 3000), ("CPU", 1500), ("SOC", 1000)]):
        _write(iio / f"rail_name_{i}", name)
        _write(iio / f"in_power{i}_input", str(mw))
    return iio


def test_hwmon_rails(tmp_path: Path) -> None:
    hwmon_tree(tmp_path)
    rails = {r.name: r for r in find_rails(tmp_path)}
    assert sorted(rails) == ["VDD_CPU_GPU_CV", "VDD_IN", "VDD_SOC"], f"three rails, sum channel skipped: {sorted(rails)}"
    assert rails["VDD_IN"].read_mw() == 5000.0, "5000 mV x 1000 mA = 5000 mW"
    sampler = sysfs_power_sampler(tmp_path)
    assert sampler is not None and sampler.rails == ("VDD_IN",), "the input rail is preferred"
    assert sampler._read_mw() == 5000.0, "sampler reads the input rail only"


def test_iio_rails_sum_without_input_rail(tmp_path: Path) -> None:
    iio_tree(tmp_path)
    sampler = sysfs_power_sampler(tmp_path)
    assert sampler is not None and "sum of all rails" in sampler.method, f"no input rail: sum, got {sampler and sampler.method}"
    assert sampler._read_mw() == 5500.0, "3000 + 1500 + 1000 mW"


def test_no_rails_means_no_sampler(tmp_path: Path) -> None:
    assert find_rails(tmp_path) == [] and sysfs_power_sampler(tmp_path) is None, "no INA3221: n/a"


def test_unreadable_rail_reads_none(tmp_path: Path) -> None:
    hw = hwmon_tree(tmp_path)
    (hw / "curr1_input").write_text("garbage\n")
    assert sysfs_power_sampler(tmp_path)._read_mw() is None, "a malformed reading is None, not a crash"


@pytest.mark.parametrize(
    "line, expected",
    [
        ("12-23-2024 22:54:11 RAM 3162/7620MB (lfb 4x2MB) SWAP 0/3810MB (cached 0MB) CPU [1%@729,0%@729,off,off] "
         "GR3D_FREQ 1% cpu@62.843C gpu@61.687C VDD_IN 3913mW/3922mW VDD_CPU_GPU_CV 598mW/598mW VDD_SOC 1238mW/1237mW",
         {"VDD_IN": 3913.0, "VDD_CPU_GPU_CV": 598.0, "VDD_SOC": 1238.0}),
        ("RAM 1609/3956MB (lfb 241x4MB) SWAP 0/1978MB (cached 0MB) CPU [9%@102,3%@102,1%@102,2%@102] EMC_FREQ 0% "
         "GR3D_FREQ 0% PLL@33C CPU@36C GPU@34C POM_5V_IN 2135/2135 POM_5V_GPU 0/0 POM_5V_CPU 375/375",
         {"POM_5V_IN": 2135.0, "POM_5V_GPU": 0.0, "POM_5V_CPU": 375.0}),
        ("RAM 3162/7620MB SWAP 0/3810MB GR3D_FREQ 0%", {}),
    ],
)
def test_parse_tegrastats(line: str, expected: dict) -> None:
    assert parse_tegrastats_line(line) == expected, f"rails of {line[:40]}..."


def test_tegrastats_sampler_lines() -> None:
    sampler = TegrastatsSampler("tegrastats")
    sampler.add_line("RAM 1/2MB VDD_IN 4000mW/4000mW VDD_SOC 1000mW/1000mW", 1.0)
    sampler.add_line("no rails here", 1.1)
    sampler.add_line("POM_5V_GPU 100/100 POM_5V_CPU 200/200", 1.2)
    assert [s.power_mw for s in sampler.samples] == [4000.0, 300.0], "input rail when present, else the sum"


def test_select_rails() -> None:
    assert select_rails(["VDD_SOC", "POM_5V_IN"]) == (["POM_5V_IN"], "input rail POM_5V_IN"), "Nano input rail"
    assert select_rails(["GPU", "CPU"]) == (["GPU", "CPU"], "sum of all rails"), "no input rail"


def test_energy_report_math() -> None:
    samples = [PowerSample(t, p) for t, p in [(0.5, 9999.0), (1.0, 4000.0), (1.5, 6000.0), (2.5, 9999.0), (3.0, 5000.0)]]
    # Windows [1, 2] and [3, 3.5]: samples 4000, 6000, 5000 -> mean 5000 mW over 1.5 s = 7500 mJ.
    report = energy_report(samples, [(1.0, 2.0), (3.0, 3.5)], inferences=150, rails=["VDD_IN"], method="test")
    assert report is not None and report.average_power_mw == 5000.0, f"mean of in-window samples, got {report}"
    assert report.energy_per_inference_mj == pytest.approx(50.0), "5 W x 1.5 s / 150 inferences = 50 mJ"
    assert report.samples == 3, "three samples inside the windows"
    assert energy_report(samples, [(10.0, 11.0)], 10, [], "x") is None, "no sample inside: n/a"


def test_sampler_thread_collects() -> None:
    readings = iter([1000.0, None, 2000.0] + [3000.0] * 1000)
    with PowerSampler(lambda: next(readings), ["VDD_IN"], "fake", interval_s=0.001) as sampler:
        time.sleep(0.05)
    values = [s.power_mw for s in sampler.samples]
    assert values[:2] == [1000.0, 2000.0] and len(values) >= 3, f"None readings skipped, thread sampled: {values[:4]}"
