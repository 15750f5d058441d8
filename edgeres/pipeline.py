"""The one front end: arch/weights/seed (or the shipped reference model) -> eval model -> folded model -> ONNX.

Every path from a PyTorch model to ONNX goes through here (``edgeres build``,
``edgeres calibrate``, ``edgeres export``, ``edgeres bench`` with no candidate,
the scripts in ``benchmarks/``), so the same arch, weights and seed give the
same ONNX bytes whichever command made them.

Steps, each a function named for what it makes from what:

* :func:`model_from_source`: arch + weights + seed -> :class:`ModelSource`
  (eval model, recipe, source description for manifests);
* :func:`example_input`: shape + seed -> the one example input batch;
* :func:`folded_from_model`: eval model + example -> BatchNorm-folded model;
* :func:`onnx_from_folded`: folded model + example -> checked ONNX file;
* :func:`front_end` / :func:`export_model`: the steps above in order.

The example input only traces Conv->BN pairs (fold) and feeds the ONNX-vs-PyTorch
parity check (export); the exported bytes do not depend on its values (the
exporter traces with zeros), which ``tests/test_pipeline.py`` checks.

torch is imported inside the functions, so importing this module stays light.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeres.calibrate.calibrators import DEFAULT_METHOD, DEFAULT_PERCENTILE
from edgeres.errors import ArchitectureError, BuildError, CalibrationError, DataError, EdgeresError
from edgeres.recipe import Recipe
from edgeres.tensorrt_version import DEFAULT_TENSORRT

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgeres._progress import PhaseProgress
    from edgeres.calibrate.api import CalibrationResult
    from edgeres.export import ExportReport

#: Largest seed: numpy's ``default_rng`` takes no negative seed and ``torch.manual_seed`` none above 2**64 - 1;
#: 32 bits is what both (and every user's habit) agree on.
MAX_SEED = 2**32 - 1
#: Batch of the example input (two samples, so batch-dependent bugs show in the parity check).
EXAMPLE_BATCH = 2


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """An eval-mode model with its recipe and a description of where it came from.

    Attributes:
        model: the eval-mode PyTorch module (not folded).
        recipe: its preprocessing (input size, channels, classes).
        source: ``{"arch", "weights", "weights_sha256"}`` as written in bundle manifests.
    """

    model: "nn.Module"
    recipe: Recipe
    source: dict[str, Any]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one sample: the model's input channels at the recipe's input size."""
        return (first_conv_channels(self.model), int(self.recipe.input_size[0]), int(self.recipe.input_size[1]))


@dataclasses.dataclass(frozen=True)
class FrontEnd:
    """What the front end made: the model, its folded copy, and the one example input."""

    loaded: ModelSource
    folded: "nn.Module"
    input_shape: tuple[int, int, int]
    example: "torch.Tensor"

    @property
    def recipe(self) -> Recipe:
        return self.loaded.recipe

    @property
    def source(self) -> dict[str, Any]:
        return self.loaded.source


def uses_reference(arch: str | None, weights: str | os.PathLike[str] | None) -> bool:
    """True when neither arch nor weights is given: the shipped reference model is meant."""
    return arch is None and weights is None


def reference_module() -> Any:
    """:mod:`edgeres.reference`, or BuildError when this install lacks the shipped reference model."""
    try:
        from edgeres import reference
    except ImportError as exc:
        raise BuildError(
            f"the shipped reference model is not available in this install ({exc}); "
            "pass --arch and --weights to build your own model"
        ) from exc
    return reference


def first_conv_channels(model: "nn.Module") -> int:
    """Input channels of the model's first convolution."""
    from torch import nn

    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ArchitectureError(f"{type(model).__name__} has no Conv2d; edgeres exports convolutional models")
    return int(conv.in_channels)


def _num_classes(model: "nn.Module") -> int | None:
    from torch import nn

    linear = next((m for m in reversed(list(model.modules())) if isinstance(m, nn.Linear)), None)
    return None if linear is None else int(linear.out_features)


def model_from_source(arch: str | None, weights: str | os.PathLike[str] | None = None, *, seed: int = 0) -> ModelSource:
    """The eval model, recipe and source description for ``arch`` (+ ``weights``).

    ``arch`` and ``weights`` both None: the shipped reference model. ``arch``
    without ``weights``: random initialization drawn from ``seed`` (reproducible;
    the global torch RNG is left as it was).

    Raises:
        ArchitectureError: ``weights`` without ``arch``, or an unknown arch.
        WeightsError: weights that do not fit ``arch``.
        BuildError: the reference model is meant but not installed.
    """
    from edgeres._io import sha256_file

    check_seed(seed)
    if uses_reference(arch, weights):
        reference = reference_module()
        weights_path = Path(reference.reference_weights_path())
        return ModelSource(reference.reference_model().eval(), reference.reference_recipe(), {
            "arch": "reference", "weights": weights_path.name, "weights_sha256": sha256_file(weights_path)
        })
    if arch is None:
        raise ArchitectureError("--weights needs --arch (the architecture the weights belong to)")
    import torch

    from edgeres.models import recipe_for
    from edgeres.weights import model_from_weights

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # random-init models (no weights) are reproducible too
        model = model_from_weights(arch, weights)
    recipe = recipe_for(arch, num_classes=_num_classes(model), in_channels=first_conv_channels(model))
    source: dict[str, Any] = {"arch": arch, "weights": None, "weights_sha256": None}
    if weights is not None:
        source.update(weights=Path(weights).name, weights_sha256=sha256_file(weights))
    return ModelSource(model.eval(), recipe, source)


def check_seed(seed: int) -> None:
    """EdgeresError unless ``seed`` is an integer in ``0..MAX_SEED``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise EdgeresError(f"seed must be an integer in 0..{MAX_SEED}, received {seed!r}")


def example_input(input_shape: tuple[int, int, int], seed: int = 0) -> "torch.Tensor":
    """The one example input: :data:`EXAMPLE_BATCH` image-like samples of ``input_shape`` drawn from ``seed``.

    Image-like (smooth fields plus noise, normalized; :func:`edgeres.export.realistic_inputs`)
    rather than white noise, so the parity check sees activations like real data's.
    """
    import torch

    from edgeres.export import realistic_inputs

    return torch.from_numpy(realistic_inputs((EXAMPLE_BATCH, *input_shape), seed=seed))


def folded_from_model(model: "nn.Module", example: "torch.Tensor") -> "nn.Module":
    """A BatchNorm-folded copy of the eval-mode ``model`` (pairs traced on ``example``)."""
    from edgeres.fold import fold_batchnorm

    return fold_batchnorm(model.eval(), example)


def onnx_from_folded(folded: "nn.Module", path: str | os.PathLike[str], example: "torch.Tensor", *,
                     batch: int | None = None, opset: int | None = None) -> "ExportReport":
    """Export ``folded`` to ``path`` (atomically), checked against PyTorch on ``example``.

    ``batch`` None: a symbolic batch axis; else a fixed batch of that size (the
    parity check then runs on the example's samples, cycled to ``batch``).
    """
    import torch

    from edgeres.export import DEFAULT_OPSET, export_onnx

    shape = (batch or 1, *example.shape[1:])
    check = example if batch is None else example[torch.arange(batch) % len(example)]
    return export_onnx(folded, path, shape, dynamic_batch=batch is None, opset=opset or DEFAULT_OPSET,
                       check_inputs=check.numpy())


def onnx_from_model(model: "nn.Module", path: str | os.PathLike[str], input_shape: tuple[int, int, int], *,
                    seed: int = 0, batch: int | None = None, opset: int | None = None) -> tuple["nn.Module", "ExportReport"]:
    """An eval model already in hand (trained, re-estimated, ...) -> (folded model, checked ONNX at ``path``).

    The same steps and the same seeded example input as :func:`export_model`, for
    models that do not come from an arch/weights pair.
    """
    example = example_input(tuple(input_shape), seed)
    folded = folded_from_model(model, example)
    return folded, onnx_from_folded(folded, path, example, batch=batch, opset=opset)


def front_end(arch: str | None, weights: str | os.PathLike[str] | None = None, *, seed: int = 0,
              input_size: int | None = None, fold: bool = True) -> FrontEnd:
    """arch/weights/seed -> model, recipe, source, folded model and the example input.

    Args:
        arch, weights, seed: see :func:`model_from_source`.
        input_size: square input side; the recipe's when None.
        fold: fold BatchNorm (False keeps the BN layers; ``folded`` is then the eval model itself).
    """
    loaded = model_from_source(arch, weights, seed=seed)
    c, h, w = loaded.input_shape
    shape = (c, input_size, input_size) if input_size else (c, h, w)
    example = example_input(shape, seed)
    folded = folded_from_model(loaded.model, example) if fold else loaded.model.eval()
    return FrontEnd(loaded, folded, shape, example)


def export_model(arch: str | None, weights: str | os.PathLike[str] | None, path: str | os.PathLike[str], *,
                 seed: int = 0, input_size: int | None = None, batch: int | None = None, opset: int | None = None,
                 fold: bool = True) -> tuple[FrontEnd, "ExportReport"]:
    """arch/weights/seed -> folded ONNX at ``path``: :func:`front_end`, then :func:`onnx_from_folded`."""
    from edgeres._io import check_not_input, check_writable_parent

    check_writable_parent(path)
    check_not_input(path, [weights])  # -o naming the weights would replace them
    made = front_end(arch, weights, seed=seed, input_size=input_size, fold=fold)
    return made, onnx_from_folded(made.folded, path, made.example, batch=batch, opset=opset)


def calibrate_model(
    arch: str | None,
    weights: str | os.PathLike[str] | None,
    calib_source: str | None,
    out_dir: str | os.PathLike[str],
    *,
    calib_size: int | None = None,
    eval_source: str | None = None,
    seed: int = 0,
    method: str = DEFAULT_METHOD,
    percentile: float = DEFAULT_PERCENTILE,
    trt_version: str = DEFAULT_TENSORRT,
    max_accuracy_drop: float | None = None,
    min_agreement: float | None = None,
    batch_size: int = 32,
    progress: "bool | PhaseProgress" = True,
    quantize_classifier: bool = False,
    force: bool = False,
    eval_size: int | str | None = None,
    check_source: str | None = None,
) -> "CalibrationResult":
    """Front end (``arch`` + ``weights``, or the reference model) -> ``out_dir/model.onnx`` -> :func:`calibrate`.

    With ``arch`` and ``weights`` None, the shipped reference model is used
    (``reference:calib`` / ``reference:test`` as default data). The calibration
    options are :func:`edgeres.calibrate.calibrate`'s, passed on as given.
    ``out_dir`` is one output folder (:func:`edgeres._io.output_dir`): staged
    whole and renamed into place once calibration succeeded, replacing only an
    earlier ``edgeres calibrate`` output (or any folder with ``force``), never
    one that holds an input. ``check_source``: deployment-camera images for
    :func:`calibrate`'s ``check_dataset``. Warnings of the front end (random weights,
    class folders that do not match the model's classes) go into the report's
    ``warnings``; the phases' times into its ``timing``.
    """
    from edgeres._interrupt import checkpoint
    from edgeres._io import check_output_folder, output_dir
    from edgeres._progress import as_progress
    from edgeres.calibrate.api import calibrate, check_options
    from edgeres.data import load_dataset

    reference = uses_reference(arch, weights)
    if weights is not None and arch is None:
        raise CalibrationError("--weights needs --arch (the architecture the weights belong to)")
    inputs = calibration_inputs(weights, calib_source, eval_source, check_source)
    out_dir = check_output_folder(out_dir, "calibrate", inputs=inputs, force=force)
    check_options(method, percentile, trt_version, max_accuracy_drop, min_agreement,
                  eval_source is not None or (reference and calib_source in (None, "reference:calib")), batch_size)
    if reference:
        calib_source = calib_source or "reference:calib"
        eval_source = eval_source or (None if calib_source != "reference:calib" else "reference:test")
    if calib_source is None:
        raise DataError("--calib-data is required with --arch (an image folder, .npy or .npz)")
    shown = as_progress(progress)
    with shown:
        with shown.phase("model (fold)", None, unit="steps"):
            made = front_end(arch, weights, seed=seed)
        checkpoint("calibrate:front_end")
        with shown.phase("data loading", calib_size, unit="images") as advance:
            dataset = load_dataset(calib_source, made.recipe, size=calib_size, seed=seed, progress=advance)
            eval_dataset = load_dataset(eval_source, made.recipe, progress=advance) if eval_source else None
            check_dataset = load_dataset(check_source, made.recipe, progress=advance) if check_source else None
        warnings = front_end_warnings(made.loaded, [d for d in (dataset, eval_dataset) if d is not None])
        with output_dir(out_dir, "calibrate", inputs=inputs, force=force) as staging:
            model_path = staging / "model.onnx"
            with shown.phase("export ONNX", None, unit="steps"):
                onnx_from_folded(made.folded, model_path, made.example)
            checkpoint("calibrate:model_onnx")
            result = calibrate(model_path, dataset, staging, method=method, percentile=percentile, trt_version=trt_version,
                               eval_dataset=eval_dataset, max_accuracy_drop=max_accuracy_drop, min_agreement=min_agreement,
                               batch_size=batch_size, progress=shown, quantize_classifier=quantize_classifier,
                               eval_size=eval_size, check_dataset=check_dataset, warnings=warnings,
                               phase_times={f"{k}_s": v for k, v in shown.times.items()})
    return _moved(result, staging, out_dir)


def calibration_inputs(weights: str | os.PathLike[str] | None, calib_source: str | None,
                       eval_source: str | None, check_source: str | None = None) -> tuple[str | os.PathLike[str], ...]:
    """The files and folders :func:`calibrate_model` reads: never inside its ``out_dir``."""
    from edgeres.data import source_path

    sources = (source_path(s) for s in (calib_source, eval_source, check_source) if s)
    return tuple(p for p in (weights, *sources) if p is not None)


def _moved(result: Any, old: Path, new: Path) -> Any:
    """``result`` with every path under ``old`` (a staging folder, now renamed) pointing under ``new``."""
    def move(value: Any) -> Any:
        if isinstance(value, Path) and (value == old or old in value.parents):
            return new / value.relative_to(old)
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value

    return dataclasses.replace(result, **{f.name: move(getattr(result, f.name)) for f in dataclasses.fields(result)})


def front_end_warnings(loaded: ModelSource, datasets: list[Any]) -> list[str]:
    """Warnings about the model and data the front end found: random weights, class folders vs classes."""
    out = []
    if loaded.source.get("arch") != "reference" and loaded.source.get("weights") is None:
        out.append(f"{loaded.source.get('arch')} has random weights (no --weights); fine for a dry run, not for deployment")
    classes = loaded.recipe.num_classes
    for data in datasets:
        found = getattr(data, "classes", None)
        if found is not None and classes is not None and len(found) != classes:
            out.append(f"{data.source} has {len(found)} class folders but the model has {classes} classes: "
                       "labels (folder order) will not match the model's outputs")
    return out
