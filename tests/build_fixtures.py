"""Helpers shared by the build and device-build tests: CLI runner, refusal check, stand-in TensorRT, inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

import edgeres.trt
from edgeres.cli import cli
from edgeres.models import create_model
from tests.conftest import randomize_batchnorm


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def assert_refused(result: Result, out: Path, *needles: str) -> None:
    assert result.exit_code == 2, f"exit 2 expected, got {result.exit_code}: {result.output}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"one error line: {result.stderr!r}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} in {lines[0]!r}"
    assert not out.exists(), f"{out} must not be written"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "no temporary folder left"


def write_weights(path: Path) -> Path:
    """A seeded 1-channel ResNet-20 state dict with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = randomize_batchnorm(create_model("resnet20", in_channels=1))
    torch.save(model.state_dict(), path)
    return path


def build_fp16_bundle(out: Path, weights: Path) -> Result:
    """``edgeres build`` of ``weights`` for jetson-orin, FP16, batch 4..8 (TensorRT 10.3 default, 11.4.1 listed)."""
    result = run("build", "--target", "jetson-orin", "--arch", "resnet20", "--weights", str(weights),
                 "--precision", "fp16", "--batch", "4", "--max-batch", "8", "-o", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    return result


def fake_tensorrt(monkeypatch: pytest.MonkeyPatch, cc: tuple[int, int], build: object) -> None:
    """Replace the TensorRT adapter's entry points: TensorRT 10.3.0 importable, a GPU of ``cc``, ``build`` as build_engine."""
    class FakeTRT:
        __version__ = "10.3.0"

    monkeypatch.setattr(edgeres.trt, "require_tensorrt", lambda: FakeTRT, raising=False)
    monkeypatch.setattr(edgeres.trt, "local_compute_capability", lambda: cc, raising=False)
    monkeypatch.setattr(edgeres.trt, "build_engine", build, raising=False)
