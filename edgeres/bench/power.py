"""Board power on Jetson: INA3221 rails from sysfs (or ``tegrastats`` lines), energy per inference.

Two sysfs layouts exist: JetPack 5+ (``ina3221`` hwmon: ``in<N>_label``,
``in<N>_input`` mV, ``curr<N>_input`` mA) and JetPack 4 (``ina3221x`` iio:
``rail_name_<N>``, ``in_power<N>_input`` mW). The board input rail
(``VDD_IN``, ``POM_5V_IN``, ...) is used when present, since it is what the
battery pays; otherwise the sum of all rails. Power is the whole board's
during the measured window, not the model's increment over idle. The parsers
are tested on fake sysfs trees and sample lines, not on a Jetson.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

#: Rails that carry the whole module/board input, most preferred first.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "5V_IN", "VIN_SYS_5V0", "VDD_MUX")

_TEGRASTATS_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*)\s+(\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _read_label(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


@dataclasses.dataclass(frozen=True)
class Rail:
    """One INA3221 channel: how to read its power in milliwatts."""

    name: str
    power_file: Path | None = None  # mW (JetPack 4 iio)
    voltage_file: Path | None = None  # mV (JetPack 5+ hwmon)
    current_file: Path | None = None  # mA

    def read_mw(self) -> float | None:
        if self.power_file is not None:
            value = _read_int(self.power_file)
            return None if value is None else float(value)
        if self.voltage_file is None or self.current_file is None:
            return None
        mv, ma = _read_int(self.voltage_file), _read_int(self.current_file)
        return None if mv is None or ma is None else mv * ma / 1000.0


def find_rails(sysfs_root: str | Path = "/") -> list[Rail]:
    """INA3221 rails under ``sysfs_root`` (``/`` on a device, a fake tree in tests); [] if none."""
    root = Path(sysfs_root)
    rails: list[Rail] = []
    for hwmon in sorted(root.glob("sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*")):
        for label_file in sorted(hwmon.glob("in*_label")):
            index = label_file.name[2:-len("_label")]
            label = _read_label(label_file)
            if label is None or label.lower().startswith("sum of"):
                continue  # Orin's "Sum of shunt voltages" channel is not a rail
            rails.append(Rail(label, voltage_file=hwmon / f"in{index}_input", current_file=hwmon / f"curr{index}_input"))
    for iio in sorted(root.glob("sys/bus/i2c/drivers/ina3221x/*/iio:device*")):
        for name_file in sorted(iio.glob("rail_name_*")):
            index = name_file.name.rsplit("_", 1)[1]
            label = _read_label(name_file)
            if label is not None:
                rails.append(Rail(label, power_file=iio / f"in_power{index}_input"))
    return rails


def select_rails(names: Sequence[str]) -> tuple[list[str], str]:
    """(rails to add up, method): the board input rail if any, else all rails."""
    for wanted in INPUT_RAILS:
        if wanted in names:
            return [wanted], f"input rail {wanted}"
    return list(names), "sum of all rails"


def parse_tegrastats_line(line: str) -> dict[str, float]:
    """Instantaneous rail powers (mW) of one ``tegrastats`` line.

    Handles ``VDD_IN 3913mW/3922mW`` (JetPack 5+) and ``POM_5V_IN 3416/3416``
    (JetPack 4); ``RAM 3162/7620MB`` and other fields are ignored.
    """
    return {m.group(1): float(m.group(2)) for m in _TEGRASTATS_RAIL.finditer(line) if m.group(1) not in ("RAM", "SWAP", "IRAM")}


@dataclasses.dataclass(frozen=True)
class PowerSample:
    time_s: float  # perf_counter seconds
    power_mw: float


def average_power_over(samples: Sequence[PowerSample], windows: Sequence[tuple[float, float]]) -> tuple[float, int] | None:
    """(mean power mW, samples used) of the samples inside any of ``windows``; None if none fall inside."""
    inside = [s.power_mw for s in samples if any(a <= s.time_s <= b for a, b in windows)]
    if not inside:
        return None
    return sum(inside) / len(inside), len(inside)


@dataclasses.dataclass(frozen=True)
class EnergyReport:
    """Board power during one side's measured windows."""

    average_power_mw: float
    energy_per_inference_mj: float
    samples: int
    rails: tuple[str, ...]
    method: str

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d["rails"] = list(self.rails)
        return d


def energy_report(
    samples: Sequence[PowerSample],
    windows: Sequence[tuple[float, float]],
    inferences: int,
    rails: Sequence[str],
    method: str,
) -> EnergyReport | None:
    """Average power over the windows and millijoules per inference (power x window time / inferences)."""
    avg = average_power_over(samples, windows)
    if avg is None or inferences <= 0:
        return None
    window_s = sum(b - a for a, b in windows)
    return EnergyReport(avg[0], avg[0] * window_s / inferences, avg[1], tuple(rails), method)


class PowerSampler:
    """Samples board power on a background thread while a benchmark runs.

    ``read_mw`` returns the current power or None; the thread wakes every
    ``interval_s`` (the INA3221 averages over its own conversion time, so
    faster sampling adds host load without adding information).
    """

    def __init__(self, read_mw: Callable[[], float | None], rails: Sequence[str], method: str, interval_s: float = 0.02) -> None:
        self._read_mw = read_mw
        self.rails = tuple(rails)
        self.method = method
        self.interval_s = interval_s
        self.samples: list[PowerSample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            value = self._read_mw()
            if value is not None:
                self.samples.append(PowerSample(time.perf_counter(), value))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "PowerSampler":
        self._thread = threading.Thread(target=self._loop, name="edgeres-power", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def report(self, windows: Sequence[tuple[float, float]], inferences: int) -> EnergyReport | None:
        return energy_report(self.samples, windows, inferences, self.rails, self.method)


def sysfs_power_sampler(sysfs_root: str | Path = "/", interval_s: float = 0.02) -> PowerSampler | None:
    """A sampler over the board's INA3221 rails, or None where there are none (not a Jetson)."""
    rails = find_rails(sysfs_root)
    if not rails:
        return None
    by_name = {r.name: r for r in rails}
    names, method = select_rails(list(by_name))
    chosen = [by_name[n] for n in names]

    def read_mw() -> float | None:
        values = [r.read_mw() for r in chosen]
        return None if any(v is None for v in values) else float(sum(values))  # type: ignore[arg-type]

    return PowerSampler(read_mw, names, f"INA3221 sysfs, {method}", interval_s)


class TegrastatsSampler(PowerSampler):
    """Reads rail powers from a ``tegrastats --interval`` subprocess (where sysfs is not readable)."""

    def __init__(self, executable: str, interval_ms: int = 100) -> None:
        super().__init__(lambda: None, (), "tegrastats", interval_ms / 1000.0)
        self._cmd = [executable, "--interval", str(interval_ms)]
        self._proc = None

    def _loop(self) -> None:
        import subprocess

        self._proc = subprocess.Popen(self._cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if self._stop.is_set():
                break
            self.add_line(line, time.perf_counter())

    def add_line(self, line: str, time_s: float) -> None:
        """Record one tegrastats line observed at ``time_s``."""
        rails = parse_tegrastats_line(line)
        if not rails:
            return
        names, method = select_rails(list(rails))
        self.rails = tuple(names)
        self.method = f"tegrastats, {method}"
        self.samples.append(PowerSample(time_s, sum(rails[n] for n in names)))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)


def power_sampler(sysfs_root: str | Path = "/") -> PowerSampler | None:
    """The best available power sampler: INA3221 sysfs, else ``tegrastats``, else None (report n/a)."""
    import shutil

    sampler = sysfs_power_sampler(sysfs_root)
    if sampler is not None and sampler._read_mw() is not None:
        return sampler
    executable = shutil.which("tegrastats")
    return TegrastatsSampler(executable) if executable else None
