"""Cross-check edgeres' calibration cache against NVIDIA's qdq-translator.

NVIDIA's Q/DQ translator (NVIDIA/Deep-Learning-Accelerator-SW, ``tools/qdq-translator``,
MIT licence) turns a Q/DQ ONNX into an ONNX without Q/DQ plus a TensorRT calibration
cache: the scales of the quantized tensors, propagated over scale-preserving ops. For
each Q/DQ file edgeres wrote, this script runs the translator on it and checks that

* every tensor of the translator's cache is in ``calib.cache`` (its tensor set is a
  subset of ours), and
* where both list a tensor, the scales are bit-identical float32.

The translator is never vendored: get it from its public repository, in its own venv::

    git clone https://github.com/NVIDIA/Deep-Learning-Accelerator-SW /tmp/dla-sw
    python -m venv /tmp/qdqt-venv
    /tmp/qdqt-venv/bin/pip install numpy onnx onnx_graphsurgeon onnxoptimizer
    python benchmarks/qdq_translator_check.py \\
        --translator /tmp/dla-sw/tools/qdq-translator/qdq_translator.py --python /tmp/qdqt-venv/bin/python

(the translator pins ``onnxoptimizer==0.3.2``, which has no wheel for Python 3.11; its
passes ``fuse_bn_into_conv``/``fuse_pad_into_*`` find nothing to fuse in a BN-folded
ResNet, so a newer onnxoptimizer changes nothing here.) Paths may also come from
``EDGERES_QDQ_TRANSLATOR`` and ``EDGERES_QDQ_TRANSLATOR_PYTHON``.

Workloads: the shipped reference model (``edgeres calibrate`` defaults) and, with
``--resnet18``, a random-init ResNet-18 calibrated on random images (placement check only).

Usage:
    python benchmarks/qdq_translator_check.py [--translator PATH] [--python PY] [--resnet18] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import write_report  # benchmarks/ is sys.path[0] when run as a script

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent


def run_translator(translator: Path, python: str, qdq_onnx: Path, out_dir: Path) -> Path:
    """Run qdq_translator.py on ``qdq_onnx``; the path of the cache it wrote."""
    cmd = [python, str(translator), "--input_onnx_models", str(qdq_onnx), "--output_dir", str(out_dir)]
    proc = subprocess.run(cmd, cwd=translator.parent, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-4:])
        raise RuntimeError(f"qdq-translator failed on {qdq_onnx.name}: {tail}")
    return out_dir / f"{qdq_onnx.stem}_precision_config_calib.cache"


def compare(ours_path: Path, theirs_path: Path) -> dict:
    """Subset and equality of two caches (both read with edgeres' own reader)."""
    from edgeres.calibrate.cache import parse_calibration_cache

    notes: list[str] = []
    ours = parse_calibration_cache(ours_path.read_text(), str(ours_path))[2]
    theirs = parse_calibration_cache(theirs_path.read_text(), str(theirs_path), warn=notes.append)[2]
    missing = [n for n in theirs if n not in ours]
    common = [n for n in theirs if n in ours]
    unequal = [(n, theirs[n], ours[n]) for n in common if np.float32(theirs[n]) != np.float32(ours[n])]
    return {"ours": len(ours), "theirs": len(theirs), "missing": missing, "common": len(common), "unequal": unequal,
            "only_ours": [n for n in ours if n not in theirs], "warnings": notes}


def calibrate_reference(out: Path) -> Path:
    from edgeres.calibrate import calibrate_model

    calibrate_model(None, None, None, out, progress=False)
    return out


def calibrate_resnet18(out: Path) -> Path:
    import torch

    from edgeres.calibrate import calibrate
    from edgeres.export import export_onnx
    from edgeres.fold import fold_batchnorm
    from edgeres.models import create_model

    class Images:
        labels = None

        def __init__(self, images: np.ndarray) -> None:
            self.images = images

        def __len__(self) -> int:
            return len(self.images)

        def batches(self, batch_size: int):
            for start in range(0, len(self.images), batch_size):
                yield self.images[start:start + batch_size], None

    torch.manual_seed(0)
    images = np.random.default_rng(0).standard_normal((8, 3, 224, 224)).astype(np.float32)
    folded = fold_batchnorm(create_model("resnet18").eval(), torch.from_numpy(images[:4]))
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(folded, out / "model.onnx", (1, 3, 224, 224), check_inputs=images[:2])
    calibrate(out / "model.onnx", Images(images), out, progress=False, batch_size=8)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--translator", type=Path, default=os.environ.get("EDGERES_QDQ_TRANSLATOR"),
                        help="path of qdq_translator.py (env EDGERES_QDQ_TRANSLATOR)")
    parser.add_argument("--python", default=os.environ.get("EDGERES_QDQ_TRANSLATOR_PYTHON", "/tmp/qdqt-venv/bin/python"),
                        help="python of the translator's venv (env EDGERES_QDQ_TRANSLATOR_PYTHON)")
    parser.add_argument("--resnet18", action="store_true", help="also check a random-init ResNet-18 (224x224)")
    parser.add_argument("--out", type=Path, default=None, help="write the result text here as well")
    args = parser.parse_args(argv)
    if args.translator is None or not Path(args.translator).is_file():
        print("error: give --translator PATH/qdq_translator.py (see this script's --help for how to get it)", file=sys.stderr)
        return 2
    versions = subprocess.run([args.python, "-c", "import onnx, onnxoptimizer, onnx_graphsurgeon as gs; "
                               "print(f'onnx {onnx.__version__}, onnxoptimizer {onnxoptimizer.__version__}, "
                               "onnx_graphsurgeon {gs.__version__}')"], capture_output=True, text=True).stdout.strip()
    version_file = Path(args.translator).parent / "VERSION"
    shown = version_file.read_text().strip() if version_file.is_file() else "?"
    lines = [f"qdq-translator {shown}: {args.translator} (python {args.python}: {versions})"]
    ok = True
    with tempfile.TemporaryDirectory(prefix="edgeres-qdqt-") as tmp:
        workloads = [("reference (edgeres calibrate defaults)", calibrate_reference)]
        if args.resnet18:
            workloads.append(("resnet18 (random init, random images)", calibrate_resnet18))
        for k, (name, make) in enumerate(workloads):
            folder = make(Path(tmp) / f"w{k}")
            for qdq_name in ("model.qdq.onnx", "model.qdq.trt8.onnx"):
                translated = run_translator(Path(args.translator), args.python, folder / qdq_name, Path(tmp) / f"t{k}{qdq_name}")
                r = compare(folder / "calib.cache", translated)
                good = not r["missing"] and not r["unequal"]
                ok &= good
                lines.append(f"- {name}, {qdq_name}: translator lists {r['theirs']} tensors, calib.cache {r['ours']}; "
                             f"subset: {'yes' if not r['missing'] else 'NO, missing ' + str(r['missing'][:5])}; "
                             f"scales equal on all {r['common']} common tensors: "
                             f"{'yes' if not r['unequal'] else 'NO ' + str(r['unequal'][:3])}")
                lines.append(f"  only in calib.cache ({len(r['only_ours'])}): {', '.join(r['only_ours'])}")
                for note in r["warnings"]:
                    lines.append(f"  reading the translator's cache: {note}")
    lines.append(f"result: {'PASS' if ok else 'FAIL'}")
    write_report(lines, args.out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
