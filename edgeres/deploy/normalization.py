"""Exact per-channel normalization for DeepStream nvinfer, which has one scale for all channels.

nvinfer preprocesses every pixel as ``y = net-scale-factor * (x - offsets[c])``
(DeepStream ``sources/libs/nvdsinfer/nvdsinfer_conversion.cu``,
``NvDsInferConvert_C3ToP3Float``: ``scaleFactor * (inBuffer[...] - meanDataBuffer[...])``;
``nvdsinfer_context_impl.cpp`` ``InferPreprocessor::setScaleOffsets`` takes one
``float scale`` and per-channel offsets). A recipe normalizes with a per-channel
std, ``(x/255 - mean[c]) / std[c]``, which one scale cannot express; averaging
the std (what users do by hand) changes every activation of a model whose std
differs per channel.

This module makes it exact: ``net-scale-factor = 1/255`` and
``offsets[c] = 255 * mean[c]`` give ``x/255 - mean[c]``; the remaining
``1/std[c]`` goes into the model:

* ``conv`` fold (FP32 ONNX): the first convolution's weights are scaled per
  input channel, ``W[:, c] /= std[c]``. Exact, because scaling an input channel
  commutes with the convolution's zero padding (``0 / std = 0``), and free at
  run time.
* ``input-mul`` (Q/DQ or typed FP16 ONNX, or INT8 with a calibration cache):
  a ``Mul`` by ``1/std[c]`` is put in front of the graph and takes over the
  original input name, so every quantization scale (Q/DQ nodes, the cache's
  entry for ``input``) still sees the normalized tensor it was calibrated on;
  the graph input becomes ``<input>_raw``. Folding into the weights would be
  inexact there: the input quantizer is per tensor and cannot absorb a
  per-channel scale.

Pure numpy for the math; ONNX protos in, ONNX protos out.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Sequence

import numpy as np

from edgeres.errors import DeployConfigError
from edgeres.recipe import Recipe

PIXEL_MAX = 255.0
FOLD_MODES = ("conv", "input-mul")
RAW_INPUT_SUFFIX = "_raw"


@dataclasses.dataclass(frozen=True)
class NvinferNormalization:
    """nvinfer's ``net-scale-factor`` and ``offsets`` plus the per-channel scale the model must absorb."""

    net_scale_factor: float
    offsets: tuple[float, ...]
    channel_scale: tuple[float, ...]


def nvinfer_normalization(recipe: Recipe) -> NvinferNormalization:
    """``net-scale-factor = 1/255``, ``offsets = 255 * mean``, ``channel_scale = 1/std`` for ``recipe``."""
    return NvinferNormalization(
        net_scale_factor=1.0 / PIXEL_MAX,
        offsets=tuple(float(m) * PIXEL_MAX for m in recipe.mean),
        channel_scale=tuple(1.0 / float(s) for s in recipe.std),
    )


def nvinfer_preprocess(batch_nhwc_uint8: np.ndarray, net_scale_factor: float, offsets: Sequence[float]) -> np.ndarray:
    """What nvinfer feeds the network: ``net_scale_factor * (x - offsets[c])`` as float32 NCHW."""
    x = np.asarray(batch_nhwc_uint8, dtype=np.float32)
    out = np.float32(net_scale_factor) * (x - np.asarray(offsets, dtype=np.float32))
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def scale_conv_input_channels(weight: np.ndarray, scale: Sequence[float]) -> np.ndarray:
    """Conv weight (O, I, kH, kW) with input channel ``c`` multiplied by ``scale[c]`` (groups == 1)."""
    w = np.asarray(weight)
    s = np.asarray(scale, dtype=np.float64)
    if w.ndim < 3 or w.shape[1] != s.size:
        raise DeployConfigError(f"first conv weight {w.shape} does not take {s.size} input channels")
    shape = (1, s.size) + (1,) * (w.ndim - 2)
    return (w.astype(np.float64) * s.reshape(shape)).astype(w.dtype)


def _consumers(graph: Any, name: str) -> list[Any]:
    return [n for n in graph.node if name in n.input]


def _conv_fold_target(graph: Any, input_name: str) -> tuple[Any, Any] | None:
    """(Conv node, weight initializer) when the input feeds exactly one group-1 Conv with its own FP32 weight."""
    consumers = _consumers(graph, input_name)
    if len(consumers) != 1 or consumers[0].op_type != "Conv" or list(consumers[0].input).index(input_name) != 0:
        return None
    conv = consumers[0]
    if any(a.name == "group" and a.i != 1 for a in conv.attribute):
        return None
    inits = {i.name: i for i in graph.initializer}
    weight = inits.get(conv.input[1]) if len(conv.input) > 1 else None
    if weight is None or weight.data_type != 1 or len(_consumers(graph, weight.name)) != 1:
        return None
    return conv, weight


def fold_mode_for(model: Any, prefer_conv: bool) -> str:
    """``conv`` where requested and the graph allows it exactly, else ``input-mul``."""
    graph = model.graph
    if prefer_conv and _conv_fold_target(graph, graph.input[0].name) is not None:
        return "conv"
    return "input-mul"


def fold_channel_scale(model: Any, scale: Sequence[float], mode: str) -> Any:
    """A copy of ``model`` (ONNX ModelProto) whose first input is multiplied by ``scale[c]`` per channel.

    Raises:
        DeployConfigError: unknown mode, or ``conv`` where the graph has no foldable first Conv.
    """
    from onnx import helper, numpy_helper

    if mode not in FOLD_MODES:
        raise DeployConfigError(f"fold mode must be one of {FOLD_MODES}, received {mode!r}")
    out = copy.deepcopy(model)
    graph = out.graph
    input_name = graph.input[0].name
    if mode == "conv":
        target = _conv_fold_target(graph, input_name)
        if target is None:
            raise DeployConfigError("the model's input does not feed a single group-1 Conv with its own FP32 weight")
        _conv, weight = target
        folded = scale_conv_input_channels(numpy_helper.to_array(weight), scale)
        weight.CopyFrom(numpy_helper.from_array(folded, weight.name))
        return out
    raw = input_name + RAW_INPUT_SUFFIX
    scale_name = input_name + "_channel_scale"
    graph.input[0].name = raw
    channels = len(scale)
    graph.initializer.append(numpy_helper.from_array(np.asarray(scale, np.float32).reshape(1, channels, 1, 1), scale_name))
    graph.node.insert(0, helper.make_node("Mul", [raw, scale_name], [input_name], name="/edgeres/channel_scale/Mul"))
    return out
