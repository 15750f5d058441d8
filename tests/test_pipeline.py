"""edgeres.pipeline: the one front end from arch/weights/seed to folded ONNX, shared by every command."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeres import pipeline
from tests.build_fixtures import run, write_weights

CALIBRATE_DIR = Path(pipeline.__file__).parent / "calibrate"
FORBIDDEN_IN_CALIBRATE = ("torch", "edgeres.models", "edgeres.weights", "edgeres.fold", "edgeres.reference")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_weights(tmp_path_factory.mktemp("w") / "resnet20.pth")


def test_build_export_and_calibrate_write_the_same_onnx(tmp_path: Path, weights: Path) -> None:
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).integers(0, 256, (16, 32, 32, 1), dtype=np.uint8))
    common = ["--arch", "resnet20", "--weights", str(weights)]
    results = {
        "build": run("build", "--target", "jetson-orin", *common, "--precision", "fp16", "-o", str(tmp_path / "b")),
        "export": run("export", *common, "-o", str(tmp_path / "e.onnx")),
        "calibrate": run("calibrate", *common, "--calib-data", str(calib), "--quiet", "-o", str(tmp_path / "c")),
    }
    for name, result in results.items():
        assert result.exit_code == 0, f"{name}: {result.output}{result.stderr}"
    onnx = {
        "build": (tmp_path / "b" / "model.onnx").read_bytes(),
        "export": (tmp_path / "e.onnx").read_bytes(),
        "calibrate": (tmp_path / "c" / "model.onnx").read_bytes(),
    }
    assert onnx["build"] == onnx["export"] == onnx["calibrate"], \
        f"one front end, one ONNX: sizes {({k: len(v) for k, v in onnx.items()})}"


def test_random_init_is_seeded_and_shared_by_build_and_export(tmp_path: Path) -> None:
    build = run("build", "--target", "jetson-orin", "--arch", "resnet20", "--precision", "fp16", "-o", str(tmp_path / "b"))
    assert build.exit_code == 0, build.output + build.stderr
    for seed in ("0", "3"):
        result = run("export", "--arch", "resnet20", "--seed", seed, "-o", str(tmp_path / f"s{seed}.onnx"))
        assert result.exit_code == 0, result.output + result.stderr
    assert (tmp_path / "b" / "model.onnx").read_bytes() == (tmp_path / "s0.onnx").read_bytes(), \
        "build (seed 0) and export --seed 0 of a random-init model agree"
    assert (tmp_path / "s0.onnx").read_bytes() != (tmp_path / "s3.onnx").read_bytes(), "another seed, other weights"


def test_model_from_source_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    one = pipeline.model_from_source("resnet20", seed=7)
    after = torch.rand(3)
    two = pipeline.model_from_source("resnet20", seed=7)
    assert torch.equal(after, expected), "the global torch RNG continues as if the model had not been made"
    w1, w2 = one.model.conv1.weight, two.model.conv1.weight
    assert torch.equal(w1, w2), "the same seed gives the same random weights"
    assert one.source == {"arch": "resnet20", "weights": None, "weights_sha256": None}, one.source
    assert one.input_shape == (3, 32, 32) and one.recipe.num_classes == 10, (one.input_shape, one.recipe)


def test_recipe_follows_the_checkpoint(weights: Path) -> None:
    loaded = pipeline.model_from_source("resnet20", weights)
    assert loaded.input_shape == (1, 32, 32), f"channels from the weights: {loaded.input_shape}"
    assert loaded.source["weights"] == weights.name and len(loaded.source["weights_sha256"]) == 64, loaded.source
    from edgeres.errors import ArchitectureError

    with pytest.raises(ArchitectureError, match="--weights needs --arch"):
        pipeline.model_from_source(None, weights)


def test_one_seeded_example_input() -> None:
    a = pipeline.example_input((1, 28, 28), seed=0)
    assert a.shape == (pipeline.EXAMPLE_BATCH, 1, 28, 28) and a.dtype == torch.float32, (a.shape, a.dtype)
    assert torch.equal(a, pipeline.example_input((1, 28, 28), seed=0)), "same seed, same example"
    assert not torch.equal(a, pipeline.example_input((1, 28, 28), seed=1)), "another seed, another example"


def test_onnx_bytes_do_not_depend_on_the_example_values(tmp_path: Path, weights: Path) -> None:
    """Why one example input could replace the four different ones without changing any ONNX."""
    loaded = pipeline.model_from_source("resnet20", weights)
    paths = []
    for seed, example in ((0, pipeline.example_input(loaded.input_shape, 0)),
                          (1, torch.randn(4, *loaded.input_shape, generator=torch.Generator().manual_seed(9)))):
        folded = pipeline.folded_from_model(loaded.model, example)
        paths.append(tmp_path / f"{seed}.onnx")
        pipeline.onnx_from_folded(folded, paths[-1], example)
    assert paths[0].read_bytes() == paths[1].read_bytes(), "fold and export trace structure only; the bytes agree"


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_calibrate_package_imports_no_model_code() -> None:
    files = sorted(CALIBRATE_DIR.glob("*.py"))
    assert files, f"no sources found under {CALIBRATE_DIR}"
    for path in files:
        bad = sorted(m for m in _imported_modules(path)
                     if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_IN_CALIBRATE))
        assert not bad, f"{path.name} imports {bad}: edgeres.calibrate works on ONNX and data only"
    code = ("import sys, edgeres.calibrate, edgeres.calibrate.api, edgeres.calibrate.cache; "
            "print(sorted(m for m in ('torch', 'edgeres.models', 'edgeres.fold', 'edgeres.weights') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"importing edgeres.calibrate loads model code: {out}"


def test_old_calibrate_model_name_warns() -> None:
    import edgeres.calibrate

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        moved = edgeres.calibrate.calibrate_model
    assert moved is pipeline.calibrate_model, "the old name is the pipeline function"
    assert any(issubclass(w.category, DeprecationWarning) for w in caught), "and it warns"


def test_static_batch_export_checks_on_the_example_cycled(tmp_path: Path, weights: Path) -> None:
    import onnx

    made, report = pipeline.export_model("resnet20", weights, tmp_path / "s.onnx", batch=3)
    dims = [d.dim_value for d in onnx.load(str(tmp_path / "s.onnx")).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [3, *made.input_shape], f"fixed batch 3: {dims}"
    assert report.cosine > 0.99999, f"checked against PyTorch on 3 samples: {report}"


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True])
def test_seeds_numpy_and_torch_cannot_both_take_are_refused(seed) -> None:
    from edgeres.errors import EdgeresError

    with pytest.raises(EdgeresError, match="seed must be an integer in 0..4294967295"):
        pipeline.model_from_source("resnet18", seed=seed)
