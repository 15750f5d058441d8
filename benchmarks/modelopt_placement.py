"""edgeres' INT8 Q/DQ placement against NVIDIA ModelOpt's, node by node, on ResNet-18 and ResNet-50.

For every node of the FP32 graph and every input of it, both Q/DQ models are asked:
is this input read through a DequantizeLinear, of which tensor, per tensor or per
channel (and on which axis)? Every difference is listed with its explanation
(:data:`EXPLAINED`); a difference without one fails the run.

ModelOpt (``modelopt.onnx.quantization.quantize``, int8, ``max`` calibration, CPU EP,
its defaults otherwise) runs in its own venv through ``calibration_peers.py``'s child
runner, on 8 random images: the placement depends on the graph, not on the data.
edgeres' side is :func:`edgeres.calibrate.qdq.qdq_model` with its defaults, in both
weight forms. Models: random-init torchvision-layout ResNet-18/50, BN folded, 224x224.

Get ModelOpt (CPU only is enough)::

    python -m venv /tmp/modelopt-venv
    /tmp/modelopt-venv/bin/pip install 'nvidia-modelopt[onnx]==0.47.*' onnxruntime

Usage:
    python benchmarks/modelopt_placement.py [--python /tmp/modelopt-venv/bin/python] [--out FILE]
    (or EDGERES_MODELOPT_PYTHON=...)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _common import write_report  # benchmarks/ is sys.path[0] when run as a script

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
DEFAULT_PYTHON = os.environ.get("EDGERES_MODELOPT_PYTHON", "/tmp/modelopt-venv/bin/python")

# (consumer op, what edgeres does, what ModelOpt does) -> why; keys are matched by classify()
EXPLAINED: dict[str, str] = {
    "maxpool-input": (
        "ModelOpt also quantizes the stem ReLU output before MaxPool (MaxPool is in its quantizable ops with "
        "ForceQuantizeNoInputCheck). edgeres does not: max pooling commutes with per-tensor Q/DQ, and TensorRT "
        "propagates the Q of the MaxPool output (which both quantize) backward over the MaxPool (developer guide, "
        "'Q/DQ propagation': commuting layers such as max-pooling), so MaxPool runs in INT8 either way; ModelOpt's "
        "extra pair first rounds the ReLU output with its own, different scale: one rounding more. The cache gives "
        "the ReLU output the MaxPool output's scale, so the implicit path computes what model.qdq.onnx states."
    ),
    "flatten-input": (
        "ModelOpt quantizes the GlobalAveragePool output before Flatten (Flatten is a QDQ op in onnxruntime's "
        "registry that ModelOpt keeps) although the classifier after it stays unquantized. edgeres leaves it: the "
        "pair's only INT8 consumer would be a shape op and the Gemm reads FP16/FP32 anyway, so it would only add "
        "a rounding to the classifier's input. With --quantize-classifier edgeres quantizes the Gemm input (the Flatten output), "
        "which TensorRT propagates over the Flatten."
    ),
}


def build(arch: str, folder: Path) -> tuple[Path, Path]:
    import torch

    from edgeres.export import export_onnx
    from edgeres.fold import fold_batchnorm
    from edgeres.models import create_model

    torch.manual_seed(0)
    images = np.random.default_rng(0).standard_normal((8, 3, 224, 224)).astype(np.float32)
    folded = fold_batchnorm(create_model(arch).eval(), torch.from_numpy(images[:4]))
    path = folder / f"{arch}.onnx"
    export_onnx(folded, path, (1, 3, 224, 224), check_inputs=images[:2])
    np.save(folder / f"{arch}_calib.npy", images)
    return path, folder / f"{arch}_calib.npy"


def run_modelopt(python: str, model: Path, calib: Path, out: Path) -> None:
    cmd = [python, str(HERE.parent / "calibration_peers.py"), "--child", "modelopt", "max", str(model), str(calib), str(out), "8"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError("ModelOpt failed: " + " | ".join(proc.stderr.strip().splitlines()[-4:]))


def _source_name(model: Any, tensor: str) -> str:
    """The FP32-graph name of a quantized tensor: ModelOpt's FP16 rewrite casts the graph input first."""
    producers = {o: n for n in model.graph.node for o in n.output}
    inputs = {i.name for i in model.graph.input}
    node = producers.get(tensor)
    if node is not None and node.op_type == "Cast" and node.input[0] in inputs:
        return node.input[0]
    return tensor


def reads(model: Any) -> dict[tuple[str, int], tuple[str, str]]:
    """(node name, input index) -> (quantized tensor, 'per-tensor' or 'axis N') for inputs read through a DQ."""
    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: i for i in model.graph.initializer}
    out: dict[tuple[str, int], tuple[str, str]] = {}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Cast"):
            continue
        for k, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            src = q.input[0] if q is not None and q.op_type == "QuantizeLinear" else dq.input[0].removesuffix("_quantized")
            scale = inits.get(dq.input[1])
            per_channel = scale is not None and len(scale.dims) > 0 and int(np.prod(scale.dims)) > 1
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            out[(node.name, k)] = (_source_name(model, src), f"axis {axis}" if per_channel else "per-tensor")
    return out


def classify(fp32: Any, node_name: str, k: int) -> str | None:
    nodes = {n.name: n for n in fp32.graph.node}
    op = nodes[node_name].op_type
    return {"MaxPool": "maxpool-input", "Flatten": "flatten-input"}.get(op)


def compare(fp32: Any, ours: Any, theirs: Any) -> tuple[list[str], int, bool]:
    a, b = reads(ours), reads(theirs)
    lines, ok = [], True
    nodes = {n.name: n for n in fp32.graph.node}
    same = 0
    for key in sorted(set(a) | set(b), key=lambda kk: ([n.name for n in fp32.graph.node].index(kk[0]) if kk[0] in nodes else -1, kk[1])):
        if key[0] not in nodes:
            continue
        if a.get(key) == b.get(key):
            same += 1
            continue
        why = classify(fp32, *key)
        ok &= why is not None
        lines.append(f"  {nodes[key[0]].op_type} {key[0]} input {key[1]}: edgeres {a.get(key) or 'not quantized'}; "
                     f"ModelOpt {b.get(key) or 'not quantized'} -> {why or 'UNEXPLAINED'}")
    return lines, same, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=DEFAULT_PYTHON, help="python of the ModelOpt venv (env EDGERES_MODELOPT_PYTHON)")
    parser.add_argument("--arch", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import onnx

    from edgeres.calibrate.qdq import qdq_model
    from edgeres.calibrate.stats import observed_tensors

    version = subprocess.run([args.python, "-c", "import modelopt; print(modelopt.__version__)"], capture_output=True, text=True)
    lines = [f"ModelOpt {version.stdout.strip() or '?'} ({args.python}), int8, max calibration, CPU EP, defaults otherwise",
             "edgeres: qdq_model() defaults (TensorRT placement, classifier unquantized); weight axis compared on both forms"]
    ok = True
    with tempfile.TemporaryDirectory(prefix="edgeres-mo-place-") as tmp:
        for arch in args.arch:
            model_path, calib = build(arch, Path(tmp))
            mo_path = Path(tmp) / f"{arch}.modelopt.onnx"
            run_modelopt(args.python, model_path, calib, mo_path)
            fp32, theirs = onnx.load(str(model_path)), onnx.load(str(mo_path))
            scales = {n: 0.01 for n in observed_tensors(fp32)}
            graph_notes = []
            if any(n.op_type == "Cast" for n in theirs.graph.node):
                graph_notes.append("ModelOpt rewrote the graph to FP16 (high_precision_dtype='fp16': Cast after the input, "
                                   "FP16 weights and scales); edgeres keeps model.qdq.onnx FP32 and writes the FP16 form "
                                   "for TensorRT 11 with edgeres.precision")
            for form in ("int8", "fp32"):
                ours = qdq_model(fp32, scales, weight_form=form)
                diff, same, good = compare(fp32, ours, theirs)
                ok &= good
                lines.append(f"- {arch}, edgeres weight form {form}: {same} node inputs read the same Q/DQ "
                             f"(tensor and scale axis), {len(diff)} differ")
                lines += diff
            mo_weights = sum(1 for n in theirs.graph.node if n.op_type == "QuantizeLinear" and n.input[0].endswith("weight"))
            lines.append(f"  weights: ModelOpt states {mo_weights} weights as FP16/FP32 -> QuantizeLinear -> DequantizeLinear "
                         "(AddQDQPairToWeight), i.e. edgeres' fp32 form (model.qdq.trt8.onnx); model.qdq.onnx holds them "
                         "pre-quantized (TensorRT 10+)")
            lines += [f"  {note}" for note in graph_notes]
    lines.append("explanations:")
    lines += [f"  {key}: {text}" for key, text in EXPLAINED.items()]
    lines.append(f"result: {'every difference explained' if ok else 'UNEXPLAINED differences'}")
    write_report(lines, args.out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
