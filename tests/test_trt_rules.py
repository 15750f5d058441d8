"""edgeres.trt_rules: the rule table (data with sources), its checks, its listing, and compile choosing per version.

Compile runs with the TensorRT adapter's entry points replaced (a stand-in whose
``__version__`` is the version under test, as ``tensorrt/__init__.py`` of each
release sets it); what these tests prove is edgeres' choice of file and refusals,
not TensorRT's behaviour.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import edgeres.trt
from edgeres.bundle import make_bundle
from edgeres.calibrate.qdq import WEIGHT_FORM_RULES
from edgeres.errors import BuildError
from edgeres.trt_rules import CHECKS, RULES, SEVERITIES, RuleContext, all_rules, check_rules, rules_table, violations
from tests.build_fixtures import run

ROOT = Path(__file__).resolve().parents[1]
OK = RuleContext(trt_version="10.3.0", precision="int8", int8_mode="qdq", compute_capability=(8, 7))

# rule id -> (a context that breaks it, the same build made right)
CASES = {
    "int8-fast-path": (dataclasses.replace(OK, trt_version="8.2.1", compute_capability=(5, 3)),
                       dataclasses.replace(OK, trt_version="8.2.1", precision="fp16", int8_mode=None, compute_capability=(5, 3))),
    "edgeres-needs-8.5": (dataclasses.replace(OK, trt_version="8.2.1", precision="fp16", int8_mode=None, stage="compile"),
                          dataclasses.replace(OK, trt_version="8.2.1", precision="fp16", int8_mode=None, stage="build")),
    "onnx-opset-8.2": (dataclasses.replace(OK, trt_version="8.2.1", opset=17), dataclasses.replace(OK, trt_version="8.2.1", opset=13)),
    "calibration-cache": (dataclasses.replace(OK, trt_version="8.2.1", int8_mode="calibrator"),
                          dataclasses.replace(OK, trt_version="8.5.2", int8_mode="calibrator")),
    "strongly-typed-11": (dataclasses.replace(OK, trt_version="11.4.1", int8_mode="calibrator"),
                          dataclasses.replace(OK, trt_version="11.4.1")),
    "dla-available": (dataclasses.replace(OK, trt_version="11.1.0", precision="fp16", int8_mode=None, dla_core=0),
                      dataclasses.replace(OK, trt_version="11.4.1", precision="fp16", int8_mode=None, dla_core=0)),
    "dla-precision": (dataclasses.replace(OK, precision="fp32", int8_mode=None, dla_core=0),
                      dataclasses.replace(OK, precision="fp16", int8_mode=None, dla_core=0)),
    "dla-static-shapes": (dataclasses.replace(OK, int8_mode="calibrator", dla_core=0, max_batch=8),
                          dataclasses.replace(OK, int8_mode="calibrator", dla_core=0, min_batch=8, opt_batch=8, max_batch=8)),
    "dla-implicit-int8": (dataclasses.replace(OK, trt_version="8.6.2", dla_core=1),
                          dataclasses.replace(OK, trt_version="8.6.2", int8_mode="calibrator", dla_core=1)),
}


def test_every_rule_is_data_with_a_range_and_a_source() -> None:
    ids = [r.id for r in all_rules()]
    assert len(ids) == len(set(ids)), f"rule ids are unique: {ids}"
    for rule in all_rules():
        assert rule.severity in SEVERITIES, f"{rule.id}: severity {rule.severity}"
        assert rule.source and rule.fix and rule.rule, f"{rule.id} names its rule, fix and source"
        if rule.since and rule.until:
            assert rule.since < rule.until, f"{rule.id}: empty range {rule.since}..{rule.until}"
    assert set(CHECKS) <= {r.id for r in RULES}, f"checks without a rule: {set(CHECKS) - {r.id for r in RULES}}"
    assert set(CASES) == set(CHECKS), f"every checked rule has a case here: {set(CHECKS) ^ set(CASES)}"


def test_weight_form_rules_come_from_the_qdq_table() -> None:
    listed = {r.id: r for r in all_rules()}
    for form in WEIGHT_FORM_RULES:
        rule = listed[f"qdq-weights-{form.form}"]
        assert (rule.since, rule.until) == (form.trt_min, form.trt_max), f"{rule.id} range is the qdq table's"
        assert form.file_name in rule.rule and rule.source == form.source, f"{rule.id} names the file and the source"


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_a_violated_rule_is_one_line_naming_it_and_the_fix(rule_id: str) -> None:
    bad, good = CASES[rule_id]
    found = [v for v in violations(bad) if v.rule.id == rule_id]
    assert found, f"{rule_id} is violated by {bad}"
    line = found[0].line()
    assert line.startswith(f"rule {rule_id}: ") and found[0].rule.fix in line and "\n" not in line, line
    assert not [v for v in violations(good) if v.rule.id == rule_id], f"{rule_id} holds for {good}"
    if found[0].severity == "error":
        with pytest.raises(BuildError, match=f"^rule {re.escape(rule_id)}: "):
            check_rules(bad)


def test_rules_apply_only_within_their_versions() -> None:
    dla_qdq = dataclasses.replace(OK, trt_version="8.6.2", dla_core=0)
    ids = {v.rule.id for v in violations(dla_qdq)}
    assert "dla-implicit-int8" in ids and "dla-qdq-placement-11" not in ids, f"8.6 DLA: implicit only: {ids}"
    ids11 = {v.rule.id for v in violations(dataclasses.replace(dla_qdq, trt_version="11.4.1"))}
    assert not ids11, f"11.4 DLA INT8 is Q/DQ (the DLA placement), nothing refuses it: {ids11}"
    placement = next(r for r in RULES if r.id == "dla-qdq-placement-11")
    assert placement.severity == "info" and placement.covers("11.4.1") and not placement.covers("10.3.0"), placement
    assert "model.qdq.dla.fp16.onnx" in placement.fix and "target_dla" in placement.rule + placement.source, placement


def test_dla_int8_mode_follows_the_two_dla_rules() -> None:
    from edgeres.trt_rules import dla_int8_mode

    modes = {v: dla_int8_mode(v) for v in ("8.5.2", "8.6.2", "10.3.0", "10.7.0", "11.4.1")}
    assert modes == {"8.5.2": "calibrator", "8.6.2": "calibrator", "10.3.0": "calibrator", "10.7.0": "calibrator",
                     "11.4.1": "qdq"}, f"implicit before 11, the DLA Q/DQ model from 11: {modes}"
    assert not violations(OK), f"a plain GPU INT8 build on 10.3 breaks nothing: {violations(OK)}"


def test_rules_are_listed_by_the_cli_and_in_the_docs() -> None:
    result = run("targets", "--rules")
    assert result.exit_code == 0, result.output + result.stderr
    docs = (ROOT / "docs" / "targets.md").read_text(encoding="utf-8")
    for row in rules_table():
        assert f"{row['id']}  [TensorRT {row['versions']}" in result.output, f"{row['id']} listed: {result.output[:400]}"
        assert row["source"] in result.output, f"{row['id']} source listed"
        assert f"`{row['id']}`" in docs, f"docs/targets.md lists rule {row['id']}"


def test_targets_say_old_jetsons_finish_with_build_sh() -> None:
    result = run("targets")
    assert result.exit_code == 0, result.output + result.stderr
    line = next((x for x in result.output.splitlines() if "build.sh" in x), "")
    assert "jetson-nano" in line and "jetson-tx2" in line and "TensorRT >= 8.5" in line, f"old Jetsons: {result.output[-600:]}"


# ---- compile picks the file of the device's TensorRT ------------------------------------------------

FIELDS = dict(
    target="jetson-orin", compute_capability=(8, 7), precision="int8", int8_mode="qdq", input_name="input",
    output_name="logits", input_shape=(1, 28, 28), min_batch=1, opt_batch=1, max_batch=8, workspace_mib=1024,
    dla_core=None, gpu_fallback=True, tensorrt_version="10.3.0", tensorrt_versions=("8.5.2", "8.6.2", "10.3.0"),
    recipe=None, source={"arch": "resnet20"}, edgeres_version="0.1.0",
    onnx_for={"8.5.2": "model.qdq.trt8.onnx", "8.6.2": "model.qdq.trt8.onnx", "10.3.0": "model.qdq.onnx"},
)


def _stand_in(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    class FakeTRT:  # tensorrt/__init__.py sets __version__ to the release string
        __version__ = version

    monkeypatch.setattr(edgeres.trt, "require_tensorrt", lambda: FakeTRT, raising=False)
    monkeypatch.setattr(edgeres.trt, "local_compute_capability", lambda: (8, 7), raising=False)


def _bundle(tmp_path: Path, extra_files: tuple[str, ...] = (), **fields: object) -> tuple[Path, object]:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("model.onnx", "model.qdq.onnx", "model.qdq.trt8.onnx", *extra_files):
        (src / name).write_bytes(name.encode())
    (src / "calib.cache").write_text("TRT-100300-EntropyCalibration2\ninput: 3c010a14\n")
    manifest = make_bundle(tmp_path / "b", {p.name: p for p in src.iterdir()}, {**FIELDS, **fields}, "#!/bin/sh\n")
    return tmp_path / "b", manifest


@pytest.mark.parametrize("version", ["8.5.2", "8.6.2", "10.3.0"])
def test_compile_builds_the_file_the_manifest_names_for_the_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     version: str) -> None:
    from edgeres.device_build import settings_for_bundle

    folder, manifest = _bundle(tmp_path)
    _stand_in(monkeypatch, version)
    settings = settings_for_bundle(folder, manifest)
    assert Path(settings.onnx_path).name == manifest.onnx_for[version], f"TensorRT {version}: {settings.onnx_path}"


def test_compile_on_11_with_dla_builds_the_dla_qdq_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A DLA bundle (manifest int8_mode calibrator for 8.5-10.x) compiled by TensorRT 11.4: the DLA Q/DQ file, mode qdq."""
    from edgeres.device_build import settings_for_bundle

    files = {"11.4.1": "model.qdq.dla.fp16.onnx", "10.3.0": "model.onnx"}
    folder, manifest = _bundle(tmp_path, dla_core=0, max_batch=1, int8_mode="calibrator",
                               tensorrt_versions=("10.3.0", "11.4.1"), onnx_for=files,
                               extra_files=("model.qdq.dla.fp16.onnx",))
    for version, name in files.items():
        _stand_in(monkeypatch, version)
        settings = settings_for_bundle(folder, manifest)
        assert Path(settings.onnx_path).name == name == manifest.onnx_for[version], f"TensorRT {version}: {settings.onnx_path}"
        assert settings.int8_mode == ("qdq" if version == "11.4.1" else "calibrator"), f"{version}: {settings.int8_mode}"


def test_compile_refuses_rules_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeres.device_build import settings_for_bundle

    folder, manifest = _bundle(tmp_path, dla_core=0, max_batch=1)
    _stand_in(monkeypatch, "10.3.0")
    with pytest.raises(BuildError, match="^rule dla-implicit-int8: "):
        settings_for_bundle(folder, manifest)  # an old DLA bundle made with Q/DQ
    with pytest.raises(BuildError, match="^rule dla-static-shapes: "):
        settings_for_bundle(folder, dataclasses.replace(manifest, int8_mode="calibrator", max_batch=8))
    _stand_in(monkeypatch, "8.2.1")
    with pytest.raises(BuildError, match="^rule edgeres-needs-8.5: .*build.sh"):
        settings_for_bundle(folder, dataclasses.replace(manifest, dla_core=None))
