"""The facts every deployment config is written from, read from a bundle and never typed by hand.

Sources, in order: the plan sidecar (``model.plan.json``: the engine's own I/O
and optimization profile) where the bundle holds a compiled engine, else the
bundle manifest (``manifest.json``: input name and shape, batch range, recipe)
with the output width from the recipe (or the ONNX graph when the manifest has
no recipe). Every file is verified against its sha256 first
(:func:`edgeres.bundle.verify_bundle`), so a config is never written for a
bundle that changed in transfer.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

from edgeres.errors import DeployConfigError

PLAN_NAME = "model.plan"
# the shipped reference model classifies handwritten digits: class i is the digit i
REFERENCE_CLASS_NAMES = tuple(str(i) for i in range(10))


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One engine tensor: name, numpy dtype name, dims of one sample (no batch axis)."""

    name: str
    dtype: str
    dims: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class DeployFacts:
    """What a bundle's engine takes and gives, and how its inputs are made."""

    bundle: Path
    target: str
    precision: str
    int8_mode: str | None
    tensorrt_version: str
    input: Tensor
    output: Tensor
    min_batch: int
    opt_batch: int
    max_batch: int
    recipe: Any  # edgeres.recipe.Recipe | None
    class_names: tuple[str, ...] | None
    files: tuple[str, ...]
    dla_core: int | None
    source: str  # "sidecar" or "manifest"

    @property
    def has_plan(self) -> bool:
        return PLAN_NAME in self.files


def read_labels(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Class names, one per line (blank lines ignored)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeployConfigError(f"cannot read labels {path}: {exc}") from exc
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise DeployConfigError(f"labels file {path} is empty; expected one class name per line")
    bad = [n for n in names if ";" in n]
    if bad:
        raise DeployConfigError(f"class names may not contain ';' (nvinfer's label separator): {bad[:3]}")
    return names


def _output_width_from_onnx(path: Path) -> tuple[str, tuple[int, ...]]:
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    out = model.graph.output[0]
    dims = tuple(d.dim_value for d in out.type.tensor_type.shape.dim)[1:]
    if not dims or any(d <= 0 for d in dims):
        raise DeployConfigError(f"{path}: output {out.name!r} has unknown dims {dims}; cannot write a config")
    return out.name, dims


def facts_from_bundle(bundle: str | os.PathLike[str], labels: str | os.PathLike[str] | None = None) -> DeployFacts:
    """Verify ``bundle`` and collect its deployment facts.

    Args:
        bundle: an ``edgeres build`` folder (deploy bundle, or one with a compiled ``model.plan``).
        labels: class names, one per line; the reference model's digits are known without it.

    Raises:
        BundleError: missing or changed files. DeployConfigError: facts that do not fit together.
    """
    from edgeres.bundle import verify_bundle
    from edgeres.recipe import Recipe
    from edgeres.sidecar import read_sidecar

    folder = Path(bundle)
    m = verify_bundle(folder)
    recipe = Recipe.from_dict(dict(m.recipe)) if m.recipe else None
    files = tuple(sorted(p.name for p in folder.iterdir() if p.is_file()))
    sidecar = read_sidecar(folder / PLAN_NAME) if (folder / PLAN_NAME).is_file() else None
    if sidecar is not None:
        if len(sidecar.inputs) != 1 or len(sidecar.outputs) != 1:
            raise DeployConfigError(f"{folder}: configs are written for one input and one output, the plan has "
                                    f"{len(sidecar.inputs)} and {len(sidecar.outputs)}")
        i, o = sidecar.inputs[0], sidecar.outputs[0]
        inp = Tensor(i.name, i.dtype, tuple(i.shape[1:]))
        out = Tensor(o.name, o.dtype, tuple(o.shape[1:]))
        lo, opt, hi, source = sidecar.min_batch, sidecar.opt_batch, sidecar.max_batch, "sidecar"
    else:
        inp = Tensor(m.input_name, "float32", tuple(m.input_shape))
        if recipe is not None:
            out = Tensor(m.output_name, "float32", (recipe.num_classes,))
        else:
            name, dims = _output_width_from_onnx(folder / "model.onnx")
            out = Tensor(name, "float32", dims)
        lo, opt, hi, source = m.min_batch, m.opt_batch, m.max_batch, "manifest"
    if not 1 <= lo <= opt <= hi:
        raise DeployConfigError(f"{folder}: batch profile must satisfy 1 <= min <= opt <= max, received {lo}, {opt}, {hi}")
    names = read_labels(labels) if labels is not None else (
        REFERENCE_CLASS_NAMES if m.source.get("arch") == "reference" else None)
    width = out.dims[-1] if out.dims else 0
    if names is not None and len(names) != width:
        raise DeployConfigError(f"{len(names)} class names for {width} outputs of {out.name!r}; expected one name per output")
    return DeployFacts(
        bundle=folder, target=m.target, precision=m.precision, int8_mode=m.int8_mode,
        tensorrt_version=sidecar.tensorrt_version if sidecar is not None else m.tensorrt_version,
        input=inp, output=out, min_batch=lo, opt_batch=opt, max_batch=hi, recipe=recipe, class_names=names,
        files=files, dla_core=m.dla_core, source=source,
    )


def check_batch(facts: DeployFacts, batch: int | None, option: str = "--batch") -> int:
    """``batch`` (default: the profile's maximum), refused outside the engine's profile."""
    value = facts.max_batch if batch is None else int(batch)
    if not facts.min_batch <= value <= facts.max_batch:
        raise DeployConfigError(
            f"{option} {value} is outside the engine's profile {facts.min_batch}..{facts.max_batch}; "
            f"rebuild with edgeres build --max-batch {value} or pass a value inside it"
        )
    return value


def labels_text(names: Sequence[str], separator: str = "\n") -> str:
    """Class names joined by ``separator``, newline-terminated."""
    return separator.join(names) + "\n"


def preferred_batch_sizes(opt_batch: int, max_batch: int) -> tuple[int, ...]:
    """Batch sizes a dynamic batcher aims for: the profile's optimum and its maximum, inside 2..max.

    The one rule for both ``edgeres serve`` and ``edgeres config triton``.
    """
    return tuple(sorted({b for b in (opt_batch, max_batch) if 2 <= b <= max_batch}))
