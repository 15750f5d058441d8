"""edgeres' DLA Q/DQ placement (``qdq_model(placement="dla")``) against NVIDIA ModelOpt's ``--target_dla``, node by node.

ModelOpt's DLA placement (NVIDIA/Model-Optimizer PR #1661, ``quantize(..., target_dla=True)``) is what
TensorRT 11.x INT8 on DLA builds from (rule ``dla-qdq-placement-11``). For every node of the FP32 graph
and every input of it, both Q/DQ models are asked: is this input read through a DequantizeLinear, of
which tensor, per tensor or per channel (and on which axis)? Any difference fails the run; there is no
list of accepted differences here.

ModelOpt (int8, ``max`` calibration, CPU EP, ``target_dla=True``, its defaults otherwise) runs in its own
venv on 8 random images: the placement depends on the graph, not on the data. Models: random-init
torchvision-layout ResNet-18/50, BN folded, 224x224 (``modelopt_placement.build``). Scales are not
compared (different calibrators); edgeres' DLA model takes the calibration cache's scales.

Get ModelOpt (CPU only is enough)::

    python -m venv /tmp/modelopt-venv
    /tmp/modelopt-venv/bin/pip install 'nvidia-modelopt[onnx]==0.47.*' onnxruntime

Usage:
    python benchmarks/modelopt_dla_placement.py [--python /tmp/modelopt-venv/bin/python] [--out FILE]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(ROOT))

from _common import write_report  # noqa: E402
from modelopt_placement import DEFAULT_PYTHON, build, reads  # noqa: E402

CHILD = """
import sys, numpy as np
from modelopt.onnx.quantization import quantize
model, calib, out = sys.argv[1:4]
quantize(model, quantize_mode="int8", calibration_data={"input": np.load(calib)}, calibration_method="max",
         calibration_eps=["cpu"], output_path=out, target_dla=True, log_level="ERROR")
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=DEFAULT_PYTHON, help="python of the ModelOpt venv (env EDGERES_MODELOPT_PYTHON)")
    parser.add_argument("--arch", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import onnx

    from edgeres.calibrate.qdq import DLA_PLACEMENT_RULE, qdq_model
    from edgeres.calibrate.stats import observed_tensors

    version = subprocess.run([args.python, "-c", "import modelopt; print(modelopt.__version__)"], capture_output=True, text=True)
    lines = [f"ModelOpt {version.stdout.strip() or '?'} ({args.python}), int8, max calibration, CPU EP, target_dla=True, "
             "defaults otherwise",
             "edgeres: qdq_model(placement='dla') (INT8 weights, the form TensorRT 11 reads); rule: " + DLA_PLACEMENT_RULE]
    ok = True
    with tempfile.TemporaryDirectory(prefix="edgeres-mo-dla-") as tmp:
        for arch in args.arch:
            model_path, calib = build(arch, Path(tmp))
            mo_path = Path(tmp) / f"{arch}.modelopt_dla.onnx"
            done = subprocess.run([args.python, "-c", CHILD, str(model_path), str(calib), str(mo_path)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError("ModelOpt failed: " + " | ".join(done.stderr.strip().splitlines()[-4:]))
            fp32, theirs = onnx.load(str(model_path)), onnx.load(str(mo_path))
            ours = qdq_model(fp32, {n: 0.01 for n in observed_tensors(fp32)}, placement="dla")
            a, b = reads(ours), reads(theirs)
            names = {n.name: n for n in fp32.graph.node}
            keys = [k for k in sorted(set(a) | set(b)) if k[0] in names]
            diff = [k for k in keys if a.get(k) != b.get(k)]
            ok &= not diff
            tensors = {t for t, _ in a.values() if not t.endswith("weight")}
            lines.append(f"- {arch}: {len(keys) - len(diff)} node inputs read the same Q/DQ (tensor and scale axis), "
                         f"{len(diff)} differ; {len(tensors)} activation tensors and "
                         f"{sum(1 for t, _ in a.values() if t.endswith('weight'))} weights quantized")
            lines += [f"  {names[k[0]].op_type} {k[0]} input {k[1]}: edgeres {a.get(k) or 'not quantized'}; "
                      f"ModelOpt {b.get(k) or 'not quantized'} -> UNEXPLAINED" for k in diff]
            relu_in = [n.input[0] for n in fp32.graph.node if n.op_type == "Relu"]
            lines.append(f"  not quantized by either: {len(relu_in)} ReLU inputs (Conv/Add outputs read only by a ReLU)")
    lines.append(f"result: {'identical placement' if ok else 'UNEXPLAINED differences'}")
    write_report(lines, args.out)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
