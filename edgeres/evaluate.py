"""Run a model over a Dataset (onnxruntime CPU, or PyTorch) and compare outputs; top-1 counts.

Used by calibration (FP32 vs INT8), the build stage, benchmarks and the
reference model's recorded accuracy. Accuracy and agreement are top-1; SQNR is
``10*log10(sum(ref**2) / sum((ref-out)**2))``. torch and onnxruntime are
imported inside the functions that use them. A dataset is anything with
``batches(batch_size)``, ``labels`` and ``source`` (an :class:`edgeres.data.Dataset`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from edgeres.errors import DataError


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    """``labels`` as int64, after checking they are integer class indices of a ``num_classes``-class model.

    Checked in the labels' own dtype, so a huge uint64 cannot wrap to a valid
    index. Used where labels are read (:mod:`edgeres.data`, with the recipe's
    classes) and where they meet a model's logits (calibration, benchmarks).

    Raises:
        DataError: non-integer (or boolean) labels, negative ones, or labels of classes the model lacks.
    """
    labels = np.asarray(labels)
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: expected integer class labels, received dtype {labels.dtype}")
    if labels.size:
        low, high = labels.min(), labels.max()
        if low < 0 or high >= num_classes:
            raise DataError(
                f"{where}: labels range over [{low}, {high}], expected class indices 0 to {num_classes - 1} "
                f"(the model has {num_classes} classes); are these labels for another model?"
            )
    return labels.astype(np.int64)


def onnx_session(model: Any, *, threads: int = 0) -> Any:
    """A CPU onnxruntime session from a path, bytes or ModelProto."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif isinstance(model, os.PathLike):
        model = os.fspath(model)
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def run_onnx(model: Any, dataset: Any, *, batch_size: int = 64, session: Any = None) -> np.ndarray:
    """First output of ``model`` for every sample of ``dataset``, concatenated (float32)."""
    session = session or onnx_session(model)
    input_name = session.get_inputs()[0].name
    outputs = []
    for images, _ in dataset.batches(batch_size):
        outputs.append(session.run(None, {input_name: images})[0])
    if not outputs:
        raise DataError("evaluation dataset is empty")
    return np.concatenate(outputs, axis=0).astype(np.float32)


def sqnr_db(reference: np.ndarray, result: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when identical)."""
    ref = reference.astype(np.float64)
    noise = float(np.sum((ref - result.astype(np.float64)) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(signal / noise)) if signal > 0 else float("-inf")


def compare_logits(reference: np.ndarray, result: np.ndarray, labels: np.ndarray | None = None) -> dict[str, float | None]:
    """Agreement of two (N, classes) logit arrays, plus accuracy of each when labels are given.

    Returns:
        top1_agreement (fraction of samples with the same argmax), accuracy_ref,
        accuracy (None without labels), sqnr_db, cosine, max_abs, samples.
    """
    from edgeres.export import output_agreement

    if reference.shape != result.shape:
        raise DataError(f"logit shapes differ: reference {reference.shape} vs result {result.shape}")
    ref_top = reference.argmax(axis=1)
    out_top = result.argmax(axis=1)
    max_abs, cosine = output_agreement(reference, result)
    accuracy_ref = accuracy = None
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape[0] != reference.shape[0]:
            raise DataError(f"{labels.shape[0]} labels for {reference.shape[0]} samples")
        labels = check_labels(labels, reference.shape[1], "evaluation labels")
        accuracy_ref = float(np.mean(ref_top == labels))
        accuracy = float(np.mean(out_top == labels))
    return {
        "samples": int(reference.shape[0]),
        "top1_agreement": float(np.mean(ref_top == out_top)),
        "accuracy_ref": accuracy_ref,
        "accuracy": accuracy,
        "sqnr_db": sqnr_db(reference, result),
        "cosine": float(cosine),
        "max_abs": float(max_abs),
    }


def top1_correct(logits: np.ndarray, labels: np.ndarray) -> int:
    """Number of rows of (N, classes) ``logits`` whose argmax equals the label."""
    return int((np.asarray(logits).argmax(1) == np.asarray(labels)).sum())


def _labelled(dataset: Any) -> Any:
    if dataset.labels is None:
        raise DataError(f"{dataset.source} has no labels; top-1 needs labels")
    return dataset


def top1_correct_torch(model: Any, dataset: Any, batch_size: int = 64) -> int:
    """Number of samples of a labelled ``dataset`` whose PyTorch argmax equals the label."""
    import torch

    correct = 0
    with torch.inference_mode():
        for images, labels in _labelled(dataset).batches(batch_size):
            correct += top1_correct(model(torch.from_numpy(images)).numpy(), labels)
    return correct


def top1_correct_onnxruntime(onnx_path: str | os.PathLike[str], dataset: Any, batch_size: int = 64) -> int:
    """Number of samples of a labelled ``dataset`` whose ONNX Runtime (CPU, 2 threads) argmax equals the label."""
    session = onnx_session(os.fspath(onnx_path), threads=2)
    input_name = session.get_inputs()[0].name
    correct = 0
    for images, labels in _labelled(dataset).batches(batch_size):
        correct += top1_correct(session.run(None, {input_name: images})[0], labels)
    return correct
