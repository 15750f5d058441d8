"""Weights loading: formats, safety, readable mismatch errors."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from edgeres.errors import WeightsError
from edgeres.models import create_model
from edgeres.weights import guess_architecture, load_weights, model_from_weights, read_state_dict


@pytest.fixture(scope="module")
def r20_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return create_model("resnet20", num_classes=10).state_dict()


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "dataparallel"])
def test_pth_layouts_load(tmp_path: Path, r20_state: dict, wrap: str) -> None:
    obj: object = {
        "plain": r20_state,
        "state_dict": {"state_dict": r20_state, "epoch": 3},
        "model": {"model": r20_state, "optimizer": {}},
        "dataparallel": {"state_dict": {f"module.{k}": v for k, v in r20_state.items()}},
    }[wrap]
    path = tmp_path / "w.pth"
    torch.save(obj, path)
    model = model_from_weights("resnet20", path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, r20_state[k]), f"{wrap}: tensor {k} differs after loading"


def test_safetensors_load(tmp_path: Path, r20_state: dict) -> None:
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in r20_state.items()}, str(path))
    model = model_from_weights("resnet20", path)
    assert torch.equal(model.fc.weight, r20_state["fc.weight"]), "safetensors weights must load"


def test_classes_and_channels_follow_the_weights(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(create_model("resnet20", num_classes=4, in_channels=1).state_dict(), path)
    model = model_from_weights("resnet20", path)
    assert model.fc.out_features == 4 and model.conv1.in_channels == 1, "num_classes/in_channels from the weights"


class _Exploit:
    def __reduce__(self):  # noqa: D105 - executed only by an unsafe unpickler
        return (os.system, ("touch /tmp/edgeres-pwned",))


def test_arbitrary_pickle_is_refused_not_executed(tmp_path: Path) -> None:
    marker = Path("/tmp/edgeres-pwned")
    marker.unlink(missing_ok=True)
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Exploit()}, path)
    with pytest.raises(WeightsError, match="arbitrary unpickling"):
        read_state_dict(path)
    assert not marker.exists(), "the pickle payload must never run"


def test_truncated_and_foreign_files(tmp_path: Path, r20_state: dict) -> None:
    good = tmp_path / "good.pth"
    torch.save(r20_state, good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        read_state_dict(cut)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        read_state_dict(text)
    bad_st = tmp_path / "x.safetensors"
    bad_st.write_bytes(b"\x00" * 16)
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        read_state_dict(bad_st)
    with pytest.raises(WeightsError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pth")
    plain_pickle = tmp_path / "list.pth"
    with open(plain_pickle, "wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(WeightsError):
        read_state_dict(plain_pickle)


def test_weights_of_another_architecture_are_named(tmp_path: Path) -> None:
    path = tmp_path / "r34.pth"
    torch.save(create_model("resnet34", num_classes=10).state_dict(), path)
    with pytest.raises(WeightsError) as info:
        model_from_weights("resnet18", path)
    message = str(info.value)
    assert "unexpected" in message and "layer1.2.conv1.weight" in message, f"lists unexpected keys: {message}"
    assert "these weights look like resnet34" in message, f"names the fitting architecture: {message}"
    assert "\n" not in message, "one readable line"


def test_shape_mismatch_is_listed() -> None:
    model = create_model("resnet20")
    state = create_model("resnet20", shortcut="B").state_dict()
    guess = guess_architecture(state)
    assert guess == "resnet20", f"option-B weights still look like resnet20, got {guess}"
    bad = dict(model.state_dict())
    bad["conv1.weight"] = torch.zeros(16, 3, 5, 5)
    with pytest.raises(WeightsError, match=r"1 shape mismatch \(conv1.weight \(16, 3, 5, 5\) vs \(16, 3, 3, 3\)\)"):
        load_weights(model, bad, "resnet20")
