"""``edgeres config triton``: a Triton model repository for Triton's native backends (no PyTriton).

Two repositories with the same model name, so clients do not change between nodes:

* ``gpu/<name>``: ``platform: "tensorrt_plan"``, ``1/model.plan``. A plan only
  runs on the GPU and TensorRT version that built it, so it is built on the
  node (``edgeres compile BUNDLE`` or the bundle's ``build.sh``) and copied in;
  the repository's README says so, and a bundle that already holds a compiled
  plan has it copied in.
* ``cpu/<name>``: ``platform: "onnxruntime_onnx"``, ``1/model.onnx`` (the
  bundle's onnxruntime Q/DQ model for INT8 bundles, else its FP32 ONNX).

``max_batch_size`` is the engine profile's maximum: Triton refuses a TensorRT
model whose config asks for more than the engine's profile
(triton-inference-server/server#4396, #4445, #5479 are this mistake), and
sends batches of 1 upward, so the profile must start at 1. Dims, names and
data types come from the sidecar or manifest (:mod:`edgeres.deploy.facts`).
Schema: ``model_config.proto`` of triton-inference-server/common
(``ModelConfig``, ``ModelInput``, ``ModelOutput.label_filename``,
``ModelDynamicBatching``, ``ModelInstanceGroup``), the same protobuf that
ships as ``tritonclient.grpc.model_config_pb2``; the tests parse every
written ``config.pbtxt`` into it.

Verified here: the text parses into Triton's ``ModelConfig``. Not verified:
loading either repository in a stand-alone tritonserver with the TensorRT or
onnxruntime backend (PyTriton's wheel carries only the Python backend).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from edgeres.deploy.facts import DeployFacts, labels_text, preferred_batch_sizes
from edgeres.errors import DeployConfigError

CONFIG_NAME = "config.pbtxt"
LABELS_NAME = "labels.txt"
KINDS = ("gpu", "cpu")
# numpy dtype name -> Triton DataType (model_config.proto, enum DataType)
TRITON_DTYPES = {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "int8": "TYPE_INT8", "int16": "TYPE_INT16",
    "int32": "TYPE_INT32", "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
}
# where each kind of node runs the model: Triton platform, instance kind, model file in version 1
BACKENDS = {
    "gpu": {"platform": "tensorrt_plan", "instance_kind": "KIND_GPU", "model_file": "model.plan"},
    "cpu": {"platform": "onnxruntime_onnx", "instance_kind": "KIND_CPU", "model_file": "model.onnx"},
}
# bundle ONNX a CPU node runs, by precision (onnxruntime runs Q/DQ INT8 on CPU; FP16 would be slower than FP32 there)
CPU_ONNX = {"int8": ("model.qdq.ort.onnx", "model.onnx"), "fp16": ("model.onnx",), "fp32": ("model.onnx",)}


class Enum(str):
    """A protobuf enum value: written without quotes."""


@dataclasses.dataclass(frozen=True)
class TritonRepository:
    """What ``write_triton_repository`` wrote."""

    root: Path
    configs: Mapping[str, Path]  # kind -> config.pbtxt
    plan_included: bool


def _value(v: Any) -> str:
    if isinstance(v, Enum):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise DeployConfigError(f"cannot write {type(v).__name__} into a pbtxt")


def pbtxt(message: Mapping[str, Any], indent: int = 0) -> str:
    """Protobuf text format of a nested dict: lists of scalars ``[a, b]``, lists of dicts ``[ {...} ]``."""
    pad = "  " * indent
    lines: list[str] = []
    for key, v in message.items():
        if isinstance(v, Mapping):
            lines += [f"{pad}{key} {{", pbtxt(v, indent + 1).rstrip("\n"), f"{pad}}}"]
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, Mapping) for x in v):
            lines.append(f"{pad}{key} [")
            for j, item in enumerate(v):
                lines += [f"{pad}  {{", pbtxt(item, indent + 2).rstrip("\n"), f"{pad}  }}{',' if j < len(v) - 1 else ''}"]
            lines.append(f"{pad}]")
        elif isinstance(v, (list, tuple)):
            lines.append(f"{pad}{key}: [ {', '.join(_value(x) for x in v)} ]")
        else:
            lines.append(f"{pad}{key}: {_value(v)}")
    return "\n".join(lines) + "\n"


def triton_dtype(numpy_name: str) -> Enum:
    if numpy_name not in TRITON_DTYPES:
        raise DeployConfigError(f"no Triton data type for {numpy_name!r}; expected one of {sorted(TRITON_DTYPES)}")
    return Enum(TRITON_DTYPES[numpy_name])


def model_config(facts: DeployFacts, kind: str, *, name: str, instances: int = 1,
                 max_queue_delay_us: int = 100) -> dict[str, Any]:
    """The ``ModelConfig`` (as a dict) of one node kind, from the engine's facts."""
    if kind not in BACKENDS:
        raise DeployConfigError(f"node kind must be one of {KINDS}, received {kind!r}")
    if facts.min_batch != 1:
        raise DeployConfigError(
            f"the engine's profile starts at batch {facts.min_batch}; Triton sends batches from 1 up to "
            "max_batch_size, so rebuild with a profile starting at 1"
        )
    if instances < 1 or max_queue_delay_us < 0:
        raise DeployConfigError(f"instances must be >= 1 and the queue delay >= 0, received {instances}, {max_queue_delay_us}")
    backend = BACKENDS[kind]
    output: dict[str, Any] = {"name": facts.output.name, "data_type": triton_dtype(facts.output.dtype),
                              "dims": list(facts.output.dims)}
    if facts.class_names:
        output["label_filename"] = LABELS_NAME
    batching: dict[str, Any] = {}
    preferred = preferred_batch_sizes(facts.opt_batch, facts.max_batch)
    if preferred:
        batching["preferred_batch_size"] = list(preferred)
    batching["max_queue_delay_microseconds"] = int(max_queue_delay_us)
    config: dict[str, Any] = {
        "name": name,
        "platform": backend["platform"],
        "max_batch_size": facts.max_batch,
        "input": [{"name": facts.input.name, "data_type": triton_dtype(facts.input.dtype), "dims": list(facts.input.dims)}],
        "output": [output],
        "instance_group": [{"count": int(instances), "kind": Enum(backend["instance_kind"])}],
        "default_model_filename": backend["model_file"],
    }
    if facts.max_batch > 1:
        config["dynamic_batching"] = batching
    return config


def config_text(facts: DeployFacts, kind: str, **options: Any) -> str:
    """``config.pbtxt`` text, with a header saying where each fact came from."""
    config = model_config(facts, kind, **options)
    header = [
        f"# edgeres config triton: {kind} node, {facts.precision} bundle for {facts.target} "
        f"(facts from the {facts.source}; batch profile {facts.min_batch}..{facts.max_batch}, opt {facts.opt_batch})",
    ]
    if kind == "gpu":
        header.append("# 1/model.plan is built on this node: edgeres compile BUNDLE (or BUNDLE/build.sh), then copy "
                      "BUNDLE/model.plan here; a plan runs only on the GPU and TensorRT version that built it")
    return "\n".join(header) + "\n" + pbtxt(config)


def validate_config_text(text: str) -> Any:
    """Parse ``text`` into Triton's ``ModelConfig`` protobuf (``tritonclient.grpc.model_config_pb2``).

    Raises:
        DeployConfigError: tritonclient is not installed, or the text does not fit the schema.
    """
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise DeployConfigError(f"validating a Triton config needs tritonclient[grpc] ({exc})") from exc
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise DeployConfigError(f"config.pbtxt does not fit Triton's ModelConfig: {exc}") from exc


def _cpu_onnx(facts: DeployFacts) -> str:
    for name in CPU_ONNX.get(facts.precision, ("model.onnx",)):
        if name in facts.files:
            return name
    raise DeployConfigError(f"bundle {facts.bundle} has no ONNX a CPU node can run; expected model.onnx")


def readme_text(facts: DeployFacts, name: str, kinds: Sequence[str], plan_included: bool, cpu_onnx: str) -> str:
    lines = [f"# Triton model repositories for `{name}` ({facts.precision}, target {facts.target})", ""]
    if "gpu" in kinds:
        lines += ["## gpu/ (TensorRT plan, `platform: \"tensorrt_plan\"`)", ""]
        if plan_included:
            lines += [f"`gpu/{name}/1/model.plan` is the bundle's compiled plan (TensorRT {facts.tensorrt_version}); "
                      "it runs only on that GPU model and TensorRT version.", ""]
        else:
            lines += [f"`gpu/{name}/1/model.plan` is not here yet: a plan is built on the GPU node that runs it.",
                      "On the node (matching the tritonserver's TensorRT version):", "",
                      f"    edgeres compile {facts.bundle.name}        # or: sh {facts.bundle.name}/build.sh",
                      f"    cp {facts.bundle.name}/model.plan gpu/{name}/1/model.plan", ""]
        if facts.dla_core is not None:
            lines += [f"The bundle targets DLA core {facts.dla_core}; the plan keeps that choice.", ""]
    if "cpu" in kinds:
        lines += ["## cpu/ (onnxruntime, `platform: \"onnxruntime_onnx\"`)", "",
                  f"`cpu/{name}/1/model.onnx` is the bundle's `{cpu_onnx}`.", ""]
    lines += ["Serve one of them:", "", "    tritonserver --model-repository=$PWD/gpu   # or $PWD/cpu", ""]
    return "\n".join(lines)


def write_triton_repository(facts: DeployFacts, out_dir: str | os.PathLike[str], *, name: str = "edgeres",
                            kinds: Sequence[str] = KINDS, instances: int = 1,
                            max_queue_delay_us: int = 100, validate: bool = True, force: bool = False) -> TritonRepository:
    """Write ``out_dir/{gpu,cpu}/<name>/`` repositories atomically (the folder appears complete or not at all)."""
    from edgeres._io import output_dir

    kinds = tuple(dict.fromkeys(kinds))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise DeployConfigError(f"node kinds must be some of {KINDS}, received {list(kinds)}")
    texts = {k: config_text(facts, k, name=name, instances=instances, max_queue_delay_us=max_queue_delay_us) for k in kinds}
    if validate:
        for text in texts.values():
            try:
                validate_config_text(text)
            except DeployConfigError as exc:
                if "needs tritonclient" not in str(exc):
                    raise
    cpu_onnx = _cpu_onnx(facts) if "cpu" in kinds else ""
    plan_included = "gpu" in kinds and facts.has_plan
    out = Path(out_dir)
    # replaced only when an earlier `edgeres config triton` made it (or --force); never the bundle itself
    with output_dir(out, "config triton", inputs=(facts.bundle,), force=force) as tmp:
        for kind, text in texts.items():
            model_dir = tmp / kind / name
            (model_dir / "1").mkdir(parents=True)
            (model_dir / CONFIG_NAME).write_text(text, encoding="utf-8")
            if facts.class_names:
                (model_dir / LABELS_NAME).write_text(labels_text(facts.class_names), encoding="utf-8")
            if kind == "cpu":
                shutil.copyfile(facts.bundle / cpu_onnx, model_dir / "1" / "model.onnx")
            elif plan_included:
                shutil.copyfile(facts.bundle / "model.plan", model_dir / "1" / "model.plan")
        (tmp / "README.md").write_text(readme_text(facts, name, kinds, plan_included, cpu_onnx), encoding="utf-8")
    return TritonRepository(root=out, configs={k: out / k / name / CONFIG_NAME for k in kinds}, plan_included=plan_included)
