"""ONNX export: names, opset, dynamic batch, parity with PyTorch, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgeres.errors import ExportError, OutputPathError
from edgeres.export import INPUT_NAME, OUTPUT_NAME, export_onnx, realistic_inputs
from edgeres.fold import fold_batchnorm
from edgeres.models import create_model
from tests.conftest import randomize_batchnorm


def _folded(arch: str) -> torch.nn.Module:
    return fold_batchnorm(randomize_batchnorm(create_model(arch)))


@pytest.mark.parametrize("arch, side", [("resnet18", 224), ("resnet20", 32)])
def test_export_dynamic_batch_names_and_parity(tmp_path: Path, arch: str, side: int) -> None:
    model = _folded(arch)
    path = tmp_path / "m.onnx"
    report = export_onnx(model, path, (1, 3, side, side))
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == [INPUT_NAME], "single input named 'input'"
    assert [o.name for o in proto.graph.output] == [OUTPUT_NAME], "single output named 'logits'"
    assert report.input_shape[0] == "batch" and report.output_shape[0] == "batch", f"dynamic batch: {report}"
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17, "opset >= 17"
    conv_names = [n.name for n in proto.graph.node if n.op_type == "Conv"]
    assert "/layer1/layer1.0/conv1/Conv" in conv_names, f"node names follow module names: {conv_names[:3]}"
    inits = {i.name for i in proto.graph.initializer}
    assert {"layer1.0.conv1.weight", "layer1.0.conv1.bias"} <= inits, "weights keep module names"
    assert not any(n.op_type in ("Identity", "BatchNormalization") for n in proto.graph.node), "plain graph"
    assert len(proto.graph.value_info) > 0, "shape inference must have run"
    assert report.cosine > 0.99999 and report.max_abs_error < 1e-3, f"parity: {report}"

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = realistic_inputs((5, 3, side, side), seed=3)
    (out,) = session.run(None, {INPUT_NAME: x})
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert out.shape == ref.shape, f"batch 5 output shape {out.shape}"
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max(), err_msg="ORT vs torch at batch 5")


def test_export_static_batch(tmp_path: Path) -> None:
    report = export_onnx(_folded("resnet20"), tmp_path / "s.onnx", (4, 3, 32, 32), dynamic_batch=False)
    assert report.input_shape == (4, 3, 32, 32), f"static shape expected, got {report.input_shape}"


def test_export_is_deterministic(tmp_path: Path) -> None:
    model = _folded("resnet20")
    export_onnx(model, tmp_path / "a.onnx", (1, 3, 32, 32))
    export_onnx(model, tmp_path / "b.onnx", (1, 3, 32, 32))
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes(), "same model -> same bytes"


def test_parity_failure_is_loud_and_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeres.export as export_mod

    monkeypatch.setattr(export_mod, "compare_onnx_with_torch", lambda *a: (5.0, 0.5))
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        export_onnx(_folded("resnet20"), tmp_path / "bad.onnx", (1, 3, 32, 32))
    assert list(tmp_path.iterdir()) == [], f"nothing may be left behind: {list(tmp_path.iterdir())}"


def test_interrupted_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Path, data: bytes) -> int:
        Path.write_text(self, "partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", boom)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(_folded("resnet20"), tmp_path / "m.onnx", (1, 3, 32, 32))
    assert list(tmp_path.iterdir()) == [], f"an interrupted export leaves nothing: {list(tmp_path.iterdir())}"


def test_missing_folder_and_training_mode(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="does not exist"):
        export_onnx(_folded("resnet20"), tmp_path / "nope" / "m.onnx", (1, 3, 32, 32))
    with pytest.raises(ExportError, match="eval mode"):
        export_onnx(create_model("resnet20").train(), tmp_path / "m.onnx", (1, 3, 32, 32))


def test_unwritable_folder() -> None:
    with pytest.raises(OutputPathError, match="cannot write"):
        export_onnx(_folded("resnet20"), "/sys/edgeres-test.onnx", (1, 3, 32, 32))
