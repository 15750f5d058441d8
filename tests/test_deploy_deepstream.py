"""edgeres config deepstream: nvinfer keys, the engine name nvinfer builds, the calibration cache rule."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeres.cli import cli
from edgeres.deploy import deepstream
from edgeres.deploy.facts import facts_from_bundle
from edgeres.errors import DeployConfigError
from tests.deploy_fixtures import Bundles, deploy_bundles  # noqa: F401  (fixture)
from tests.deploy_golden import check_golden


def properties(config: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(comment_prefixes=("#",), interpolation=None)
    parser.read(config)
    assert parser.sections() == ["property"], f"one [property] group: {parser.sections()}"
    return parser["property"]


def test_engine_file_name_follows_nvdsinfer_model_builder() -> None:
    assert deepstream.engine_file_name("m.onnx", 8, "int8") == "m.onnx_b8_gpu0_int8.engine", "gpu0, int8"
    assert deepstream.engine_file_name("m.onnx", 1, "fp16", gpu_id=1) == "m.onnx_b1_gpu1_fp16.engine", "gpu id"
    assert deepstream.engine_file_name("m.onnx", 4, "fp32", dla_core=0) == "m.onnx_b4_dla0_fp32.engine", "DLA"
    with pytest.raises(DeployConfigError, match="precision"):
        deepstream.engine_file_name("m.onnx", 1, "best")


@pytest.mark.parametrize("name, mode, calib", [("ref_int8", 1, False), ("ref_fp32", 0, False), ("ref_calib", 1, True),
                                                ("rgb_fp32", 0, False)])
def test_config_keys_from_the_manifest(deploy_bundles: Bundles, tmp_path: Path, name: str, mode: int, calib: bool) -> None:
    bundle = deploy_bundles[name]
    manifest = json.loads((bundle / "manifest.json").read_text())
    out = tmp_path / "ds"
    result = CliRunner().invoke(cli, ["config", "deepstream", str(bundle), "-o", str(out)])
    assert result.exit_code == 0, f"config deepstream: {result.output}"
    p = properties(out / "config_infer_primary.txt")
    batch = manifest["max_batch"]
    precision = manifest["precision"]
    assert p["batch-size"] == str(batch), f"batch-size is the profile's max: {p['batch-size']}"
    assert p["network-mode"] == str(mode), f"network-mode {p['network-mode']} for {precision}"
    assert p["model-engine-file"] == f"{p['onnx-file']}_b{batch}_gpu0_{precision}.engine", \
        f"the name nvinfer builds: {p['model-engine-file']}"
    assert (out / p["onnx-file"]).is_file(), "the folded ONNX is in the folder"
    assert p["infer-dims"] == ";".join(map(str, manifest["input_shape"])), f"infer-dims {p['infer-dims']}"
    assert p["network-type"] == "1" and p["output-blob-names"] == manifest["output_name"], "classifier, output name"
    channels = manifest["input_shape"][0]
    assert p["model-color-format"] == ("2" if channels == 1 else "0"), f"GRAY/RGB for {channels} channels"
    assert ("int8-calib-file" in p) == calib, f"calibration cache only for implicit INT8: {dict(p)}"
    if calib:
        assert (out / p["int8-calib-file"]).read_text().startswith("TRT-"), "a TensorRT calibration cache"
    if manifest["source"]["arch"] == "reference":
        assert (out / p["labelfile-path"]).read_text().strip() == ";".join(str(i) for i in range(10)), "one ';' line"
    else:
        assert "labelfile-path" not in p, "no class names, no labels file"


def test_golden_config(deploy_bundles: Bundles, tmp_path: Path) -> None:
    result = deepstream.write_deepstream_config(facts_from_bundle(deploy_bundles["ref_int8"]), tmp_path / "ds")
    check_golden("deepstream_ref_int8.txt", result.config.read_text())


def test_batch_outside_the_profile_and_missing_onnx_are_refused(deploy_bundles: Bundles, tmp_path: Path) -> None:
    bundle = deploy_bundles["ref_fp32"]
    result = CliRunner().invoke(cli, ["config", "deepstream", str(bundle), "-o", str(tmp_path / "a"), "--batch", "9"])
    assert result.exit_code == 2 and "outside the engine's profile 1..8" in result.stderr, f"batch 9: {result.stderr}"
    assert not (tmp_path / "a").exists(), "nothing written on refusal"
    result = CliRunner().invoke(cli, ["config", "deepstream", str(deploy_bundles["ref_int8"]), "-o", str(tmp_path / "b"),
                                      "--trt-version", "11.4.1"])
    assert result.exit_code == 0, f"TensorRT 11 builds from the typed Q/DQ ONNX, which the bundle has: {result.output}"
    assert "model.qdq.fp16.onnx" in (tmp_path / "b" / "config_infer_primary.txt").read_text(), "typed ONNX for TRT 11"
