"""BatchNorm folding: the pure math, the model pass on ours, torchvision-layout and user models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeres.errors import FoldError
from edgeres.fold import fold_batchnorm, fuse_conv_bn_weights, relative_error
from edgeres.models import create_model, get_spec, list_models
from tests.conftest import randomize_batchnorm


def _conv_bn(bias: bool, affine: bool, dtype: torch.dtype = torch.float32) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=bias).to(dtype)
    bn = nn.BatchNorm2d(6, affine=affine).to(dtype)
    randomize_batchnorm(nn.Sequential(bn))
    return conv.eval(), bn.eval()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_fuse_conv_bn_weights_equals_conv_then_bn(bias: bool, affine: bool) -> None:
    conv, bn = _conv_bn(bias, affine)
    w, b = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                                bn.weight if affine else None, bn.bias if affine else None)
    x = torch.randn(3, 4, 9, 9)
    with torch.no_grad():
        expected = bn(conv(x))
        got = nn.functional.conv2d(x, w, b, padding=1)
    err = relative_error(expected, got)
    assert err < 1e-6, f"fused conv differs from conv->bn by {err:.2e} (bias={bias}, affine={affine})"


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_fuse_keeps_dtype(dtype: torch.dtype) -> None:
    conv, bn = _conv_bn(True, True, dtype)
    w, b = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
    assert w.dtype == dtype and b.dtype == dtype, f"fused dtypes {w.dtype}/{b.dtype}, expected {dtype}"


@pytest.mark.parametrize("arch", list_models())
def test_fold_every_registry_model(arch: str) -> None:
    model = randomize_batchnorm(create_model(arch), seed=1)
    size = 64 if get_spec(arch).family == "imagenet" else 32
    x = torch.randn(2, 3, size, size)
    folded = fold_batchnorm(model, x)
    left = [n for n, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert not left, f"{arch}: BatchNorm left after folding: {left[:3]}"
    with torch.no_grad():
        err = relative_error(model(x), folded(x))
    assert err < 1e-5, f"{arch}: folded outputs differ by relative error {err:.2e}"
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "the original model must be untouched"


def test_fold_keeps_module_names_for_onnx_mapping() -> None:
    folded = fold_batchnorm(randomize_batchnorm(create_model("resnet18")))
    keys = set(folded.state_dict())
    assert "layer1.0.conv1.weight" in keys and "layer1.0.conv1.bias" in keys, "conv names must survive folding"
    assert not any(".bn" in k for k in keys), "no BatchNorm parameters may remain"


class UserNet(nn.Module):
    """A user's own model: Conv->BN in a Sequential, a branch, data-dependent control flow."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.branch_conv = nn.Conv2d(8, 8, 1, bias=False)
        self.branch_norm = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if x.mean() > -100:  # data-dependent branch: torch.fx could not trace this
            x = x + torch.relu(self.branch_norm(self.branch_conv(x)))
        return self.head(x.mean((2, 3)))


def test_fold_user_model_with_control_flow() -> None:
    model = randomize_batchnorm(UserNet()).eval()
    x = torch.randn(2, 3, 16, 16)
    folded = fold_batchnorm(model, x)
    assert isinstance(folded.stem[1], nn.Identity) and isinstance(folded.branch_norm, nn.Identity), "both BNs folded"
    with torch.no_grad():
        err = relative_error(model(x), folded(x))
    assert err < 1e-5, f"user model folded with relative error {err:.2e}"


def test_training_mode_refused() -> None:
    with pytest.raises(FoldError, match="eval mode"):
        fold_batchnorm(create_model("resnet20").train())


class BNFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(x))


def test_bn_without_preceding_conv_is_an_error_unless_not_strict() -> None:
    model = randomize_batchnorm(BNFirst()).eval()
    with pytest.raises(FoldError, match="follow no convolution.*norm"):
        fold_batchnorm(model)
    kept = fold_batchnorm(model, strict=False)
    assert isinstance(kept.norm, nn.BatchNorm2d), "strict=False keeps an unfoldable BN"


class SharedConvOutput(nn.Module):
    """The conv output feeds the BN and, functionally, the residual: folding would be wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_conv_output_used_elsewhere_fails_the_numerical_check() -> None:
    model = randomize_batchnorm(SharedConvOutput()).eval()
    with pytest.raises(FoldError, match="disagrees with the original"):
        fold_batchnorm(model, torch.randn(2, 3, 8, 8))
