"""Which model runs on which backend: the candidate from the command line, and its FP32 reference.

The default reference is the FP32 model of the same recipe on the most
comparable backend (:func:`default_reference`):

* an ONNX candidate (Q/DQ INT8 or FP16) -> the FP32 ONNX beside it, same execution provider;
* a TensorRT plan -> the FP32 ONNX it was built from, on onnxruntime's TensorRT EP
  when installed, else its CUDA EP, else the CPU;
* a torch candidate (FP16, channels-last, compiled) -> the same weights in FP32 eager,
  same device and harness settings (sync, host memory, CUDA graphs);
* an FP32 candidate is its own reference: latency only.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from edgeres.bench.backends import BackendOptions, backend_for
from edgeres.errors import BenchError

#: Name tokens that mark a non-FP32 variant of a model file (stripped to find the FP32 sibling).
VARIANT_TOKENS = {"qdq", "int8", "fp16", "half", "quant", "quantized", "q"}


@dataclasses.dataclass(frozen=True)
class SideSpec:
    """One side of a comparison: a model file or architecture name, its backend and options."""

    model: str
    backend: str
    options: BackendOptions = BackendOptions()


def onnx_precision(path: str | Path) -> str:
    """``"int8-qdq"`` (QuantizeLinear/DequantizeLinear nodes), ``"fp16"`` (half input or weights) or ``"fp32"``."""
    from edgeres.bench.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path).settings()["precision"]


def _stripped_stem(path: Path) -> str:
    tokens = [t for t in re.split(r"[._-]", path.name[: -len(path.suffix)] if path.suffix else path.name) if t]
    kept = [t for t in tokens if t.lower() not in VARIANT_TOKENS]
    return ".".join(kept)


def find_fp32_onnx(model: str | Path) -> Path | None:
    """The FP32 ONNX beside ``model``: same name without variant tags, else the only FP32 ONNX in the folder.

    Raises:
        BenchError: several FP32 ONNX files are there and none matches by name.
    """
    path = Path(model).resolve()
    folder = path.parent
    siblings = sorted(p for p in folder.glob("*.onnx") if p.resolve() != path)
    fp32 = [p for p in siblings if onnx_precision(p) == "fp32"]
    if not fp32:
        return None
    stem = _stripped_stem(path)
    by_name = [p for p in fp32 if _stripped_stem(p) == stem]
    if len(by_name) == 1:
        return by_name[0]
    if len(fp32) == 1:
        return fp32[0]
    raise BenchError(
        f"several FP32 ONNX models beside {path.name} ({', '.join(p.name for p in fp32)}) and none named like it; "
        "pass --reference FILE"
    )


def comparable_provider() -> str:
    """onnxruntime provider closest to a TensorRT engine that is installed here."""
    try:
        import onnxruntime
    except ImportError:
        return "cpu"
    available = set(onnxruntime.get_available_providers())
    if "TensorrtExecutionProvider" in available:
        return "tensorrt"
    if "CUDAExecutionProvider" in available:
        return "cuda"
    return "cpu"


def default_reference(candidate: SideSpec) -> SideSpec | None:
    """The FP32 reference for ``candidate`` (see the module docstring); None when the candidate is FP32.

    Raises:
        BenchError: no FP32 model can be found for a non-FP32 candidate.
    """
    opts = candidate.options
    if candidate.backend == "torch":
        if opts.precision == "fp32" and not opts.channels_last and not opts.compile:
            return None
        return SideSpec(candidate.model, "torch", dataclasses.replace(opts, precision="fp32", channels_last=False, compile=False))
    if candidate.backend == "onnxruntime" and onnx_precision(candidate.model) == "fp32":
        return None
    fp32 = find_fp32_onnx(candidate.model)
    if fp32 is None:
        raise BenchError(
            f"no FP32 reference found beside {candidate.model} (looked for an FP32 .onnx in {Path(candidate.model).parent}); "
            "pass --reference FP32_MODEL or --no-reference"
        )
    if candidate.backend == "onnxruntime":
        return SideSpec(str(fp32), "onnxruntime", opts)
    return SideSpec(str(fp32), "onnxruntime", dataclasses.replace(opts, provider=comparable_provider()))


def side_spec(model: str, backend: str | None, options: BackendOptions) -> SideSpec:
    """A SideSpec with the backend chosen from the file when not forced."""
    return SideSpec(str(model), backend or backend_for(model), options)


@dataclasses.dataclass(frozen=True)
class BundleSides:
    """What ``edgeres bench BUNDLE`` compares: the bundle's deployable model, its FP32 model, and their data."""

    candidate: SideSpec
    reference: SideSpec | None
    recipe: object  # edgeres.recipe.Recipe of the bundle (preprocessing of --data)
    data: str | None  # default data: the reference model's test split, else None (synthetic unless --data)


def _bundle_file(folder: Path, manifest: object, name: str) -> Path:
    """``folder/name``, checked: listed in the manifest and present on disk ("not found" otherwise)."""
    path = folder / name
    if name not in manifest.files:  # type: ignore[attr-defined]
        raise BenchError(f"{path} not found: the bundle's manifest.json lists no {name}")
    if not path.is_file():
        raise BenchError(f"{path} not found (listed in {folder / 'manifest.json'}); copy the whole bundle folder")
    return path


def bundle_sides(bundle: str | Path, backend: str | None, options: BackendOptions) -> BundleSides:
    """Candidate and reference from a bundle folder (``edgeres build`` output), using its files and recipe.

    Candidate: ``model.plan`` when the bundle was compiled here (TensorRT), else the Q/DQ ONNX of an
    INT8 bundle, else the ONNX its TensorRT version builds (:func:`edgeres.trtexec.onnx_file_for`).
    Reference: the bundle's FP32 ``model.onnx`` (None when that is the candidate). Data: the bundle
    recipe's preprocessing; the shipped reference model's bundle defaults to ``reference:test``.

    Raises:
        BenchError: not a bundle, or a file it needs is missing ("<path> not found").
    """
    from edgeres.bundle import load_manifest
    from edgeres.errors import BundleError
    from edgeres.recipe import Recipe
    from edgeres.trtexec import onnx_file_for

    folder = Path(bundle)
    try:
        manifest = load_manifest(folder)
    except BundleError as exc:
        raise BenchError(str(exc)) from exc
    if (folder / "model.plan").is_file():
        cand = SideSpec(str(folder / "model.plan"), backend or "tensorrt", options)
    else:
        if manifest.precision == "int8" and "model.qdq.onnx" in manifest.files:
            name = "model.qdq.onnx"
        else:
            name = onnx_file_for(manifest.precision, manifest.int8_mode, manifest.tensorrt_version)
        cand = SideSpec(str(_bundle_file(folder, manifest, name)), backend or "onnxruntime", options)
    fp32 = _bundle_file(folder, manifest, "model.onnx")
    ref = None
    if Path(cand.model).resolve() != fp32.resolve():
        ref_opts = dataclasses.replace(options, precision="fp32", channels_last=False, compile=False)
        provider = options.provider if cand.backend == "onnxruntime" else comparable_provider()
        ref = SideSpec(str(fp32), "onnxruntime", dataclasses.replace(ref_opts, provider=provider))
    recipe = Recipe.from_dict(dict(manifest.recipe)) if manifest.recipe else None
    data = "reference:test" if (manifest.source or {}).get("arch") == "reference" else None
    return BundleSides(cand, ref, recipe, data)
