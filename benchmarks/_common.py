"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<script>.py``)."""

from __future__ import annotations

from pathlib import Path


def fp32_onnx(arch: str, folder: Path) -> tuple[Path, tuple[int, int, int]]:
    """Seeded random ``arch``, BatchNorm folded, exported to ``folder/<arch>.onnx``; returns (path, C,H,W)."""
    from edgeres.pipeline import export_model

    path = folder / f"{arch}.onnx"
    made, _report = export_model(arch, None, path, seed=0)
    return path, made.input_shape


def write_report(lines: list[str], out: Path | None) -> str:
    """Print the report ``lines`` and, with ``out``, write them there too (folders made as needed)."""
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return text
