"""Preprocessing recipes: declarative data kept with a model.

Calibration, evaluation, benchmarking and the runtime all preprocess through
the same :class:`Recipe`, so they see the same pixels. This module imports
numpy and Pillow only (never torch), so the runtime can use it on a robot.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Sequence

import numpy as np

from edgeres._readers import Fields, shown
from edgeres.errors import DataError

# Pillow's Image.Resampling members, lower-cased (Pillow >= 9.1 documents these six)
INTERPOLATIONS = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")
MAX_INPUT_SIDE = 16384  # pixels; the recipe's sizes multiply into allocations
MAX_CHANNELS = 64
MAX_CLASSES = 1 << 20

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How raw images become model input (NCHW float32).

    Attributes:
        input_size: (height, width) fed to the model.
        in_channels: 3 for RGB, 1 for grayscale.
        resize: shorter side resized to this before the center crop; None to
            resize straight to ``input_size``.
        mean: per-channel mean on the 0..1 scale.
        std: per-channel standard deviation on the 0..1 scale.
        interpolation: Pillow resampling filter name.
        num_classes: classifier width.
    """

    input_size: tuple[int, int] = (224, 224)
    in_channels: int = 3
    resize: int | None = 256
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    num_classes: int = 1000

    def __post_init__(self) -> None:
        def integer(value: Any, lo: int, hi: int) -> bool:
            return isinstance(value, numbers.Integral) and not isinstance(value, bool) and lo <= value <= hi

        def numbers_ok(values: Any) -> bool:
            return isinstance(values, tuple) and all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in values)

        if not (isinstance(self.input_size, tuple) and len(self.input_size) == 2
                and all(integer(d, 1, MAX_INPUT_SIDE) for d in self.input_size)):
            raise DataError(f"recipe input_size must be (height, width) in 1..{MAX_INPUT_SIDE}, received {shown(self.input_size)}")
        if not integer(self.in_channels, 1, MAX_CHANNELS):
            raise DataError(f"recipe in_channels must be an integer in 1..{MAX_CHANNELS}, received {shown(self.in_channels)}")
        if self.resize is not None and not integer(self.resize, 1, MAX_INPUT_SIDE):
            raise DataError(f"recipe resize must be null or an integer in 1..{MAX_INPUT_SIDE}, received {shown(self.resize)}")
        if not (numbers_ok(self.mean) and numbers_ok(self.std)):
            raise DataError(f"recipe mean/std must be lists of finite numbers, received {shown(self.mean)} and {shown(self.std)}")
        if self.interpolation not in INTERPOLATIONS:
            raise DataError(f"recipe interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                            f"received {shown(self.interpolation)}")
        if not integer(self.num_classes, 1, MAX_CLASSES):
            raise DataError(f"recipe num_classes must be an integer in 1..{MAX_CLASSES}, received {shown(self.num_classes)}")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise DataError(
                f"recipe mean/std need {self.in_channels} values each, "
                f"received {len(self.mean)} and {len(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise DataError(f"recipe std must be positive, received {self.std}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one sample."""
        return (self.in_channels, *self.input_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples become lists)."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: Any, where: str = "recipe") -> "Recipe":
        """Inverse of :meth:`to_dict`, every field type-checked; unknown keys are an error (DataError)."""
        names = [f.name for f in dataclasses.fields(cls)]
        f = Fields(data, where, DataError)
        unknown = sorted(map(str, set(f.data) - set(names)))
        if unknown:
            raise DataError(f"{where}: unknown recipe field(s) {shown(unknown)}; expected some of {sorted(names)}")

        def number_list(name: str) -> Any:
            return f.check(name, lambda v: isinstance(v, list) and 1 <= len(v) <= MAX_CHANNELS and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v),
                f"a list of 1..{MAX_CHANNELS} finite numbers")

        kw: dict[str, Any] = {}
        if "input_size" in f.data:
            kw["input_size"] = f.int_list("input_size", 2, 1, MAX_INPUT_SIDE)
        if "in_channels" in f.data:
            kw["in_channels"] = f.int("in_channels", 1, MAX_CHANNELS)
        if "resize" in f.data:
            kw["resize"] = f.int("resize", 1, MAX_INPUT_SIDE, optional=True)
        for key in ("mean", "std"):
            if key in f.data:
                kw[key] = tuple(float(x) for x in number_list(key))
        if "interpolation" in f.data:
            kw["interpolation"] = f.str("interpolation", choices=INTERPOLATIONS)
        if "num_classes" in f.data:
            kw["num_classes"] = f.int("num_classes", 1, MAX_CLASSES)
        return cls(**kw)

    def replace(self, **changes: Any) -> "Recipe":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def preprocess(self, image: "Any") -> np.ndarray:
        """Pillow image -> float32 array (C, H, W), normalized."""
        from PIL import Image

        mode = "L" if self.in_channels == 1 else "RGB"
        if image.mode != mode:
            image = image.convert(mode)
        resample = getattr(Image.Resampling, self.interpolation.upper())
        h, w = self.input_size
        if self.resize is None:
            image = image.resize((w, h), resample)
        else:
            scale = self.resize / min(image.size)
            new_w = max(w, round(image.size[0] * scale))
            new_h = max(h, round(image.size[1] * scale))
            image = image.resize((new_w, new_h), resample)
            left = (new_w - w) // 2
            top = (new_h - h) // 2
            image = image.crop((left, top, left + w, top + h))
        array = np.asarray(image, dtype=np.float32) / 255.0
        if array.ndim == 2:
            array = array[:, :, None]
        return self.normalize_hwc(array)

    def normalize_hwc(self, array: np.ndarray) -> np.ndarray:
        """(H, W, C) on the 0..1 scale -> normalized float32 (C, H, W)."""
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(((array - mean) / std).transpose(2, 0, 1), dtype=np.float32)

    def normalize_uint8_nhwc(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) already at input size -> normalized float32 NCHW."""
        if batch.ndim != 4 or batch.shape[1:3] != tuple(self.input_size) or batch.shape[3] != self.in_channels:
            raise DataError(
                f"expected uint8 NHWC of shape (N, {self.input_size[0]}, {self.input_size[1]}, "
                f"{self.in_channels}), received {tuple(batch.shape)}"
            )
        mean = np.asarray(self.mean, dtype=np.float32) * 255.0
        std = np.asarray(self.std, dtype=np.float32) * 255.0
        out = (batch.astype(np.float32) - mean) / std
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


IMAGENET = Recipe()
CIFAR = Recipe(input_size=(32, 32), in_channels=3, resize=None, mean=CIFAR_MEAN, std=CIFAR_STD, num_classes=10)


def recipe_for_channels(recipe: Recipe, in_channels: int, num_classes: int | None = None) -> Recipe:
    """Adapt a recipe's channel count (grayscale uses the mean of the RGB statistics)."""
    changes: dict[str, Any] = {}
    if in_channels != recipe.in_channels:
        mean: Sequence[float] = recipe.mean
        std: Sequence[float] = recipe.std
        if in_channels == 1:
            changes.update(mean=(float(np.mean(mean)),), std=(float(np.mean(std)),))
        else:
            changes.update(mean=(float(np.mean(mean)),) * in_channels, std=(float(np.mean(std)),) * in_channels)
        changes["in_channels"] = in_channels
    if num_classes is not None:
        changes["num_classes"] = num_classes
    return recipe.replace(**changes) if changes else recipe
