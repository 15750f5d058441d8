"""``edgeres export``: fold BatchNorm and export ONNX, checked with onnxruntime (via :mod:`edgeres.pipeline`)."""

from __future__ import annotations

import click

from edgeres.cli._options import (
    MAX_BATCH,
    DEFAULT_OPSET,
    MAX_OPSET,
    MIN_OPSET,
    arch_option,
    human_bytes,
    input_size_option,
    log,
    seed_option,
    stage,
    weights_option,
)


@click.command("export")
@arch_option("resnet50")
@weights_option()
@seed_option("Seed of the random initialization (no --weights) and example input.")
@click.option("--no-fold", is_flag=True, help="Keep BatchNorm layers (not recommended before INT8).")
@click.option("--batch", type=click.IntRange(min=1, max=MAX_BATCH), default=None, help="Fixed batch size (static shape).")
@click.option("--dynamic-batch", is_flag=True, help="Symbolic batch axis (the default unless --batch is given).")
@input_size_option()
@click.option("--opset", type=click.IntRange(min=MIN_OPSET, max=MAX_OPSET), default=DEFAULT_OPSET, show_default=True,
              help=f"ONNX opset ({MIN_OPSET}..{MAX_OPSET}: what torch's exporter writes).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Output .onnx path.")
def export(arch: str, weights: str | None, seed: int, no_fold: bool, batch: int | None, dynamic_batch: bool,
           input_size: int | None, opset: int, output: str) -> None:
    """Fold BatchNorm into the convs and export ARCH to ONNX (input `input`, output `logits`)."""
    from edgeres.errors import ExportError
    from edgeres.pipeline import export_model

    from edgeres._io import check_not_input

    if batch is not None and dynamic_batch:
        raise ExportError("--batch and --dynamic-batch exclude each other; pass one")
    check_not_input(output, [weights])  # one line before any progress (export_model checks it too)
    what = f"{arch}" + (f" from {weights}" if weights else f" (random weights, seed {seed})")
    with stage(f"{'export' if no_fold else 'fold BatchNorm and export'} {what}, checked with onnxruntime"):
        _made, report = export_model(arch, weights, output, seed=seed, input_size=input_size, batch=batch, opset=opset,
                                     fold=not no_fold)
    log(f"  max abs error {report.max_abs_error:.2e}, cosine {report.cosine:.8f}")
    click.echo(
        f"wrote {report.path} ({human_bytes(report.size_bytes)}, {report.num_nodes} nodes, "
        f"input {list(report.input_shape)}, opset {report.opset})"
    )
