"""DLA layer lint: which layers of an ONNX model will fall back from the DLA to the GPU, and why.

Before a DLA build, every node is looked up in :data:`DLA_LAYERS`: the TensorRT
layer the ONNX parser makes of it (onnx/onnx-tensorrt ``builtin_op_importers.cpp``)
and the limits NVIDIA's DLA layer table gives for that layer. A node outside the
table, or outside its limits, is a :class:`Fallback` (printed by ``edgeres build``,
stored in the manifest as ``dla_fallback``). ``certainty`` says how sure the
finding is: ``"documented"`` (the cited row says so) or ``"unconfirmed"`` (the
layer is not among the rows read for this table; TensorRT may still place it on
the DLA, e.g. by rewriting it: check the build log's "Layers running on DLA").

Sources (read for this table):

* TensorRT "DLA Supported Layers and Restrictions"
  (https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/dla-layer-restrictions.html):
  general restrictions (batch <= 4096, non-batch dimensions <= 8192, static shapes), and the rows
  Activation (ReLU, Sigmoid, TanH, Clipped ReLU, Leaky ReLU), Concatenation (channel axis only),
  Convolution / Fully Connected (kernel [1,32], stride [1,8], channels [1,8192]), Deconvolution,
  ElementWise (Sum, Sub, Product, Max, Min, Div, Pow). The later rows (Pooling, Reduce, Shuffle,
  Softmax, ...) were not in the part of the page read here.
* ``NvInfer.h`` IPoolingLayer: "DLA only supports kMAX and kAVERAGE pooling types"; "When running
  pooling layer with DeviceType::kDLA in Int8 mode, the dynamic ranges for input and output tensors
  must be equal". Pooling window [1,8], padding [0,7], stride [1,16]: TensorRT 8.x developer guide
  DLA section, as remembered, not re-read here (``certainty`` unconfirmed when a limit is exceeded).
* onnx-tensorrt: ``GlobalAveragePool`` "operators are implemented via Reduce layers rather than
  Pooling layers" (IReduceLayer kAVG, ``globalPoolingHelper``); ``Gemm`` becomes MatrixMultiply
  (+ ElementWise bias); ``Flatten``/``Reshape`` become Shuffle layers.

The same rows are used for every TensorRT version with DLA (8.x, 10.0-10.7, 11.4+): no per-version
difference for these ops was found in the sources read. Not verified on a device.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, Sequence

from edgeres.errors import BuildError
from edgeres.trt_rules import DLA_SUPPORT

DLA_TABLE = "https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/dla-layer-restrictions.html"
POOLING_HEADER = "NvInfer.h IPoolingLayer (DLA: kMAX and kAVERAGE only); pooling limits: TensorRT 8.x developer guide (not re-read)"
IMPORTER = "onnx/onnx-tensorrt builtin_op_importers.cpp"
MAX_BATCH = 4096
MAX_DIM = 8192


@dataclasses.dataclass(frozen=True)
class Fallback:
    """One ONNX node that will run on the GPU instead of the DLA."""

    layer: str
    op: str
    reason: str
    source: str
    certainty: str  # "documented" or "unconfirmed"

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    def line(self) -> str:
        tag = "" if self.certainty == "documented" else " (unconfirmed)"
        return f"{self.layer} ({self.op}): {self.reason}{tag} [{self.source}]"


@dataclasses.dataclass(frozen=True)
class DlaLayer:
    """How an ONNX op reaches the DLA: the TensorRT layer it becomes, and its limits (None: not on DLA)."""

    trt_layer: str
    check: Callable[[Any, Mapping[str, tuple[int, ...]]], str | None] | None
    source: str
    certainty: str = "documented"
    why_not: str = ""


def _ints(node: Any, name: str, default: Sequence[int]) -> tuple[int, ...]:
    for a in node.attribute:
        if a.name == name:
            return tuple(a.ints) if a.ints else (a.i,)
    return tuple(default)


def _outside(what: str, values: Sequence[int], lo: int, hi: int) -> str | None:
    bad = [v for v in values if not lo <= v <= hi]
    return f"{what} {list(values)} outside [{lo},{hi}]" if bad else None


def _check_conv(node: Any, shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    kernel = _ints(node, "kernel_shape", shapes.get(node.input[1], (0, 0, 1, 1))[2:])
    if len(kernel) != 2:
        return f"{len(kernel)}D convolution (DLA: 2D only)"
    channels = shapes.get(node.input[1], (1,))[0]
    return (_outside("kernel", kernel, 1, 32) or _outside("stride", _ints(node, "strides", (1, 1)), 1, 8)
            or _outside("output channels", (channels,), 1, 8192))


def _check_pool(node: Any, shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    window = _ints(node, "kernel_shape", ())
    return (_outside("window", window, 1, 8) or _outside("padding", _ints(node, "pads", (0,)), 0, 7)
            or _outside("stride", _ints(node, "strides", (1,)), 1, 16))


def _ok(node: Any, shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    return None


# ONNX op -> how it reaches the DLA (ops a ResNet uses, plus their common neighbours)
DLA_LAYERS: Mapping[str, DlaLayer] = {
    "Conv": DlaLayer("Convolution", _check_conv, f"{DLA_TABLE} (Convolution / Fully Connected)"),
    "Relu": DlaLayer("Activation (ReLU)", _ok, f"{DLA_TABLE} (Activation)"),
    "Sigmoid": DlaLayer("Activation (Sigmoid)", _ok, f"{DLA_TABLE} (Activation)"),
    "Tanh": DlaLayer("Activation (TanH)", _ok, f"{DLA_TABLE} (Activation)"),
    "LeakyRelu": DlaLayer("Activation (Leaky ReLU)", _ok, f"{DLA_TABLE} (Activation)"),
    "Clip": DlaLayer("Activation (Clipped ReLU)", _ok, f"{DLA_TABLE} (Activation)"),
    "Add": DlaLayer("ElementWise (Sum)", _ok, f"{DLA_TABLE} (ElementWise)"),
    "Sub": DlaLayer("ElementWise (Sub)", _ok, f"{DLA_TABLE} (ElementWise)"),
    "Mul": DlaLayer("ElementWise (Product)", _ok, f"{DLA_TABLE} (ElementWise)"),
    "Max": DlaLayer("ElementWise (Max)", _ok, f"{DLA_TABLE} (ElementWise)"),
    "Min": DlaLayer("ElementWise (Min)", _ok, f"{DLA_TABLE} (ElementWise)"),
    "Concat": DlaLayer("Concatenation", _ok, f"{DLA_TABLE} (Concatenation: channel axis only)"),
    "MaxPool": DlaLayer("Pooling (kMAX)", _check_pool, POOLING_HEADER),
    "AveragePool": DlaLayer("Pooling (kAVERAGE)", _check_pool, POOLING_HEADER),
    "GlobalAveragePool": DlaLayer(
        "Reduce (kAVG)", None, f"{IMPORTER} GlobalAveragePool ('implemented via Reduce layers rather than Pooling layers')",
        certainty="unconfirmed",
        why_not="onnx-tensorrt imports it as a Reduce (AVG) layer, not a Pooling layer; Reduce AVG is not among the "
                "DLA rows read (an AveragePool with kernel = H x W <= 8 x 8 would be a DLA Pooling layer)"),
    "Flatten": DlaLayer("Shuffle", None, f"{IMPORTER} Flatten (a Shuffle layer)", certainty="unconfirmed",
                        why_not="becomes a Shuffle layer; Shuffle is not among the DLA rows read"),
    "Reshape": DlaLayer("Shuffle", None, f"{IMPORTER} Reshape (a Shuffle layer)", certainty="unconfirmed",
                        why_not="becomes a Shuffle layer; Shuffle is not among the DLA rows read"),
    "Gemm": DlaLayer("MatrixMultiply (+ ElementWise bias)", None, f"{IMPORTER} Gemm (MatrixMultiply + ElementWise kSUM)",
                     certainty="unconfirmed",
                     why_not="becomes MatrixMultiply + ElementWise; DLA's table lists Convolution / Fully Connected, "
                             "not MatrixMultiply (TensorRT may rewrite a constant-weight GEMM as a 1x1 convolution)"),
    "MatMul": DlaLayer("MatrixMultiply", None, f"{IMPORTER} MatMul", certainty="unconfirmed",
                       why_not="MatrixMultiply is not among the DLA rows read"),
    "QuantizeLinear": DlaLayer("Quantize", None, "NVIDIA/TensorRT#2222; NVIDIA/Model-Optimizer PR #1661",
                               why_not="Q/DQ layers do not run on DLA before TensorRT 11 (rule dla-implicit-int8)"),
    "DequantizeLinear": DlaLayer("Dequantize", None, "NVIDIA/TensorRT#2222; NVIDIA/Model-Optimizer PR #1661",
                                 why_not="Q/DQ layers do not run on DLA before TensorRT 11 (rule dla-implicit-int8)"),
}


def _static_shapes(model: Any, batch: int, input_shape: Sequence[int] | None) -> dict[str, tuple[int, ...]]:
    """Tensor name -> static shape (batch fixed), from ONNX shape inference; initializers included."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_param")
            dims[0].dim_value = batch
            if input_shape is not None and len(dims) == len(input_shape) + 1:
                for d, n in zip(dims[1:], input_shape):
                    if not d.dim_value:
                        d.dim_value = int(n)
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {i.name: tuple(i.dims) for i in model.graph.initializer}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        if all(d.dim_value for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    return shapes


def dla_fallback_from_model(model: Any, trt_version: str, *, batch: int = 1,
                            input_shape: Sequence[int] | None = None) -> list[Fallback]:
    """The nodes of ``model`` (an onnx ModelProto) that TensorRT ``trt_version`` will run on the GPU, not the DLA."""
    from edgeres.tensorrt_version import parse_version

    v = parse_version(trt_version, error=BuildError)
    if not any(v >= lo and (hi is None or v < hi) for lo, hi in DLA_SUPPORT):
        raise BuildError(f"rule dla-available: TensorRT {trt_version} has no DLA support; drop --dla-core")
    found: list[Fallback] = []
    if not 1 <= batch <= MAX_BATCH:
        found.append(Fallback("(network)", "-", f"batch {batch} outside [1,{MAX_BATCH}]", DLA_TABLE, "documented"))
    shapes = _static_shapes(model, batch, input_shape)
    for node in model.graph.node:
        name = node.name or (node.output[0] if node.output else node.op_type)
        entry = DLA_LAYERS.get(node.op_type)
        if entry is None:
            found.append(Fallback(name, node.op_type, "not in edgeres' DLA layer table", DLA_TABLE, "unconfirmed"))
            continue
        if entry.check is None:
            found.append(Fallback(name, node.op_type, entry.why_not, entry.source, entry.certainty))
            continue
        reason = entry.check(node, shapes)
        big = next((s for s in (shapes.get(o) for o in node.output) if s and max(s[1:], default=0) > MAX_DIM), None)
        if reason is None and big is not None:
            reason = f"output {list(big)} has a non-batch dimension above {MAX_DIM}"
        if reason is not None:
            certainty = "unconfirmed" if entry.source == POOLING_HEADER else entry.certainty
            found.append(Fallback(name, node.op_type, f"{entry.trt_layer}: {reason}", entry.source, certainty))
    return found


def dla_fallback_from_onnx(path: str | os.PathLike[str], trt_version: str, *, batch: int = 1,
                           input_shape: Sequence[int] | None = None) -> list[Fallback]:
    """:func:`dla_fallback_from_model` of the ONNX file at ``path``."""
    import onnx

    return dla_fallback_from_model(onnx.load(str(path)), trt_version, batch=batch, input_shape=input_shape)
