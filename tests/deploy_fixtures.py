"""Bundles the deploy-config and serve tests share: built through the CLI on first use, once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeres.cli import cli

BUNDLES = {
    # the shipped reference model (1 channel): default INT8 (Q/DQ) build, batch 1
    "ref_int8": ["--target", "jetson-orin"],
    # the same model, FP32, batch profile 1..8 (opt 4)
    "ref_fp32": ["--target", "jetson-orin", "--precision", "fp32", "--batch", "4", "--max-batch", "8"],
    # INT8 by implicit calibration (calib.cache), TensorRT 10.3
    "ref_calib": ["--target", "jetson-orin", "--int8-mode", "calibrator", "--max-batch", "4", "--calib-size", "64"],
    # a 3-channel CIFAR ResNet-20 (random weights): per-channel std really differs
    "rgb_fp32": ["--target", "jetson-orin", "--arch", "resnet20", "--precision", "fp32", "--batch", "2", "--max-batch", "4"],
}


class Bundles:
    """``bundles[name]``: the bundle folder, built on first access."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __getitem__(self, name: str) -> Path:
        path = self.root / name
        if not (path / "manifest.json").is_file():
            result = CliRunner().invoke(cli, ["build", *BUNDLES[name], "-o", str(path)])
            assert result.exit_code == 0, f"building {name}: {result.output}"
        return path


@pytest.fixture(scope="session")
def deploy_bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    # one folder per session: every test module that imports this fixture reuses what is built
    root = tmp_path_factory.getbasetemp() / "deploy_bundles"
    root.mkdir(exist_ok=True)
    return Bundles(root)
