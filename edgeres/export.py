"""Folded FP32 model -> ONNX, checked against PyTorch with onnxruntime.

Names: the input is ``input``, the output ``logits``; node and tensor names
come from the module names (``/layer1/layer1.0/conv1/Conv``, weights
``layer1.0.conv1.weight``) so later stages can map a PyTorch layer to its
ONNX tensors.
"""

from __future__ import annotations

import dataclasses
import io
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from edgeres._io import atomic_path, check_writable_parent
from edgeres.errors import ExportError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17
# the oldest opset export writes: TensorRT 8.2's parser documents opset <= 13 (edgeres.trt_rules 'onnx-opset-8.2'),
# and per-channel QuantizeLinear/DequantizeLinear (axis) need 13; every op of a ResNet exists at 13
MIN_OPSET = 13


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What an export produced and how closely ONNX matches PyTorch."""

    path: str
    opset: int
    input_shape: tuple[int | str, ...]
    output_shape: tuple[int | str, ...]
    max_abs_error: float
    cosine: float
    num_nodes: int
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def max_export_opset() -> int:
    """The newest opset torch's TorchScript exporter (``dynamo=False``, what edgeres uses) writes.

    torch/onnx/_constants.py ``ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET`` (20 in torch 2.1 .. 2.13);
    ``edgeres.cli._options.MAX_OPSET`` mirrors it for ``--opset`` (a test checks they agree).
    """
    from torch.onnx import _constants

    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))


def onnx_bytes_from_model(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    dynamic_batch: bool = True,
    opset: int = DEFAULT_OPSET,
) -> bytes:
    """Serialize ``model`` to ONNX bytes with edgeres' I/O names, checked and shape-inferred."""
    import onnx

    top = max_export_opset()
    if not MIN_OPSET <= opset <= top:
        raise ExportError(f"opset must be in {MIN_OPSET}..{top} (13: what TensorRT 8.2's parser reads; {top}: what "
                          f"torch {torch.__version__}'s TorchScript exporter writes), received {opset}")
    if model.training:
        raise ExportError("export needs eval mode; call model.eval() first (received a model in training mode)")
    dummy = torch.zeros(*input_shape)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            buf,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load_from_string(buf.getvalue())
    fold_constant_nodes(proto)
    return checked_onnx(proto, "exported ONNX fails onnx.checker").SerializeToString()


def checked_onnx(proto: Any, failure: str) -> Any:
    """Shape-inferred, edgeres-stamped copy of ``proto`` that passes ``onnx.checker`` (full check).

    Raises:
        ExportError: ``failure: <checker message>``.
    """
    import onnx

    proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    proto.producer_name = "edgeres"
    try:
        # full_check=True would repeat the strict shape inference just run (onnx/checker.cc check_model:
        # full_check runs InferShapes with check_type and strict errors, data propagation off); the rest is the same
        onnx.checker.check_model(proto, full_check=False)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{failure}: {exc}") from exc
    return proto


def fold_constant_nodes(proto: Any) -> None:
    """Replace every node whose inputs are all constant by initializers, in place.

    Removes the exporter's ``Identity`` aliases of de-duplicated weights (so
    each conv keeps its own module-named weight and bias) and the constant
    shape arithmetic around ``Pad``, leaving TensorRT a plain graph.
    """
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = proto.graph
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    graph_inputs = {i.name for i in graph.input}
    outputs = {o.name for o in graph.output}
    kept = []
    new_inits = []
    for node in graph.node:
        inputs = [n for n in node.input if n]
        foldable = (
            all(n in consts and n not in graph_inputs for n in inputs)
            and not any(o in outputs for o in node.output)
            and node.domain in ("", "ai.onnx")
        )
        if not foldable:
            kept.append(node)
            continue
        if node.op_type == "Identity":
            values = [consts[inputs[0]]]
        else:
            sub = onnx.helper.make_graph(
                [node],
                "fold",
                [],
                [onnx.helper.make_value_info(o, onnx.TypeProto()) for o in node.output],
                [numpy_helper.from_array(consts[n], n) for n in inputs],
            )
            model = onnx.helper.make_model(sub, opset_imports=list(proto.opset_import))
            values = ReferenceEvaluator(model).run(None, {})
        for name, value in zip(node.output, values):
            value = np.asarray(value)
            consts[name] = value
            new_inits.append(numpy_helper.from_array(value, name))
    if len(kept) == len(graph.node):
        return
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(new_inits)
    used = {n for node in graph.node for n in node.input} | outputs
    live = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)


def compare_onnx_with_torch(
    model: nn.Module, onnx_bytes: bytes, inputs: np.ndarray
) -> tuple[float, float]:
    """Run both on ``inputs``; return (max abs error, cosine similarity) of the outputs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run([OUTPUT_NAME], {INPUT_NAME: inputs})
    with torch.no_grad():
        torch_out = model(torch.from_numpy(inputs)).numpy()
    return output_agreement(torch_out, onnx_out)


def output_agreement(reference: np.ndarray, result: np.ndarray) -> tuple[float, float]:
    """(max abs error, cosine similarity) of two output arrays, flattened."""
    a = reference.astype(np.float64).ravel()
    b = result.astype(np.float64).ravel()
    max_abs = float(np.max(np.abs(a - b))) if a.size else 0.0
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))
    return max_abs, cosine


def realistic_inputs(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Image-like normalized inputs: smooth random fields, not white noise."""
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    coarse = rng.uniform(0.0, 1.0, size=(n, c, max(h // 8, 1), max(w // 8, 1)))
    image = np.kron(coarse, np.ones((1, 1, 8, 8)))[:, :, :h, :w]
    if image.shape[2:] != (h, w):
        image = np.pad(image, ((0, 0), (0, 0), (0, h - image.shape[2]), (0, w - image.shape[3])), mode="edge")
    image = image + rng.normal(0.0, 0.05, size=image.shape)
    return ((image - 0.45) / 0.225).astype(np.float32)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    input_shape: Sequence[int],
    *,
    dynamic_batch: bool = True,
    opset: int = DEFAULT_OPSET,
    check_batch: int = 2,
    max_abs_tol: float = 1e-3,
    min_cosine: float = 0.99999,
    check_inputs: np.ndarray | None = None,
) -> ExportReport:
    """Export ``model`` to ``path`` (atomically) and check it against PyTorch.

    Args:
        model: eval-mode module, normally already BN-folded.
        path: output ``.onnx`` path; its folder must exist.
        input_shape: (N, C, H, W) used for tracing; N is ignored when ``dynamic_batch``.
        dynamic_batch: make the batch axis symbolic (``batch``).
        opset: ONNX opset, at least 13 (17 by default; 13 for TensorRT 8.2 targets).
        check_batch: batch size of the parity check (dynamic exports only).
        max_abs_tol: largest allowed max-abs error relative to max |logit| (at least 1).
        min_cosine: smallest allowed cosine similarity.
        check_inputs: inputs for the parity check (image-like random if None).

    Raises:
        ExportError: the export fails, or ONNX disagrees with PyTorch.
        OutputPathError: ``path`` cannot be written.
    """
    import onnx

    path = check_writable_parent(path)
    data = onnx_bytes_from_model(model, input_shape, dynamic_batch=dynamic_batch, opset=opset)
    if check_inputs is None:
        shape = (check_batch if dynamic_batch else input_shape[0], *input_shape[1:])
        check_inputs = realistic_inputs(shape)
    max_abs, cosine = compare_onnx_with_torch(model, data, check_inputs)
    with torch.no_grad():
        scale = max(1.0, float(model(torch.from_numpy(check_inputs)).abs().max()))
    if not (max_abs <= max_abs_tol * scale and cosine >= min_cosine):
        raise ExportError(
            f"ONNX output disagrees with PyTorch: max abs error {max_abs:.3e} "
            f"(tolerance {max_abs_tol * scale:.1e}), cosine {cosine:.7f} (minimum {min_cosine})"
        )
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    proto = onnx.load_from_string(data)
    return ExportReport(
        path=str(path),
        opset=opset,
        input_shape=_value_shape(proto.graph.input[0]),
        output_shape=_value_shape(proto.graph.output[0]),
        max_abs_error=max_abs,
        cosine=cosine,
        num_nodes=len(proto.graph.node),
        size_bytes=len(data),
    )


def _value_shape(value: Any) -> tuple[int | str, ...]:
    return tuple(d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim)
