"""``edgeres config deepstream``: an nvinfer ``config_infer_primary.txt`` that never rebuilds the engine by surprise.

Sources (DeepStream 6.2 open sources, as mirrored in
``hiennguyen9874/deepstream-sources@f9948312``; the same files ship in every
DeepStream under ``/opt/nvidia/deepstream/deepstream/sources``):

* engine name: ``sources/libs/nvdsinfer/nvdsinfer_model_builder.cpp`` lines
  717-724, ``suggestedPathName = modelPath + "_b" + maxBatchSize + "_" + devId
  + "_" + networkMode2Str(networkMode) + ".engine"`` with ``devId`` =
  ``gpu<gpu-id>`` (``dla<core>`` with ``enable-dla``) and ``networkMode2Str``
  (``nvdsinfer_func_utils.cpp`` 159-171) giving ``fp32``/``int8``/``fp16``.
  ``modelPath`` is the ONNX path, so the engine lands beside the ONNX;
  ``model-engine-file`` set to exactly that name makes nvinfer load it on the
  next start instead of building again (DeepStream-Yolo#500).
* keys: ``sources/gst-plugins/gst-nvinfer/gstnvinfer_property_parser.h``
  (``onnx-file``, ``model-engine-file``, ``int8-calib-file``, ``batch-size``,
  ``network-mode``, ``infer-dims``, ``network-type``, ``model-color-format``,
  ``net-scale-factor``, ``offsets``, ``labelfile-path``, ``output-blob-names``,
  ``gie-unique-id``, ``process-mode``, ``enable-dla``, ``use-dla-core``,
  ``classifier-threshold``, ``maintain-aspect-ratio``, ``gpu-id``).
* codes: ``sources/includes/nvdsinfer_context.h``: ``NvDsInferNetworkMode``
  FP32=0, INT8=1, FP16=2; ``NvDsInferNetworkType`` Detector=0, Classifier=1;
  ``NvDsInferFormat`` RGB=0, BGR=1, GRAY=2.
* labels: ``nvdsinfer_context_impl.cpp`` ``parseLabelsFile``: one line per
  output layer, labels separated by ``;``.
* normalization: :mod:`edgeres.deploy.normalization`.

``int8-calib-file`` is written only where the engine is INT8 by implicit
calibration (int8 mode ``calibrator``, TensorRT <= 10); an explicit Q/DQ ONNX
carries its scales and TensorRT ignores a cache for it.

Not verified: a DeepStream run (no DeepStream or GPU here). What is verified:
the normalization identity on onnxruntime, and the file names above against
the cited source.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

from edgeres.deploy.facts import DeployFacts, check_batch, labels_text
from edgeres.deploy.normalization import fold_channel_scale, fold_mode_for, nvinfer_normalization
from edgeres.errors import DeployConfigError

CONFIG_NAME = "config_infer_primary.txt"
LABELS_NAME = "labels.txt"
ONNX_NAME = "model.deepstream.onnx"
CALIB_NAME = "calib.cache"
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}  # nvdsinfer_context.h NvDsInferNetworkMode
MODE_NAME = {"fp32": "fp32", "int8": "int8", "fp16": "fp16"}  # nvdsinfer_func_utils.cpp networkMode2Str
NETWORK_TYPE_CLASSIFIER = 1  # nvdsinfer_context.h NvDsInferNetworkType_Classifier
COLOR_FORMAT = {3: 0, 1: 2}  # channels -> NvDsInferFormat_RGB / NvDsInferFormat_GRAY
PROCESS_MODE_PRIMARY = 1


@dataclasses.dataclass(frozen=True)
class DeepStreamConfig:
    """What ``write_deepstream_config`` wrote and why."""

    folder: Path
    config: Path
    onnx: Path
    engine_name: str
    fold_mode: str
    source_onnx: str
    calib_cache: Path | None
    properties: Mapping[str, Any]


def engine_file_name(onnx_name: str, batch: int, precision: str, gpu_id: int = 0, dla_core: int | None = None) -> str:
    """The engine file nvinfer builds for ``onnx_name`` (nvdsinfer_model_builder.cpp:717-724)."""
    if precision not in MODE_NAME:
        raise DeployConfigError(f"precision must be one of {sorted(MODE_NAME)}, received {precision!r}")
    device = f"dla{dla_core}" if dla_core is not None else f"gpu{gpu_id}"
    return f"{onnx_name}_b{batch}_{device}_{MODE_NAME[precision]}.engine"


def source_onnx_for(facts: DeployFacts, trt_version: str) -> str:
    """The bundle ONNX the DeepStream node's TensorRT builds from (the same rule as ``edgeres compile``)."""
    from edgeres.trtexec import onnx_file_for

    name = onnx_file_for(facts.precision, facts.int8_mode, trt_version)
    if name not in facts.files:
        raise DeployConfigError(
            f"TensorRT {trt_version} builds {facts.precision} from {name}, which bundle {facts.bundle} lacks; "
            f"pass --trt-version for the DeepStream node's TensorRT, or rebuild the bundle with --trt-version {trt_version}"
        )
    return name


def uses_calibration_cache(facts: DeployFacts, trt_version: str) -> bool:
    """True where the engine is INT8 by implicit calibration (TensorRT <= 10 reads the cache)."""
    from edgeres.trtexec import parse_version, strongly_typed

    return facts.precision == "int8" and facts.int8_mode == "calibrator" and not strongly_typed(parse_version(trt_version))


def config_properties(facts: DeployFacts, *, batch: int, gpu_id: int, calib: bool, labels: bool,
                      threshold: float) -> dict[str, Any]:
    """The ``[property]`` group, key -> value, in the order written."""
    if facts.recipe is None:
        raise DeployConfigError(f"bundle {facts.bundle} has no recipe; nvinfer's normalization cannot be derived")
    channels = facts.recipe.in_channels
    if channels not in COLOR_FORMAT:
        raise DeployConfigError(f"nvinfer takes 1 (GRAY) or 3 (RGB) channels, the model has {channels}")
    norm = nvinfer_normalization(facts.recipe)
    props: dict[str, Any] = {
        "gpu-id": gpu_id,
        "net-scale-factor": repr(norm.net_scale_factor),
        "offsets": ";".join(repr(o) for o in norm.offsets),
        "model-color-format": COLOR_FORMAT[channels],
        "onnx-file": ONNX_NAME,
        "model-engine-file": engine_file_name(ONNX_NAME, batch, facts.precision, gpu_id, facts.dla_core),
    }
    if calib:
        props["int8-calib-file"] = CALIB_NAME
    if labels:
        props["labelfile-path"] = LABELS_NAME
    props.update({
        "batch-size": batch,
        "network-mode": NETWORK_MODE[facts.precision],
        "infer-dims": ";".join(str(d) for d in facts.input.dims),
        "output-blob-names": facts.output.name,
        "network-type": NETWORK_TYPE_CLASSIFIER,
        "process-mode": PROCESS_MODE_PRIMARY,
        "gie-unique-id": 1,
        "classifier-threshold": threshold,
        "maintain-aspect-ratio": 0,
    })
    if facts.dla_core is not None:
        props.update({"enable-dla": 1, "use-dla-core": facts.dla_core})
    return props


def config_text(facts: DeployFacts, props: Mapping[str, Any], fold_mode: str, source_onnx: str) -> str:
    """GKeyFile text: comments, ``[property]``, one ``key=value`` per line."""
    r = facts.recipe
    lines = [
        f"# edgeres config deepstream: {facts.precision} bundle for {facts.target}, facts from the {facts.source}",
        f"# {ONNX_NAME} is the bundle's {source_onnx} with 1/std folded in ({fold_mode}), so that",
        "# net-scale-factor * (x - offsets) reproduces the recipe's (x/255 - mean) / std exactly",
        f"# recipe: mean {list(r.mean)}, std {list(r.std)} on the 0..1 scale, input {r.input_size[0]}x{r.input_size[1]}",
        f"# nvinfer builds {props['model-engine-file']} beside the ONNX on first start and loads it afterwards",
    ]
    if r.resize is not None:
        lines.append(f"# note: the recipe resizes the shorter side to {r.resize} then center-crops; nvinfer scales the "
                     "whole frame/object to infer-dims (no crop)")
    lines += ["[property]", *(f"{k}={v}" for k, v in props.items())]
    return "\n".join(lines) + "\n"


def folded_onnx(facts: DeployFacts, source_onnx: str) -> tuple[Any, str]:
    """The DeepStream ONNX: ``source_onnx`` with the recipe's 1/std folded in, and the fold mode used.

    FP32 and FP16 engines from the FP32 ONNX take the exact, free ``conv`` fold; INT8 and typed
    ONNX take ``input-mul`` so every quantization scale still sees the tensor it was calibrated on.
    """
    import onnx

    model = onnx.load(os.fspath(facts.bundle / source_onnx))
    prefer_conv = source_onnx == "model.onnx" and facts.precision in ("fp32", "fp16")
    mode = fold_mode_for(model, prefer_conv)
    return fold_channel_scale(model, nvinfer_normalization(facts.recipe).channel_scale, mode), mode


def write_deepstream_config(facts: DeployFacts, out_dir: str | os.PathLike[str], *, batch: int | None = None,
                            gpu_id: int = 0, trt_version: str | None = None,
                            threshold: float = 0.0, force: bool = False) -> DeepStreamConfig:
    """Write ``config_infer_primary.txt``, the folded ONNX, labels and (implicit INT8) the cache, atomically.

    Args:
        batch: nvinfer ``batch-size`` (default: the profile's maximum); must lie in the profile.
        gpu_id: the GPU nvinfer runs on (part of the engine file name).
        trt_version: the DeepStream node's TensorRT (default: the bundle's).
        threshold: ``classifier-threshold`` (0: always attach the top class).
    """
    from edgeres._io import output_dir

    batch = check_batch(facts, batch)
    if gpu_id < 0:
        raise DeployConfigError(f"gpu-id must be >= 0, received {gpu_id}")
    version = trt_version or facts.tensorrt_version
    source = source_onnx_for(facts, version)
    calib = uses_calibration_cache(facts, version)
    if calib and CALIB_NAME not in facts.files:
        raise DeployConfigError(f"bundle {facts.bundle} is INT8 by calibration but has no {CALIB_NAME}")
    props = config_properties(facts, batch=batch, gpu_id=gpu_id, calib=calib, labels=bool(facts.class_names),
                              threshold=threshold)
    model, mode = folded_onnx(facts, source)
    import onnx

    out = Path(out_dir)
    # replaced only when an earlier `edgeres config deepstream` made it (or --force); never the bundle itself
    with output_dir(out, "config deepstream", inputs=(facts.bundle,), force=force) as tmp:
        onnx.save(model, os.fspath(tmp / ONNX_NAME))
        if calib:
            from edgeres.calibrate.cache import parse_calibration_cache, write_calibration_cache

            # TensorRT ignores a cache whose header names another version (see edgeres.build.cache_for_version);
            # the scales mean the same from 8.5 to 10.x, so the copy gets the node's version in its header
            path = facts.bundle / CALIB_NAME
            _header, _name, scales = parse_calibration_cache(path.read_text(encoding="utf-8"), str(path))
            write_calibration_cache(tmp / CALIB_NAME, scales, version)
        if facts.class_names:
            (tmp / LABELS_NAME).write_text(labels_text(facts.class_names, ";"), encoding="utf-8")
        (tmp / CONFIG_NAME).write_text(config_text(facts, props, mode, source), encoding="utf-8")
    return DeepStreamConfig(
        folder=out, config=out / CONFIG_NAME, onnx=out / ONNX_NAME, engine_name=props["model-engine-file"],
        fold_mode=mode, source_onnx=source, calib_cache=out / CALIB_NAME if calib else None, properties=props,
    )
