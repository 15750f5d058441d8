"""One registry of architectures: name -> builder plus declarative defaults."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable

from torch import nn

from edgeres.errors import ArchitectureError
from edgeres.models import cifar, resnet
from edgeres.recipe import CIFAR, IMAGENET, Recipe, recipe_for_channels


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What edgeres knows about one architecture.

    Attributes:
        name: registry name (``resnet50``).
        builder: one-line public builder.
        family: ``"imagenet"`` or ``"cifar"``.
        recipe: default preprocessing (input size, mean/std, classes).
        options: builder keyword options beyond classes/channels, with allowed values.
    """

    name: str
    builder: Callable[..., nn.Module]
    family: str
    recipe: Recipe
    options: dict[str, tuple[Any, ...]]


_IMAGENET_OPTIONS = {"stride_in": ("v1.5", "v1")}
_CIFAR_OPTIONS = {"shortcut": ("A", "B")}

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        *(
            ModelSpec(name, getattr(resnet, name), "imagenet", IMAGENET, _IMAGENET_OPTIONS)
            for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
        ),
        *(
            ModelSpec(name, getattr(cifar, name), "cifar", CIFAR, _CIFAR_OPTIONS)
            for name in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")
        ),
    ]
}


def list_models() -> list[str]:
    """Registry names, in registry order."""
    return list(MODELS)


def get_spec(arch: str) -> ModelSpec:
    """Look up an architecture, suggesting the closest names when unknown."""
    try:
        return MODELS[arch]
    except KeyError:
        close = difflib.get_close_matches(str(arch).lower(), list(MODELS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ArchitectureError(
            f"unknown architecture {arch!r}{hint} (known: {', '.join(MODELS)})"
        ) from None


def create_model(
    arch: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    **options: Any,
) -> nn.Module:
    """Build an architecture by name, in eval mode.

    Args:
        arch: registry name.
        num_classes: classifier width (the family's default if None).
        in_channels: input channels (the family's default if None).
        **options: family options, e.g. ``stride_in="v1"`` or ``shortcut="B"``.
    """
    spec = get_spec(arch)
    for key, value in options.items():
        if key not in spec.options:
            raise ArchitectureError(
                f"{arch} takes no option {key!r}; it takes {sorted(spec.options) or 'none'}"
            )
        if value not in spec.options[key]:
            raise ArchitectureError(
                f"{arch} option {key} must be one of {list(spec.options[key])}, received {value!r}"
            )
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if value is not None and value < 1:  # before the recipe, whose own check would say less
            raise ArchitectureError(f"{name} must be at least 1, received {value}")
    recipe = recipe_for(arch, num_classes=num_classes, in_channels=in_channels)
    model = spec.builder(num_classes=recipe.num_classes, in_channels=recipe.in_channels, **options)
    return model.eval()


def recipe_for(arch: str, *, num_classes: int | None = None, in_channels: int | None = None) -> Recipe:
    """The default preprocessing recipe of ``arch`` adapted to classes/channels."""
    spec = get_spec(arch)
    return recipe_for_channels(
        spec.recipe,
        in_channels if in_channels is not None else spec.recipe.in_channels,
        num_classes if num_classes is not None else spec.recipe.num_classes,
    )
