"""``edgeres export``: fold BatchNorm and export ONNX, checked with onnxruntime."""

from __future__ import annotations

import click

from edgeres.cli._options import arch_option, human_bytes, log, stage, weights_option


@click.command("export")
@arch_option()
@weights_option()
@click.option("--no-fold", is_flag=True, help="Keep BatchNorm layers (not recommended before INT8).")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Fixed batch size (static shape).")
@click.option("--dynamic-batch", is_flag=True, help="Symbolic batch axis (the default unless --batch is given).")
@click.option("--input-size", type=click.IntRange(min=8), default=None, help="Square input side (the architecture's default if omitted).")
@click.option("--opset", type=click.IntRange(min=17), default=17, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Output .onnx path.")
def export(arch: str, weights: str | None, no_fold: bool, batch: int | None, dynamic_batch: bool,
           input_size: int | None, opset: int, output: str) -> None:
    """Fold BatchNorm into the convs and export ARCH to ONNX (input `input`, output `logits`)."""
    from edgeres._io import check_writable_parent
    from edgeres.errors import ExportError
    from edgeres.export import export_onnx
    from edgeres.fold import fold_batchnorm
    from edgeres.models import recipe_for
    from edgeres.weights import model_from_weights

    if batch is not None and dynamic_batch:
        raise ExportError("--batch and --dynamic-batch exclude each other; pass one")
    check_writable_parent(output)
    with stage(f"build {arch}" + (f" from {weights}" if weights else " (random weights)")):
        model = model_from_weights(arch, weights)
    recipe = recipe_for(arch)
    side = input_size or recipe.input_size[0]
    shape = (batch or 1, model.conv1.in_channels, side, side)
    if not no_fold:
        with stage("fold BatchNorm"):
            import torch

            model = fold_batchnorm(model, torch.zeros(2, *shape[1:]).normal_())
    with stage("export ONNX and check with onnxruntime"):
        report = export_onnx(model, output, shape, dynamic_batch=batch is None, opset=opset)
    log(f"  max abs error {report.max_abs_error:.2e}, cosine {report.cosine:.8f}")
    click.echo(
        f"wrote {report.path} ({human_bytes(report.size_bytes)}, {report.num_nodes} nodes, "
        f"input {list(report.input_shape)}, opset {report.opset})"
    )
