"""Q/DQ (explicit quantization) ONNX from a folded FP32 model and activation scales.

Placement follows TensorRT's documented recommendations for explicit quantization
(and matches NVIDIA ModelOpt 0.47's INT8 placement on ResNets except where
``benchmarks/results/modelopt_placement.txt`` explains otherwise):

* every Conv/Gemm activation input gets QuantizeLinear -> DequantizeLinear with
  its calibrated per-tensor scale (zero point 0, INT8), except the classifier
  (see below);
* every Conv/Gemm weight is quantized per output channel (axis 0; axis 1 for a
  Gemm without ``transB``), in one of two forms chosen per TensorRT version
  (:data:`WEIGHT_FORM_RULES`);
* the residual input of each Add that follows a Conv is quantized (the input
  that is not the Conv's own output), so TensorRT can fuse the Add into the
  Conv and keep its output in INT8;
* the input of every GlobalAveragePool is quantized: pooling does not commute
  with Q/DQ, so TensorRT runs it in INT8 only when its input is quantized
  (TensorRT developer guide, "Q/DQ layer-placement recommendations";
  ModelOpt quantizes it too);
* one Q/DQ pair per tensor, shared by all its consumers (ModelOpt's
  ``DedicatedQDQPair: False``; ``modelopt/onnx/quantization/ort_utils.py``);
* outputs of weighted layers are not quantized and biases stay FP32, so Conv,
  bias, residual Add and ReLU fuse into one INT8 kernel;
* the classifier (a Gemm/MatMul whose output reaches a graph output without
  another weighted layer) stays unquantized by default, as ModelOpt does: its
  GEMV at batch 1 gains nothing from INT8 (``find_nodes_from_matmul_to_exclude``
  in ``modelopt/onnx/quantization/graph_utils.py``: "m or n is 1 ... cannot
  utilize TensorCores"; also "K or N < 16"). ``quantize_classifier=True`` keeps it.

``placement="onnxruntime"`` additionally quantizes Conv and Add outputs, the
pattern onnxruntime's CPU provider needs to select its INT8 kernels
(QLinearConv, QLinearAdd), with a dedicated Q/DQ pair per consumer (onnxruntime
fuses a pair into its kernels only when it has a single consumer). Where such
an output feeds a ReLU whose output is quantized, it reuses that scale: ReLU
commutes with zero-point-0 quantization, so this adds no rounding. Outputs
feeding an Add get their own scale (one extra rounding TensorRT does not do),
so this variant is for CPU deployment and latency; accuracy is measured on the
TensorRT placement.

``placement="dla"`` is NVIDIA ModelOpt's DLA placement (``quantize(..., target_dla=True)``,
``--target_dla``; NVIDIA/Model-Optimizer PR #1661, ``modelopt/onnx/quantization/int8.py``
``quantize``: with ``target_dla`` every op type of the model is quantizable, ``nodes_to_quantize`` is
every node, and neither the GEMV exclusion ``find_nodes_from_matmul_to_exclude`` nor the small-Conv
exclusion ``find_nodes_from_convs_to_exclude`` runs; ``ort_utils.configure_ort`` keeps outputs
unquantized and one pair per tensor). What that yields on a ResNet (ModelOpt 0.47 run on ResNet-18/50,
``benchmarks/results/modelopt_dla_placement.txt``; :data:`DLA_PLACEMENT_RULE`): every activation
input of every node is read through Q/DQ, i.e. the graph input, both inputs of every Add (the Conv
output too), the MaxPool and GlobalAveragePool inputs and outputs, the Flatten output and the
classifier Gemm with its weight; only tensors read by nothing but a ReLU are not (onnxruntime's
``QDQRemovableActivation`` leaves a ReLU whose input is not quantized alone). TensorRT 11 compiles the
whole DLA region as one loadable that needs an INT8 scale on every tensor (PR #1661: "it expects
scales to be present throughout"; NVIDIA's YOLOv5-on-Orin DLA QAT study: "the more available scales,
the lower the latency"). :func:`~edgeres.calibrate.api.calibrate` gives it the calibration cache's
scales (:func:`~edgeres.calibrate.cache.cache_scales`, one scale per tensor), so a TensorRT 11 DLA
engine from this model computes what the implicit TensorRT 8.5-10.x DLA engine computes from
``model.onnx`` + ``calib.cache``. Weights are INT8 (the
TensorRT 10+ form); the file is ``model.qdq.dla.onnx`` (:data:`DLA_QDQ_NAME`). Not verified on a
DLA: no TensorRT or Orin here.

Not verified here (no TensorRT on the build machine): that each TensorRT version
parses and fuses these graphs as its documentation and parser source say.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

import numpy as np

from edgeres.calibrate.calibrators import quantize_weight, weight_scales
from edgeres.errors import CalibrationError
from edgeres.tensorrt_version import parse_version

QUANTIZED_OPS = ("Conv", "Gemm")
POOLING_OPS = ("GlobalAveragePool",)  # inputs quantized: pooling does not commute with Q/DQ
PLACEMENTS = ("tensorrt", "onnxruntime", "dla")
DLA_QDQ_NAME = "model.qdq.dla.onnx"  # placement "dla", INT8 weights: TensorRT 11.x INT8 on DLA
# placement -> whether the classifier Gemm is quantized when quantize_classifier is not given: ModelOpt
# excludes it as a GEMV except with target_dla (int8.py: "if enable_gemv_detection_for_trt and not
# (autotune or kwargs.get('target_dla', False))")
CLASSIFIER_QUANTIZED_BY_DEFAULT = {"tensorrt": False, "onnxruntime": False, "dla": True}
# ops whose input ModelOpt's DLA placement leaves unquantized: onnxruntime's QDQRemovableActivation
# (onnxruntime/python/tools/quantization/operators/activation.py: "If input to this node is not quantized
# then keep this node"), and ModelOpt disables output quantization, so nothing quantizes a ReLU's input
DLA_UNQUANTIZED_INPUT_OPS = ("Relu",)
DLA_PLACEMENT_RULE = (
    "Q/DQ on every activation input of every node (graph input, both Add inputs, pooling inputs and outputs, "
    "Flatten output, classifier Gemm), one pair per tensor; not on a tensor read only by ReLU; weights per "
    "output channel (NVIDIA/Model-Optimizer PR #1661 --target_dla, modelopt/onnx/quantization/int8.py)"
)
# ops a classifier's output may pass through on its way to a graph output
_HEAD_PASS_THROUGH = ("Identity", "Softmax", "LogSoftmax", "Flatten", "Reshape", "Squeeze")


@dataclasses.dataclass(frozen=True)
class WeightFormRule:
    """How Conv/Gemm weights are stated in a Q/DQ model, and which TensorRT versions read it that way.

    ``trt_min`` is inclusive, ``trt_max`` exclusive (None: no upper bound), as (major, minor).
    """

    form: str
    file_name: str
    trt_min: tuple[int, int]
    trt_max: tuple[int, int] | None
    graph: str
    source: str


# The rule table (item 1 of issue 10). Both files carry the same scales and dequantize to the same weights.
# File names: model.qdq.onnx keeps the INT8-weight form because that name already means "the Q/DQ model
# for TensorRT 10/11" everywhere (bundles, compile, the FP16 rewrite for 11.x, --from-cache), its weights
# are the exact INT8 values edgeres evaluated, and it is a quarter of the size; the FP32-weight form is the
# addition, named for the TensorRT major that needs it (model.qdq.trt8.onnx).
WEIGHT_FORM_RULES: tuple[WeightFormRule, ...] = (
    WeightFormRule(
        form="fp32",
        file_name="model.qdq.trt8.onnx",
        trt_min=(8, 5),
        trt_max=(10, 0),
        graph="FP32 weight initializer -> QuantizeLinear -> DequantizeLinear (per output channel) -> Conv/Gemm",
        source=(
            "TensorRT 8.6 Developer Guide, 'Explicit Quantization > Quantized Weights': weights of Q/DQ models must be "
            "FP32 and are quantized by TensorRT with the scale of the IQuantizeLayer on them; NVIDIA/TensorRT#2163 "
            "(8.4.1 refuses INT8 weight constants: 'invalid weights type of Int8'); onnx/onnx-tensorrt 8.5-GA and "
            "8.6-GA builtin_op_importers.cpp QuantDequantLinearHelper (convertToTensor(inputs.at(0)) turns an INT8 "
            "initializer into an INT8 constant layer); ModelOpt 0.47 ort_utils.configure_ort 'AddQDQPairToWeight': "
            "True (its default). TensorRT 10+ accepts this form as well."
        ),
    ),
    WeightFormRule(
        form="int8",
        file_name="model.qdq.onnx",
        trt_min=(10, 0),
        trt_max=None,
        graph="INT8 weight initializer -> DequantizeLinear (per output channel) -> Conv/Gemm",
        source=(
            "TensorRT 10 documentation, 'Explicit Quantization > Quantized Weights': weights may be a high-precision "
            "type or a low-precision quantized type (INT8, ...); 'when using pre-quantized weights, an "
            "IDequantizeLayer is required between the weights and the linear operator that uses them'"
        ),
    ),
)
WEIGHT_FORMS = tuple(rule.form for rule in WEIGHT_FORM_RULES)
DEFAULT_WEIGHT_FORM = "int8"


def weight_form_rule(form: str) -> WeightFormRule:
    """The rule of a weight form (``"int8"`` or ``"fp32"``)."""
    for rule in WEIGHT_FORM_RULES:
        if rule.form == form:
            return rule
    raise CalibrationError(f"Q/DQ weight form must be one of {', '.join(WEIGHT_FORMS)}, received {form!r}")


def weight_form_for(trt_version: str) -> WeightFormRule:
    """The weight-form rule that serves ``trt_version`` (see :data:`WEIGHT_FORM_RULES`)."""
    version = parse_version(trt_version, error=CalibrationError).major_minor
    for rule in WEIGHT_FORM_RULES:
        if version >= rule.trt_min and (rule.trt_max is None or version < rule.trt_max):
            return rule
    raise CalibrationError(
        f"no Q/DQ weight form is documented for TensorRT {trt_version}: explicit quantization needs TensorRT 8.5 or newer"
    )


def weighted_nodes(model: Any) -> list[Any]:
    """Conv/Gemm nodes whose weight is an initializer, in graph order."""
    inits = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type in QUANTIZED_OPS and len(n.input) > 1 and n.input[1] in inits]


def _producers(model: Any) -> dict[str, Any]:
    return {o: n for n in model.graph.node for o in n.output}


def _consumers(model: Any) -> dict[str, list[Any]]:
    users: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    return users


def classifier_nodes(model: Any) -> list[str]:
    """Weighted Gemm nodes whose output reaches a graph output through shape/softmax ops only."""
    consumers = _consumers(model)
    outputs = {o.name for o in model.graph.output}
    found = []
    for node in weighted_nodes(model):
        if node.op_type != "Gemm":
            continue
        tensor, hops = node.output[0], 0
        while tensor not in outputs and hops < 8:
            users = consumers.get(tensor, [])
            if len(users) != 1 or users[0].op_type not in _HEAD_PASS_THROUGH:
                break
            tensor, hops = users[0].output[0], hops + 1
        if tensor in outputs:
            found.append(node.name)
    return found


def _default_excluded(model: Any, exclude: Iterable[str], quantize_classifier: bool) -> set[str]:
    excluded = set(exclude)
    if not quantize_classifier:
        excluded |= set(classifier_nodes(model))
    return excluded


def residual_adds(model: Any) -> dict[str, list[str]]:
    """Each Add of two activations -> the input(s) TensorRT wants quantized, in graph order.

    The input that is not a Conv output is the residual; when both are Conv
    outputs (a projection shortcut) the second one, torchvision's ``identity``,
    is quantized and the first keeps the fusion.
    """
    producers = _producers(model)
    consumers = _consumers(model)
    inits = {i.name for i in model.graph.initializer}
    chosen: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2 or any(i in inits for i in node.input):
            continue
        from_conv = [
            producers.get(i) is not None and producers[i].op_type == "Conv" and len(consumers.get(i, [])) == 1
            for i in node.input
        ]
        if from_conv == [True, False]:
            chosen[node.name] = [node.input[1]]
        elif from_conv in ([False, True], [True, True]):
            chosen[node.name] = [node.input[0] if from_conv == [False, True] else node.input[1]]
        else:
            chosen[node.name] = list(node.input)
    return chosen


def residual_add_inputs(model: Any, exclude: Iterable[str] = ()) -> list[str]:
    """Residual Add inputs to quantize (Adds named in ``exclude`` left out), in graph order."""
    excluded = set(exclude)
    names: list[str] = []
    for add, inputs in residual_adds(model).items():
        if add not in excluded:
            names += [i for i in inputs if i not in names]
    return names


def pooling_nodes(model: Any) -> list[Any]:
    """GlobalAveragePool nodes (their input is quantized), in graph order."""
    return [n for n in model.graph.node if n.op_type in POOLING_OPS]


def quantizable_layers(model: Any, *, quantize_classifier: bool = False) -> list[str]:
    """Names of the nodes an accuracy budget may leave unquantized: Conv/Gemm, residual Adds, pooling.

    The classifier is listed only with ``quantize_classifier`` (otherwise it is never quantized).
    """
    adds = residual_adds(model)
    pools = {n.name for n in pooling_nodes(model)}
    weighted = {n.name for n in weighted_nodes(model)} - _default_excluded(model, (), quantize_classifier)
    return [n.name for n in model.graph.node if n.name in weighted or n.name in adds or n.name in pools]


def unquantized_layers(model: Any, exclude: Iterable[str] = (), *, quantize_classifier: bool = False) -> list[str]:
    """Conv/Gemm nodes left at higher precision: ``exclude`` plus the classifier unless quantized, in graph order."""
    excluded = _default_excluded(model, exclude, quantize_classifier)
    return [n.name for n in weighted_nodes(model) if n.name in excluded]


def quantized_activations(model: Any, exclude: Iterable[str] = (), *, quantize_classifier: bool = False) -> list[str]:
    """Tensors that get Q/DQ in the TensorRT placement, in graph order of their first consumer."""
    excluded = _default_excluded(model, exclude, quantize_classifier)
    adds = residual_adds(model)
    weighted = {n.name for n in weighted_nodes(model)}
    names: list[str] = []
    for node in model.graph.node:
        if node.name in excluded:
            continue
        if node.name in weighted or node.op_type in POOLING_OPS:
            wanted = [node.input[0]]
        else:
            wanted = [i for i in adds.get(node.name, ()) if i in node.input]
        names += [t for t in wanted if t not in names]
    return names


def dla_quantized_activations(model: Any, exclude: Iterable[str] = ()) -> list[str]:
    """Tensors that get Q/DQ in the DLA placement (:data:`DLA_PLACEMENT_RULE`), in graph order of first use.

    Every activation read by a node other than a ReLU: float graph inputs and node outputs, not
    initializers or Constant outputs (node output types are not checked, as in
    :func:`~edgeres.calibrate.cache.cache_tensors`: integer shape tensors would be listed too; the
    ResNets have none). A node named in ``exclude`` reads all its inputs unquantized (for an Add:
    both, where the TensorRT placement leaves only the residual one).
    """
    graph = model.graph
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    activations = {v.name for v in graph.input if v.type.tensor_type.elem_type == 1}
    activations |= {o for n in graph.node for o in n.output}
    excluded = set(exclude)
    names: list[str] = []
    for node in graph.node:
        if node.op_type in DLA_UNQUANTIZED_INPUT_OPS or node.op_type == "Constant" or node.name in excluded:
            continue
        names += [t for t in node.input if t and t in activations and t not in constants and t not in names]
    return names


def _output_scales(model: Any, quantized: list[str], scales: Mapping[str, float], excluded: set[str]) -> dict[str, float]:
    """Extra output Q/DQ of the onnxruntime placement: tensor -> scale."""
    consumers = _consumers(model)
    graph_outputs = {o.name for o in model.graph.output}
    extra: dict[str, float] = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Add") or node.name in excluded:
            continue
        out = node.output[0]
        if out in quantized or out in graph_outputs:
            continue
        users = consumers.get(out, [])
        if len(users) == 1 and users[0].op_type == "Relu" and users[0].output[0] in quantized:
            extra[out] = scales[users[0].output[0]]
        elif node.op_type == "Conv" and out in scales:
            extra[out] = scales[out]
    return extra


def _weight_axis(node: Any, weight: np.ndarray) -> tuple[np.ndarray, int]:
    """(weight with output channels first, the ONNX axis of the output channels)."""
    if node.op_type == "Gemm" and not next((a.i for a in node.attribute if a.name == "transB"), 0):
        return weight.T, 1
    return weight, 0


def weight_qdq(
    node: Any, weight: np.ndarray, w_name: str, form: str, scale_dtype: Any = np.float32
) -> tuple[list[Any], list[Any], str]:
    """(initializers, nodes, dequantized tensor name) stating one layer's weight in ``form``.

    ``form="int8"``: INT8 initializer ``<w>_quantized`` -> DequantizeLinear. ``form="fp32"``: the FP32
    initializer ``<w>`` -> QuantizeLinear -> DequantizeLinear. Both use the same per-channel scales
    (``<w>_scale``) and dequantize to the same values: QuantizeLinear rounds half to even and saturates
    exactly as :func:`~edgeres.calibrate.calibrators.quantize_weight` does.
    """
    from onnx import helper, numpy_helper

    weight_form_rule(form)  # raises with the list of forms
    channels_first, axis = _weight_axis(node, weight.astype(np.float32))
    w_scales = weight_scales(channels_first).astype(scale_dtype)
    zero = numpy_helper.from_array(np.zeros(w_scales.shape, dtype=np.int8), f"{w_name}_zero_point")
    scale = numpy_helper.from_array(w_scales, f"{w_name}_scale")
    dq_out = f"{w_name}_dequantized"
    if form == "int8":
        q = quantize_weight(channels_first, w_scales.astype(np.float32))
        q = np.ascontiguousarray(q.T) if axis == 1 else q
        inits = [numpy_helper.from_array(q, f"{w_name}_quantized"), scale, zero]
        nodes = [helper.make_node("DequantizeLinear", [f"{w_name}_quantized", scale.name, zero.name], [dq_out],
                                  name=f"{w_name}_DequantizeLinear", axis=axis)]
    else:  # "fp32"
        inits = [scale, zero]
        nodes = [
            helper.make_node("QuantizeLinear", [w_name, scale.name, zero.name], [f"{w_name}_quantized"],
                             name=f"{w_name}_QuantizeLinear", axis=axis),
            helper.make_node("DequantizeLinear", [f"{w_name}_quantized", scale.name, zero.name], [dq_out],
                             name=f"{w_name}_DequantizeLinear", axis=axis),
        ]
    return inits, nodes, dq_out


def qdq_model(
    model: Any,
    scales: Mapping[str, float],
    *,
    exclude: Iterable[str] = (),
    placement: str = "tensorrt",
    weight_form: str = DEFAULT_WEIGHT_FORM,
    quantize_classifier: bool | None = None,
) -> Any:
    """A new ModelProto with Q/DQ nodes inserted (``model`` is not modified).

    Args:
        model: folded FP32 ONNX model.
        scales: activation tensor name -> INT8 scale (amax / 127).
        exclude: names of Conv/Gemm nodes left unquantized (run at higher precision), of
            residual Adds whose residual input stays unquantized, or of GlobalAveragePools.
        placement: ``"tensorrt"`` (the default, see module docstring), ``"onnxruntime"`` or ``"dla"``
            (ModelOpt's ``target_dla`` placement: every tensor but ReLU inputs, so ``scales`` must cover
            :func:`dla_quantized_activations`; :func:`~edgeres.calibrate.api.calibrate` passes the calibration
            cache's, :func:`~edgeres.calibrate.cache.cache_scales`; for TensorRT 11.x INT8 on DLA).
        weight_form: ``"int8"`` (pre-quantized weights, TensorRT 10+) or ``"fp32"`` (FP32 weights
            with a Q/DQ pair, TensorRT 8.5+); see :data:`WEIGHT_FORM_RULES`.
        quantize_classifier: also quantize the classifier Gemm; None: the placement's default
            (:data:`CLASSIFIER_QUANTIZED_BY_DEFAULT`: unquantized, except on DLA as ModelOpt does).

    Raises:
        CalibrationError: a tensor that needs a scale has none, or a non-positive scale.
    """
    import onnx
    from onnx import helper, numpy_helper

    if placement not in PLACEMENTS:
        raise CalibrationError(f"placement must be one of {PLACEMENTS}, received {placement!r}")
    weight_form_rule(weight_form)
    known = {n.name for n in weighted_nodes(model)}
    by_add = residual_adds(model)
    pools = {n.name for n in pooling_nodes(model)}
    unknown = sorted(set(exclude) - known - set(by_add) - pools)
    if unknown:
        raise CalibrationError(
            f"cannot exclude {unknown}: not Conv/Gemm, residual Add or pooling nodes of this model (known: {sorted(known)[:5]} ...)"
        )
    if quantize_classifier is None:
        quantize_classifier = CLASSIFIER_QUANTIZED_BY_DEFAULT[placement]
    excluded = _default_excluded(model, exclude, quantize_classifier)
    quantized = quantized_activations(model, excluded, quantize_classifier=True)
    if placement == "dla":  # every tensor (calibrate() passes the calibration cache's scales: cache_scales)
        quantized = dla_quantized_activations(model, excluded)
    act_scales: dict[str, float] = {}
    for name in quantized:
        if name not in scales:
            raise CalibrationError(f"no calibration scale for tensor {name!r}; the statistics or cache do not cover this model")
        act_scales[name] = float(scales[name])
    if placement == "onnxruntime":
        act_scales.update(_output_scales(model, quantized, scales, excluded))
    bad = {n: s for n, s in act_scales.items() if not (np.isfinite(s) and s > 0)}
    if bad:
        raise CalibrationError(f"scales must be finite and positive, received {dict(list(bad.items())[:3])}")

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {i.name: i for i in graph.initializer}
    new_inits: list[Any] = []
    zero = "qdq_zero_point_int8"
    new_inits.append(numpy_helper.from_array(np.array(0, dtype=np.int8), zero))

    scale_names: dict[str, str] = {}
    pair_count: dict[str, int] = {}
    shared_pairs: dict[str, str] = {}  # tensor -> its DequantizeLinear output (TensorRT placement)
    dedicated = placement == "onnxruntime"
    dla = placement == "dla"

    def qdq_pair(tensor: str) -> list[Any]:
        if tensor not in scale_names:
            scale_names[tensor] = f"{tensor}_scale"
            new_inits.append(numpy_helper.from_array(np.array(act_scales[tensor], dtype=np.float32), scale_names[tensor]))
        k = pair_count[tensor] = pair_count.get(tensor, -1) + 1
        suffix = "" if k == 0 else f"_{k}"
        scale = scale_names[tensor]
        return [
            helper.make_node("QuantizeLinear", [tensor, scale, zero], [f"{tensor}_quantized{suffix}"], name=f"{tensor}_QuantizeLinear{suffix}"),
            helper.make_node("DequantizeLinear", [f"{tensor}_quantized{suffix}", scale, zero], [f"{tensor}_dequantized{suffix}"], name=f"{tensor}_DequantizeLinear{suffix}"),
        ]

    def dequantized(tensor: str) -> str:
        """The DQ output a consumer reads: a dedicated pair (onnxruntime) or the tensor's one pair (TensorRT)."""
        if not dedicated and tensor in shared_pairs:
            return shared_pairs[tensor]
        pair = qdq_pair(tensor)
        nodes.extend(pair)
        shared_pairs[tensor] = pair[1].output[0]
        return pair[1].output[0]

    nodes: list[Any] = []
    output_qdq = set(act_scales) - set(quantized)
    for node in list(graph.node):
        new = helper.make_node(node.op_type, list(node.input), list(node.output), name=node.name, domain=node.domain)
        new.attribute.extend(node.attribute)
        quantize_here = node.op_type in QUANTIZED_OPS and node.name in known and node.name not in excluded
        pool_here = node.op_type in POOLING_OPS and node.name not in excluded
        for k, tensor in enumerate(node.input):
            use_dq = tensor in act_scales and (
                (dla and node.op_type not in DLA_UNQUANTIZED_INPUT_OPS and node.name not in excluded)
                or ((quantize_here or pool_here) and k == 0)
                or (node.op_type == "Add" and node.name not in excluded and tensor in by_add.get(node.name, ()))
                or tensor in output_qdq
            )
            if use_dq:
                new.input[k] = dequantized(tensor)
        if quantize_here:
            w_name = node.input[1]
            weight = numpy_helper.to_array(inits[w_name]).astype(np.float32)
            w_inits, w_nodes, dq_out = weight_qdq(node, weight, w_name, weight_form)
            new_inits += w_inits
            nodes += w_nodes
            new.input[1] = dq_out
        nodes.append(new)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep + [i for i in new_inits if i.name in used])
    del graph.value_info[:]
    if not any(o.domain in ("", "ai.onnx") and o.version >= 13 for o in out.opset_import):
        raise CalibrationError("per-channel QuantizeLinear/DequantizeLinear need opset 13 or newer; re-export the model with opset >= 13")
    onnx.checker.check_model(out)
    return out


def qdq_models_by_form(model: Any, scales: Mapping[str, float], forms: Iterable[str], **kwargs: Any) -> dict[str, Any]:
    """``{weight form: Q/DQ ModelProto}`` for each of ``forms`` (same placement and scales)."""
    return {form: qdq_model(model, scales, weight_form=form, **kwargs) for form in dict.fromkeys(forms)}


def dequantized_weights(qdq: Any) -> dict[str, np.ndarray]:
    """Weight name -> the FP32 values its Q/DQ (or DQ) chain computes, by ONNX's own definitions.

    Evaluated with ``onnx.reference`` (the ONNX operator semantics), so both weight forms can be
    compared with each other without trusting this module's arithmetic.
    """
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    inits = {i.name: i for i in qdq.graph.initializer}
    producers = _producers(qdq)
    result: dict[str, np.ndarray] = {}
    for node in qdq.graph.node:
        if node.op_type not in QUANTIZED_OPS or len(node.input) < 2:
            continue
        dq = producers.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        chain = [dq]
        q = producers.get(dq.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            chain.insert(0, q)
        needed = {i for n in chain for i in n.input if i in inits}
        graph = helper.make_graph(chain, "w", [], [helper.make_tensor_value_info(dq.output[0], onnx.TensorProto.FLOAT, None)],
                                  [inits[n] for n in sorted(needed)])
        # onnx.reference implements Q/DQ from opset 19 on; INT8 per-axis semantics are unchanged since 13
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
        name = chain[0].input[0].removesuffix("_quantized")
        result[name] = ReferenceEvaluator(proto).run(None, {})[0]
    return result


def qdq_summary(model: Any) -> dict[str, int]:
    """Counts of Q, DQ and quantized Conv/Gemm nodes, for reports and tests."""
    ops = [n.op_type for n in model.graph.node]
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    qlayers = sum(1 for n in model.graph.node if n.op_type in QUANTIZED_OPS and n.input[0] in dq_out and n.input[1] in dq_out)
    return {"quantize": ops.count("QuantizeLinear"), "dequantize": ops.count("DequantizeLinear"), "quantized_layers": qlayers}
