"""edgeres.doctor.rules: each fake device diagnosed against bundles and plans, each problem with its fix."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgeres.doctor import rules as R
from edgeres.errors import BuildError, TensorRTUnavailableError
from tests.doctor_fixtures import DEVICES, agx_orin_jp512, manifest, sidecar


def _facts(name: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    return DEVICES[name]().facts(tmp_path)


def _checks(problems: list[R.Problem], severity: str = "error") -> list[str]:
    return [p.check for p in problems if p.severity == severity]


def plan(sc, bundle_dir: str | None = "BUNDLE") -> R.Subject:  # type: ignore[no-untyped-def]
    return R.Subject(kind="plan", path="BUNDLE/model.plan", sidecar=sc, bundle_dir=bundle_dir)


def bundle(m, allow_mismatch: bool = False) -> R.Subject:  # type: ignore[no-untyped-def]
    return R.Subject(kind="bundle", path="BUNDLE", manifest=m, bundle_dir="BUNDLE", allow_mismatch=allow_mismatch)


def test_release_table_rows() -> None:
    for l4t, jetpack, trt in (("35.4.1", "5.1.2", "8.5.2"), ("35.3.1", "5.1.1", "8.5.2"), ("36.3", "6.0", "8.6.2"),
                              ("36.4.0", "6.1", "10.3.0"), ("36.4.3", "6.2", "10.3.0"), ("32.7.1", "4.6.1", "8.2.1")):
        release = R.release_for_l4t(l4t)
        assert release is not None and (release.jetpack, release.tensorrt) == (jetpack, trt), f"L4T {l4t}: {release}"
    assert R.jetpack_for_l4t("99.1") is None, "an unknown L4T has no JetPack, not a guess"
    assert R.l4t_majors_for_tensorrt("8.6.2.3") == {36} and R.l4t_majors_for_tensorrt("8.5.2") == {35}, "TensorRT -> L4T"
    assert R.l4t_majors_for_kernel("5.10.120-tegra") == (34, 35) and R.l4t_majors_for_kernel("5.15.148-tegra") == (36,), "kernel"


def test_version_comparison_uses_all_four_parts() -> None:
    assert R.same_build("8.6.2.3", "8.6.2.3"), "identical"
    assert not R.same_build("8.6.2.3", "8.6.2.2"), "the build number differs: NVIDIA's policy says the plan does not load"
    assert not R.same_build("8.6.1.6", "8.6.2.3"), "patch differs"
    assert R.same_build("8.5.2.2", "8.5.2"), "a version known to three parts (libnvinfer8) compares on three"
    assert not R.same_build("10.3", "10.3.0.30"), "two parts are not enough to call a plan compatible"


def test_orin_jp512_is_ready(tmp_path: Path) -> None:
    facts = _facts("agx-orin-jp5.1.2", tmp_path)
    assert R.diagnose(facts, bundle(manifest())) == [], "JetPack 5.1.2 AGX Orin, MAXN, clocks on: nothing to fix"
    ok_plan = plan(sidecar(tensorrt_version="8.5.2.2"))
    assert R.diagnose(facts, ok_plan) == [], "a plan built by this TensorRT on this GPU"


def test_orin_jp60_warns_power_and_clocks(tmp_path: Path) -> None:
    problems = R.diagnose(_facts("agx-orin-jp6.0", tmp_path), plan(sidecar(tensorrt_version="8.6.2.3")))
    assert _checks(problems) == [] and _checks(problems, "warning") == ["power-mode", "clocks"], problems
    power = next(p for p in problems if p.check == "power-mode")
    assert "MODE_30W" in power.what and "sudo nvpmodel -m 0" in power.fix and "MAXN" in power.fix, power
    clocks = next(p for p in problems if p.check == "clocks")
    assert "jetson_clocks off" in clocks.what and "sudo jetson_clocks" in clocks.fix, clocks


def test_orin_jp62_refuses_an_older_plan(tmp_path: Path) -> None:
    problems = R.diagnose(_facts("agx-orin-jp6.2", tmp_path), plan(sidecar(tensorrt_version="8.6.2.3")))
    assert _checks(problems) == ["plan-tensorrt"], problems
    p = problems[0]
    assert p.line() == "plan built with TensorRT 8.6.2.3, this device has 10.3.0.30: run `edgeres compile BUNDLE`", p.line()
    loose = R.diagnose(_facts("agx-orin-jp6.2", tmp_path / "b"), plan(sidecar(tensorrt_version="10.3.0.30"), bundle_dir=None))
    assert loose == [], "the same build on the same GPU loads"
    build_differs = R.diagnose(_facts("agx-orin-jp6.2", tmp_path / "c"), plan(sidecar(tensorrt_version="10.3.0.26"), None))
    assert _checks(build_differs) == ["plan-tensorrt"] and "edgeres compile BUNDLE" in build_differs[0].fix, build_differs


def test_orin_jp62_checks_bundle_versions(tmp_path: Path) -> None:
    facts = _facts("agx-orin-jp6.2", tmp_path)
    older = manifest(tensorrt_versions=("8.5.2", "8.6.2"), tensorrt_version="8.6.2")
    problems = R.diagnose(facts, bundle(older))
    assert _checks(problems, "warning") == ["bundle-tensorrt"], problems
    assert "8.5.2, 8.6.2" in problems[0].what and "10.3.0.30" in problems[0].what, problems[0]
    qdq = manifest(precision="int8", int8_mode="qdq", files={"model.onnx": 1 << 20, "build.sh": 10})
    missing = R.diagnose(facts, bundle(qdq))
    assert _checks(missing) == ["bundle-tensorrt"] and "model.qdq.onnx" in missing[0].what, missing
    assert "--trt-version 10.3.0" in missing[0].fix and "--target jetson-orin" in missing[0].fix, missing[0].fix


def test_orin_nano_container_with_mismatched_tensorrt(tmp_path: Path) -> None:
    facts = _facts("orin-nano-container", tmp_path)
    problems = R.diagnose(facts)
    assert _checks(problems) == ["container"], problems
    assert problems[0].line().startswith("container TensorRT 8.6 on an L4T 35 host"), problems[0].line()
    assert "use a container built for L4T r35.x" in problems[0].fix, problems[0].fix
    dla = R.diagnose(facts, bundle(manifest(dla_core=1)))
    assert "dla" in _checks(dla), dla
    p = next(p for p in dla if p.check == "dla")
    assert p.what == "bundle needs DLA core 1, this device has no DLA" and "without --dla-core" in p.fix, p
    image = dataclasses.replace(facts, l4t="36.3.0")
    wrong_image = R.diagnose(image)
    assert _checks(wrong_image) == ["container"] and "image is for L4T r36.3.0" in wrong_image[0].what, wrong_image
    right = dataclasses.replace(facts, tensorrt="8.5.2.2", tensorrt_system="8.5.2.2")
    assert R.diagnose(right) == [], "a JetPack 5 TensorRT in the container on an L4T 35 host is fine"


def test_xavier_nx_wrong_gpu_and_power_mode(tmp_path: Path) -> None:
    facts = _facts("xavier-nx-jp5.1.2", tmp_path)
    problems = R.diagnose(facts, bundle(manifest()))
    assert _checks(problems) == ["gpu"], problems
    assert problems[0].what == "bundle is for sm_8.7 (jetson-orin), this GPU is sm_7.2", problems[0].what
    assert "--allow-mismatch" in problems[0].fix, problems[0].fix
    power = next(p for p in problems if p.check == "power-mode")
    assert "sudo nvpmodel -m 8" in power.fix and "MODE_20W_6CORE" in power.fix, "no MAXN: the highest-wattage mode"
    allowed = R.diagnose(facts, bundle(manifest(), allow_mismatch=True))
    assert _checks(allowed) == [] and "gpu" in _checks(allowed, "warning"), "--allow-mismatch downgrades it"
    dla = R.diagnose(facts, bundle(manifest(compute_capability=(7, 2), target="jetson-xavier-nx", dla_core=2)))
    assert next(p for p in dla if p.check == "dla").what == "bundle needs DLA core 2, this device has 2 DLA core(s), 0..1", dla


def test_nano_points_at_build_sh(tmp_path: Path) -> None:
    facts = _facts("nano-jp4.6.1", tmp_path)
    nano = manifest(target="jetson-nano", compute_capability=(5, 3), tensorrt_versions=("8.2.1",), tensorrt_version="8.2.1")
    problems = R.diagnose(facts, bundle(nano))
    assert _checks(problems) == ["python", "tensorrt"], problems
    first = problems[0]
    assert "JetPack 4.6.1 (L4T 32.7.1) ships Python 3.6 and TensorRT 8.2.1" in first.what, first.what
    assert "`BUNDLE/build.sh`" in first.fix and "trtexec" in first.fix, first.fix


def test_desktop_rtx(tmp_path: Path) -> None:
    facts = _facts("desktop-rtx4090", tmp_path)
    rtx = plan(sidecar(tensorrt_version="10.3.0.26", compute_capability=(8, 9), target="rtx40"), None)
    assert R.diagnose(facts, rtx) == [], "nvidia-smi's compute capability matches the plan; no Jetson checks"
    orin = R.diagnose(facts, plan(sidecar(tensorrt_version="10.3.0.26"), None))
    assert _checks(orin) == ["gpu"] and orin[0].what == "plan is for sm_8.7 (jetson-orin), this GPU is sm_8.9", orin
    from tests.doctor_fixtures import desktop_rtx4090

    facts2 = desktop_rtx4090(smi_only=False).facts(tmp_path / "cuda")
    assert facts2.compute_capability == (8, 9) and facts2.compute_capability_source.startswith("CUDA"), facts2


def test_bindings_beside_another_system_tensorrt(tmp_path: Path) -> None:
    facts = dataclasses.replace(agx_orin_jp512().facts(tmp_path), tensorrt="8.6.1.6")
    problems = R.diagnose(facts)
    assert _checks(problems) == ["tensorrt-bindings"], problems
    assert "8.6.1.6" in problems[0].what and "8.5.2.2" in problems[0].what and "pip uninstall tensorrt" in problems[0].fix, problems
    assert _checks(problems, "warning") == ["jetpack-tensorrt"], "not the TensorRT JetPack 5.1.2 ships"


def test_missing_bindings_on_jetpack5_python310(tmp_path: Path) -> None:
    facts = dataclasses.replace(agx_orin_jp512().facts(tmp_path), tensorrt=None,
                                tensorrt_error="TensorRT is not importable in this Python (No module named 'tensorrt')")
    problems = R.diagnose(facts)
    assert _checks(problems) == ["tensorrt"], problems
    assert "built for Python 3.8, this is Python 3.10" in problems[0].fix, problems[0].fix


def test_disk_and_memory(tmp_path: Path) -> None:
    facts = dataclasses.replace(agx_orin_jp512().facts(tmp_path), disk_free_bytes=150 << 20, mem_available_bytes=1 << 30)
    problems = R.diagnose(facts, bundle(manifest()))
    assert _checks(problems) == ["disk"], problems
    assert "150 MiB free" in problems[0].what and "264 MiB" in problems[0].what, "2 x 100 MiB ONNX + 64 MiB"
    memory = next(p for p in problems if p.check == "memory")
    assert "1024 MiB memory available" in memory.what and "--workspace 512" in memory.fix, memory


def test_preflight_refuses_in_one_line(tmp_path: Path) -> None:
    facts = _facts("orin-nano-container", tmp_path)
    with pytest.raises(R.PreflightError) as info:
        R.check_preflight(manifest(dla_core=1), facts, bundle="B")
    message = str(info.value)
    assert "\n" not in message and message.startswith("container TensorRT 8.6 on an L4T 35 host"), message
    assert "1 more: run `edgeres doctor B`" in message, "the other blocking problem is pointed at"
    assert isinstance(info.value, BuildError), "a BuildError, so the CLI's exit 2 applies"
    no_trt = dataclasses.replace(agx_orin_jp512().facts(tmp_path / "x"), tensorrt=None, tensorrt_error="No module named 'tensorrt'")
    with pytest.raises(TensorRTUnavailableError, match="JetPack"):
        R.check_preflight(manifest(), no_trt)
    warned = dataclasses.replace(agx_orin_jp512().facts(tmp_path / "y"), power_mode="MODE_15W", clocks={"cpu": False})
    R.check_preflight(manifest(), warned)  # power mode and clocks are warnings: compile goes ahead
    names = {p.check for p in R.preflight_problems(manifest(), warned)}
    assert not names & {"power-mode", "clocks", "memory"}, f"the preflight runs only build checks: {names}"


def test_fastest_power_mode_comes_from_the_modes_the_device_has(tmp_path: Path) -> None:
    from tests.doctor_fixtures import ORIN_NANO_MODES
    from edgeres.doctor.facts import parse_nvpmodel_conf

    base = _facts("agx-orin-jp6.2", tmp_path)
    super_modes = tuple(parse_nvpmodel_conf("< POWER_MODEL ID=0 NAME=15W >\n< POWER_MODEL ID=1 NAME=25W >\n"
                                            "< POWER_MODEL ID=2 NAME=MAXN_SUPER >\n< POWER_MODEL ID=3 NAME=7W >\n"))
    nano62 = dataclasses.replace(base, power_modes=super_modes, power_mode="25W", power_mode_id=1)
    [warning] = R.diagnose(nano62, only=("power-mode",))
    assert warning.fix.startswith("sudo nvpmodel -m 2") and "MAXN_SUPER" in warning.fix, warning.fix
    nano51 = dataclasses.replace(base, power_modes=tuple(parse_nvpmodel_conf(ORIN_NANO_MODES)), power_mode="15W", power_mode_id=0)
    assert R.diagnose(nano51, only=("power-mode",)) == [], "Orin Nano before JetPack 6.2: 15W is its fastest mode"
    unknown = dataclasses.replace(base, power_modes=(), power_mode="MODE_15W", power_mode_id=1)
    [w] = R.diagnose(unknown, only=("power-mode",))
    assert "/etc/nvpmodel.conf" in w.fix, "without the mode table the fix says where the modes are listed"
