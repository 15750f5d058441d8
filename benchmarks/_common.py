"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<script>.py``)."""

from __future__ import annotations

from pathlib import Path


def fp32_onnx(arch: str, folder: Path) -> tuple[Path, tuple[int, int, int]]:
    """Seeded random ``arch``, BatchNorm folded, exported to ``folder/<arch>.onnx``; returns (path, C,H,W)."""
    import torch

    from edgeres import create_model, export_onnx, fold_batchnorm
    from edgeres.models import recipe_for

    torch.manual_seed(0)
    shape = recipe_for(arch).input_shape
    model = fold_batchnorm(create_model(arch), torch.randn(2, *shape))
    path = folder / f"{arch}.onnx"
    export_onnx(model, path, (1, *shape))
    return path, shape
