"""``edgeres info``: what an architecture costs, counted from the model."""

from __future__ import annotations

import json

import click

from edgeres.cli._options import MAX_CLASSES, human_bytes, input_size_option, weights_option


@click.command("info")
@click.argument("arch", required=False)
@input_size_option()
@click.option("--stride-in", type=click.Choice(["v1.5", "v1"]), default=None, help="Bottleneck stride placement (ImageNet models).")
@click.option("--num-classes", type=click.IntRange(min=1, max=MAX_CLASSES), default=None, help="Classifier width.")
@weights_option("random initialization")
@click.option("--list", "list_archs", is_flag=True, help="List the architectures and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(arch: str | None, input_size: int | None, stride_in: str | None, num_classes: int | None,
         weights: str | None, list_archs: bool, as_json: bool) -> None:
    """Print parameters, MACs, weight sizes and layer counts of ARCH."""
    from edgeres.info import model_info
    from edgeres.models import MODELS, get_spec, recipe_for
    from edgeres.weights import model_from_weights

    if list_archs or arch is None:
        for name, spec in MODELS.items():
            click.echo(f"{name:10s} {spec.family:9s} input {spec.recipe.input_size[0]}x{spec.recipe.input_size[1]}")
        return
    options = {"stride_in": stride_in} if stride_in and get_spec(arch).family == "imagenet" else {}
    model = model_from_weights(arch, weights, num_classes=num_classes, **options)
    recipe = recipe_for(arch)
    side = input_size or recipe.input_size[0]
    in_channels = model.conv1.in_channels if hasattr(model, "conv1") else recipe.in_channels
    stats = model_info(model, (in_channels, side, side))
    if as_json:
        click.echo(json.dumps({"arch": arch, **stats.to_dict()}, indent=2))
        return
    rows = [
        ("architecture", arch + (f" (stride {stride_in})" if options else "")),
        ("input", "x".join(map(str, stats.input_shape))),
        ("parameters", f"{stats.params:,}"),
        ("MACs (multiply-adds)", f"{stats.macs:,} ({stats.macs / 1e9:.2f} G)"),
        *((f"weights {k.upper()}", human_bytes(v)) for k, v in stats.weights_bytes.items()),
        ("conv layers", str(stats.conv_layers)),
        ("BatchNorm layers", str(stats.bn_layers)),
        ("linear layers", str(stats.linear_layers)),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
