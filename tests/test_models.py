"""The ResNet family: parameter counts, MACs against the paper, torchvision compatibility."""

from __future__ import annotations

import pytest
import torch

from edgeres.errors import ArchitectureError
from edgeres.info import model_info
from edgeres.models import MODELS, create_model, get_spec, list_models, recipe_for

IMAGENET_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}
# Paper, Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M (10 classes, option A).
CIFAR_PARAMS_M = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85, "resnet110": 1.7}
# Paper, Table 1: multiply-adds x1e9 at 224x224 (stride in the first 1x1 conv, "v1").
TABLE1_GMACS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", list(IMAGENET_PARAMS))
def test_imagenet_param_counts_exact(arch: str) -> None:
    count = n_params(create_model(arch))
    assert count == IMAGENET_PARAMS[arch], f"{arch}: {count:,} parameters, expected {IMAGENET_PARAMS[arch]:,}"


@pytest.mark.parametrize("arch", list(CIFAR_PARAMS_M))
def test_cifar_param_counts_match_table6(arch: str) -> None:
    count_m = n_params(create_model(arch)) / 1e6
    expected = CIFAR_PARAMS_M[arch]
    assert abs(count_m - expected) / expected < 0.03, f"{arch}: {count_m:.3f}M parameters, paper says {expected}M"


@pytest.mark.parametrize("arch", list(TABLE1_GMACS))
def test_macs_match_table1_with_v1_stride(arch: str) -> None:
    macs_g = model_info(create_model(arch, stride_in="v1"), (3, 224, 224)).macs / 1e9
    expected = TABLE1_GMACS[arch]
    assert abs(macs_g - expected) / expected < 0.03, f"{arch}: {macs_g:.3f} GMACs, Table 1 says {expected}"


def test_v15_moves_stride_into_3x3() -> None:
    v1 = create_model("resnet50", stride_in="v1")
    v15 = create_model("resnet50")
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1), "v1: stride in the 1x1"
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2), "v1.5: stride in the 3x3"
    assert n_params(v1) == n_params(v15), "stride placement must not change the parameter count"
    macs_v1 = model_info(v1, (3, 224, 224)).macs
    macs_v15 = model_info(v15, (3, 224, 224)).macs
    assert macs_v15 > macs_v1, f"v1.5 costs more MACs ({macs_v15}) than v1 ({macs_v1})"


@pytest.mark.parametrize("arch", list_models())
def test_forward_shape_and_options(arch: str) -> None:
    spec = get_spec(arch)
    size = 64 if spec.family == "imagenet" else 32
    model = create_model(arch, num_classes=7, in_channels=1)
    with torch.no_grad():
        out = model(torch.randn(2, 1, size, size))
    assert out.shape == (2, 7), f"{arch}: output shape {tuple(out.shape)}, expected (2, 7)"
    assert not model.training, f"{arch}: create_model must return an eval-mode model"


def test_cifar_option_a_is_parameter_free_and_b_projects() -> None:
    a = create_model("resnet20", shortcut="A")
    b = create_model("resnet20", shortcut="B")
    assert not list(a.layer2[0].downsample.parameters()), "option A shortcut must have no parameters"
    assert isinstance(b.layer2[0].downsample[0], torch.nn.Conv2d), "option B shortcut must be a 1x1 projection"
    assert n_params(b) > n_params(a), "option B adds projection parameters"
    x = torch.randn(1, 16, 8, 8)
    y = a.layer2[0].downsample(x)
    assert y.shape == (1, 32, 4, 4), f"option A output shape {tuple(y.shape)}"
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2]) and not y[:, 16:].any(), "option A: subsample, zero channels"


def test_unknown_architecture_suggests_close_names() -> None:
    with pytest.raises(ArchitectureError, match="did you mean .*resnet50") as info:
        create_model("resnet05")
    assert "known:" in str(info.value), "the error must list the known architectures"


@pytest.mark.parametrize(
    "kwargs, pattern",
    [({"stride_in": "v2"}, "stride_in must be one of"), ({"shortcut": "A"}, "takes no option 'shortcut'"), ({"num_classes": 0}, "at least 1")],
)
def test_bad_options_are_clear_errors(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ArchitectureError, match=pattern):
        create_model("resnet18", **kwargs)


def test_recipes_are_declarative() -> None:
    assert recipe_for("resnet50").input_size == (224, 224), "ImageNet models default to 224x224"
    assert recipe_for("resnet20").input_size == (32, 32), "CIFAR models default to 32x32"
    gray = recipe_for("resnet20", in_channels=1, num_classes=10)
    assert gray.in_channels == 1 and len(gray.mean) == 1, "grayscale recipes carry one mean/std"
    assert set(MODELS) == set(list_models()), "one registry"




def _torchvision_models():
    """``torchvision.models``, importable beside the CPU torch wheel.

    torchvision 0.28.0 (the release that pins torch==2.13.0) ships a ``_C.so`` linked
    against ``libtorch_cuda.so``, which the CPU torch build lacks, so its ops library does
    not load and ``torchvision/_meta_registrations.py`` fails on
    ``register_fake("torchvision::nms")`` (and ``qnms``): "operator torchvision::nms does
    not exist". The ResNet builders are pure Python and never call those ops, so defining
    the two schemas (as in torchvision's ``csrc/ops/nms.cpp``) lets the models import.
    """
    try:
        import torchvision  # noqa: F401
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        import sys

        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "FRAGMENT")
        _torchvision_models.keepalive = lib  # the schemas live as long as the Library object
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    except ImportError:
        pytest.skip("torchvision is not installed (it is in the dev extra)")
    import torchvision.models

    return torchvision.models


@pytest.mark.parametrize("arch", list(IMAGENET_PARAMS))
def test_torchvision_checkpoint_loads_strict_and_matches(arch: str) -> None:
    tv = _torchvision_models()
    torch.manual_seed(0)
    theirs = getattr(tv, arch)(weights=None).eval()
    ours = create_model(arch)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        diff = (ours(x) - theirs(x)).abs().max().item()
    assert diff == 0.0, f"{arch}: outputs differ from torchvision's by {diff}"
