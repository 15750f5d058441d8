"""Preprocessing recipes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgeres.errors import DataError
from edgeres.recipe import IMAGENET, Recipe, recipe_for_channels


def test_preprocess_resize_crop_normalize() -> None:
    image = Image.new("RGB", (320, 240), (255, 0, 0))
    x = IMAGENET.preprocess(image)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32, f"CHW float32, got {x.shape} {x.dtype}"
    expected_r = (1.0 - IMAGENET.mean[0]) / IMAGENET.std[0]
    assert np.allclose(x[0], expected_r, atol=1e-5), "red channel normalized with ImageNet stats"


def test_grayscale_and_rgba_are_converted() -> None:
    gray = recipe_for_channels(IMAGENET, 1)
    x = gray.preprocess(Image.new("RGBA", (300, 300), (10, 20, 30, 0)))
    assert x.shape == (1, 224, 224), f"one channel, got {x.shape}"
    y = IMAGENET.preprocess(Image.new("L", (256, 256), 128))
    assert y.shape == (3, 224, 224), f"grayscale image expanded to RGB, got {y.shape}"


def test_round_trip_and_validation() -> None:
    recipe = Recipe(input_size=(28, 28), in_channels=1, resize=None, mean=(0.13,), std=(0.31,), num_classes=10)
    assert Recipe.from_dict(recipe.to_dict()) == recipe, "to_dict/from_dict round trip"
    with pytest.raises(DataError, match="unknown recipe field"):
        Recipe.from_dict({"size": 3})
    with pytest.raises(DataError, match="need 3 values"):
        Recipe(mean=(0.5,))


def test_uint8_nhwc_matches_pil_path() -> None:
    recipe = Recipe(input_size=(4, 4), resize=None)
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, size=(2, 4, 4, 3), dtype=np.uint8)
    fast = recipe.normalize_uint8_nhwc(batch)
    slow = np.stack([recipe.preprocess(Image.fromarray(b)) for b in batch])
    np.testing.assert_allclose(fast, slow, atol=1e-5, err_msg="uint8 array path equals the PIL path")
    with pytest.raises(DataError, match="expected uint8 NHWC"):
        recipe.normalize_uint8_nhwc(batch[:, :3])


# ---- issue 14: a recipe from a file is type-checked field by field -------------------------------

@pytest.mark.parametrize("data, needle", [
    ({"interpolation": "sinc"}, "interpolation"),
    ({"interpolation": 3}, "interpolation"),
    ({"input_size": [224]}, "input_size"),
    ({"input_size": "224"}, "input_size"),
    ({"input_size": [10**9, 10**9]}, "input_size"),
    ({"in_channels": True}, "in_channels"),
    ({"mean": ["a", "b", "c"]}, "mean"),
    ({"std": None}, "std"),
    ({"num_classes": 0}, "num_classes"),
    ({"resize": -1}, "resize"),
    ({"colour": 1}, "unknown recipe field"),
    ([1, 2], "must be an object"),
    ({"in_channels": 1}, "mean/std need 1 values"),
])
def test_from_dict_refuses_malformed_fields(data, needle: str) -> None:
    with pytest.raises(DataError, match=needle):
        Recipe.from_dict(data)


def test_from_dict_round_trips() -> None:
    assert Recipe.from_dict(IMAGENET.to_dict()) == IMAGENET, "to_dict -> from_dict is the identity"
    assert Recipe.from_dict({"resize": None}).resize is None, "resize null means no resize"
