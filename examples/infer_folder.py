#!/usr/bin/env python3
"""Classify every image in a folder with an edgeres deploy bundle.

    python examples/infer_folder.py BUNDLE_DIR IMAGE_DIR [--top-k 3] [--prefer auto|plan|onnx|qdq]

BUNDLE_DIR is what ``edgeres build`` writes: ``manifest.json`` (holding the
preprocessing recipe under ``"recipe"`` and the batch range), ``model.onnx``,
``model.qdq.onnx`` and, after ``edgeres compile BUNDLE_DIR`` on the device,
``model.plan`` + ``model.plan.json``. The plan is used when it exists and
TensorRT is installed, else the ONNX model runs on onnxruntime, so the same
command works on a Jetson and on a laptop. Needs numpy, Pillow and
onnxruntime or TensorRT; never PyTorch.

Prints one line per image: ``file<TAB>class:score class:score ...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff"}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable)."""
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k(logits: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """Per row, the k best (class index, probability), best first."""
    probs = softmax(np.atleast_2d(logits))
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(int(c), float(p[c])) for c in row] for p, row in zip(probs, order)]


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="deploy bundle folder (or a single .plan/.onnx file)")
    parser.add_argument("images", type=Path, help="folder of images")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--prefer", default="auto", choices=["auto", "plan", "onnx", "qdq"])
    args = parser.parse_args(argv)

    from PIL import Image, UnidentifiedImageError

    from edgeres.errors import EdgeresError
    from edgeres.runtime import open_engine

    try:
        if not args.images.is_dir():
            raise EdgeresError(f"expected a folder of images, received {args.images}")
        files = image_files(args.images)
        if not files:
            raise EdgeresError(f"{args.images} has no images; expected files ending in {sorted(IMAGE_SUFFIXES)}")
        with open_engine(args.bundle, prefer=args.prefer) as engine:
            if engine.recipe is None:
                raise EdgeresError(f"{args.bundle} carries no preprocessing recipe (manifest.json \"recipe\")")
            batch_size = engine.max_batch or 16
            print(f"# {engine.path} on {engine.backend}, {len(files)} images", file=sys.stderr)
            for start in range(0, len(files), batch_size):
                chunk, arrays = [], []
                for path in files[start : start + batch_size]:
                    try:
                        with Image.open(path) as image:
                            arrays.append(engine.recipe.preprocess(image))
                        chunk.append(path)
                    except (OSError, UnidentifiedImageError) as exc:
                        print(f"# skipped {path.name}: {exc}", file=sys.stderr)
                if not arrays:
                    continue
                batch = np.stack(arrays).astype(engine.inputs[0].dtype, copy=False)
                if batch.shape[0] < engine.min_batch:  # pad to the profile's minimum, drop the padding after
                    pad = np.repeat(batch[-1:], engine.min_batch - batch.shape[0], axis=0)
                    batch = np.concatenate([batch, pad])
                logits = engine.infer(batch)[: len(chunk)]
                for path, best in zip(chunk, top_k(logits, args.top_k)):
                    print(f"{path.name}\t" + " ".join(f"{c}:{p:.3f}" for c, p in best))
    except EdgeresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
