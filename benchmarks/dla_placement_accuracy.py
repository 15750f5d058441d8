"""The DLA Q/DQ model (``calibrate(..., dla=True)``, ModelOpt's ``--target_dla`` placement) against the TensorRT
placement on the shipped reference model: top-1 and logits SQNR vs FP32 on ``reference:test``, onnxruntime CPU.

This is what the two Q/DQ graphs compute by ONNX semantics, not what a DLA computes (no TensorRT or Orin
here). Calibration: edgeres' defaults on ``reference:calib``, evaluated on ``reference:test``.

Usage:
    python benchmarks/dla_placement_accuracy.py [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import onnx

    from edgeres import pipeline
    from edgeres.calibrate import calibrate
    from edgeres.calibrate.calibrators import DEFAULT_METHOD
    from edgeres.data import reference_dataset
    from edgeres.evaluate import compare_logits, run_onnx

    calib, test = reference_dataset("calib"), reference_dataset("test")
    with tempfile.TemporaryDirectory(prefix="edgeres-dla-acc-") as tmp:
        made = pipeline.front_end(None, None)
        pipeline.onnx_from_folded(made.folded, Path(tmp) / "model.onnx", made.example)
        result = calibrate(Path(tmp) / "model.onnx", calib, Path(tmp) / "out", eval_dataset=test, progress=False,
                           timing=False, dla=True)
        fp32 = onnx.load(str(Path(tmp) / "model.onnx"))
        ref = run_onnx(fp32, test)
        lines = [f"reference model, calibration {DEFAULT_METHOD} on reference:calib ({len(calib)}), "
                 f"evaluated on reference:test ({len(test)}), onnxruntime CPU; excluded layers: {result.excluded_layers}"]
        for label, path in (("TensorRT placement, model.qdq.onnx (classifier FP32)", result.qdq_path),
                            ("DLA placement, model.qdq.dla.onnx (every tensor, classifier INT8)", result.dla_qdq_path)):
            c = compare_logits(ref, run_onnx(onnx.load(str(path)), test), test.labels)
            lines.append(f"- {label}: top-1 {100 * c['accuracy']:.1f}% (FP32 {100 * c['accuracy_ref']:.1f}%), "
                         f"agreement {100 * c['top1_agreement']:.1f}%, logits SQNR {c['sqnr_db']:.2f} dB")
    lines.append("not verified on a DLA: these are the graphs' ONNX semantics on onnxruntime")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
