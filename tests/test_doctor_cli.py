"""`edgeres doctor` and the `edgeres compile` preflight through the CLI, and the bench's doctor facts, on fake devices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner, Result

import edgeres.doctor
import edgeres.doctor.facts
import edgeres.trt
from edgeres.cli import cli
from edgeres.sidecar import write_sidecar
from tests.doctor_fixtures import DEVICES, FakeDevice, manifest_fields, sidecar


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def use_device(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, device: FakeDevice) -> None:
    """Make every collect_facts call (doctor's and compile's) read ``device``'s fake tree, commands and probe."""
    root = device.build(tmp_path / "device-root")
    real = edgeres.doctor.facts.collect_facts

    def collect(_root: Any = "/", *, run: Any = None, probe: Any = None, disk_path: Any = None) -> Any:
        return real(root, run=device.run, probe=lambda: dict(device.probe), disk_path=disk_path or root)

    monkeypatch.setattr(edgeres.doctor.facts, "collect_facts", collect)
    monkeypatch.setattr(edgeres.doctor, "collect_facts", collect)


def make_bundle(folder: Path, **over: Any) -> Path:
    from edgeres.bundle import make_bundle as make

    src = folder.parent / f"{folder.name}-src"
    src.mkdir(parents=True)
    for name in ("model.onnx", "model.fp16.onnx"):
        (src / name).write_bytes(b"onnx stand-in " + name.encode())
    make(folder, {n: src / n for n in ("model.onnx", "model.fp16.onnx")}, manifest_fields(**over), "#!/bin/sh\ntrtexec\n")
    return folder


def test_device_only_warnings_exit_0(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_device(monkeypatch, tmp_path, DEVICES["agx-orin-jp6.0"]())
    result = run("doctor")
    assert result.exit_code == 0, f"warnings only: exit 0, got {result.exit_code}: {result.output}"
    assert "JetPack           6.0" in result.output and "MODE_30W" in result.output, result.output
    assert "WARNING jetson_clocks off" in result.output and "sudo jetson_clocks" in result.output, result.output


def test_bundle_on_orin_nano_container_exit_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_device(monkeypatch, tmp_path, DEVICES["orin-nano-container"]())
    bundle = make_bundle(tmp_path / "b", dla_core=1)
    result = run("doctor", str(bundle))
    assert result.exit_code == 1, f"missing/wrong: exit 1, got {result.exit_code}: {result.output}"
    lines = [ln for ln in result.output.splitlines() if ln.strip().startswith("ERROR")]
    assert len(lines) == 2, f"one line per problem: {lines}"
    assert "container TensorRT 8.6 on an L4T 35 host" in lines[0] and "r35.x" in lines[0], lines[0]
    assert "bundle needs DLA core 1, this device has no DLA" in lines[1], lines[1]


def test_plan_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_device(monkeypatch, tmp_path, DEVICES["agx-orin-jp6.2"]())
    bundle = make_bundle(tmp_path / "b")
    plan = bundle / "model.plan"
    plan.write_bytes(b"plan stand-in")
    write_sidecar(plan, sidecar(tensorrt_version="8.6.2.3"))
    result = run("doctor", str(plan), "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.output)
    assert data["format"] == "edgeres-doctor" and data["schema_version"] == 1 and data["exit_code"] == 1, data.keys()
    assert data["subject"] == {"kind": "plan", "path": str(plan)}, data["subject"]
    assert data["facts"]["tensorrt"] == "10.3.0.30" and data["facts"]["l4t"] == "36.4.3", data["facts"]
    assert data["facts"]["compute_capability"] == [8, 7] and data["facts"]["jetson_clocks_on"] is True, data["facts"]
    [problem] = data["problems"]
    assert problem == {"severity": "error", "check": "plan-tensorrt",
                       "what": "plan built with TensorRT 8.6.2.3, this device has 10.3.0.30",
                       "fix": f"run `edgeres compile {bundle}`"}, problem


@pytest.mark.parametrize("setup, needle", [
    (lambda p: p, "neither a bundle folder nor a plan file"),
    (lambda p: (p.write_bytes(b"x"), p)[1], "has no sidecar"),
    (lambda p: (p.mkdir(), (p / "manifest.json").write_text("{not json"), p)[2], "not readable JSON"),
])
def test_bad_input_exit_2(setup: Callable[[Path], Path], needle: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_device(monkeypatch, tmp_path, DEVICES["desktop-rtx4090"]())
    path = setup(tmp_path / "thing")
    result = run("doctor", str(path))
    assert result.exit_code == 2 and needle in result.stderr, f"{needle!r}: {result.exit_code} {result.stderr!r}"
    assert len(result.stderr.strip().splitlines()) == 1, f"one line: {result.stderr!r}"


def _tensorrt_must_not_be_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    def never() -> None:
        raise AssertionError("the preflight must refuse before TensorRT is required")

    monkeypatch.setattr(edgeres.trt, "require_tensorrt", never, raising=False)


def test_compile_preflight_nano_points_at_build_sh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_device(monkeypatch, tmp_path, DEVICES["nano-jp4.6.1"]())
    _tensorrt_must_not_be_needed(monkeypatch)
    bundle = make_bundle(tmp_path / "nano", target="jetson-nano", compute_capability=(5, 3),
                         tensorrt_versions=("8.2.1",), tensorrt_version="8.2.1")
    result = run("compile", str(bundle))
    assert result.exit_code == 2, f"refused: {result.exit_code} {result.output}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: JetPack 4.6.1 (L4T 32.7.1) ships Python 3.6"), lines
    assert f"`{bundle}/build.sh`" in lines[0] and "1 more" in lines[0], lines[0]
    assert not (bundle / "model.plan").exists(), "nothing built"


def test_compile_preflight_dla_on_orin_nano(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    device = DEVICES["orin-nano-container"]()
    device.files = {k: v for k, v in device.files.items() if k != ".dockerenv"}  # on the host: only the DLA is wrong
    device.commands = {k: v.replace("8.6.2.3", "8.5.2.2") for k, v in device.commands.items()}
    device.probe = {**device.probe, "tensorrt": "8.5.2.2"}
    use_device(monkeypatch, tmp_path, device)
    _tensorrt_must_not_be_needed(monkeypatch)
    bundle = make_bundle(tmp_path / "dla", dla_core=0)
    result = run("compile", str(bundle))
    assert result.exit_code == 2 and "bundle needs DLA core 0, this device has no DLA" in result.stderr, result.stderr
    assert "rebuild without --dla-core" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_compile_preflight_passes_then_builds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_device(monkeypatch, tmp_path, DEVICES["agx-orin-jp6.0"]())  # warnings (power, clocks) do not block

    class FakeTRT:
        __version__ = "8.6.2.3"

    built = {}
    monkeypatch.setattr(edgeres.trt, "require_tensorrt", lambda: FakeTRT, raising=False)
    monkeypatch.setattr(edgeres.trt, "local_compute_capability", lambda: (8, 7), raising=False)
    monkeypatch.setattr(edgeres.trt, "build_engine", lambda settings: built.setdefault("s", settings) and sidecar(
        tensorrt_version="8.6.2.3"), raising=False)
    result = run("compile", str(make_bundle(tmp_path / "ok")))
    assert result.exit_code == 0 and "s" in built, f"preflight passed, build ran: {result.output} {result.stderr}"


def test_bench_records_doctor_facts_and_warns(tmp_path: Path) -> None:
    from edgeres.bench.environment import collect_environment
    from edgeres.bench.runner import run_benchmark
    from edgeres.bench.timing import TimingConfig
    from tests.bench_fixtures import FakeBackend
    from tests.doctor_fixtures import agx_orin_jp60

    root = agx_orin_jp60().build(tmp_path)  # no commands on a fake root: status file and cpufreq files
    (root / "var/lib/nvpmodel").mkdir(parents=True)
    (root / "var/lib/nvpmodel/status").write_text("pmode:0002 fmode:fanNull\n")
    for cpu in ("cpu0", "cpu1"):
        freq = root / f"sys/devices/system/cpu/{cpu}/cpufreq"
        freq.mkdir(parents=True)
        (freq / "scaling_min_freq").write_text("729600\n")
        (freq / "scaling_max_freq").write_text("2201600\n")
    env = collect_environment(root, probe_gpu=False)
    doctor = env["doctor"]
    assert doctor["l4t"] == "36.3.0" and doctor["jetpack"] == "6.0", doctor
    assert doctor["tensorrt"] is None, "a fake root runs no dpkg and no Python probe: TensorRT unknown, not guessed"
    assert doctor["power_mode"] == "MODE_30W" and doctor["power_mode_id"] == 2 and doctor["jetson_clocks"] is False, doctor
    assert any("not the maximum" in w for w in doctor["warnings"]) and any("jetson_clocks off" in w for w in doctor["warnings"]), doctor

    said: list[str] = []

    class PlanBackend(FakeBackend):
        name = "tensorrt"

    fast = TimingConfig(warmup_ms=0, min_warmup_iters=1, duration_s=0.01, min_iters=2, rounds=1)
    run_benchmark(PlanBackend("plan"), None, config=fast, num_buffers=1, environment=env, sysfs_root=str(tmp_path), log=said.append)
    assert sum(line.startswith("warning: ") for line in said) == 2, f"a plan's bench says both: {said}"
    said.clear()
    run_benchmark(FakeBackend("onnx"), None, config=fast, num_buffers=1, environment=env, sysfs_root=str(tmp_path), log=said.append)
    assert not any(line.startswith("warning: ") for line in said), f"other backends stay quiet: {said}"
