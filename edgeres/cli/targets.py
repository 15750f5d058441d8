"""``edgeres targets``: the device profiles as a table."""

from __future__ import annotations

import click


@click.command("targets")
@click.option("--targets-dir", type=click.Path(file_okay=False), default=None,
              help="Folder of your own *.toml profiles, added to (and overriding) the shipped ones.")
@click.option("--sources", "show_sources", is_flag=True, help="Also print where each profile's facts come from.")
def targets(targets_dir: str | None, show_sources: bool) -> None:
    """List the device target profiles for `edgeres build --target`."""
    from rich.console import Console
    from rich.table import Table

    from edgeres.targets import list_targets

    profiles = list_targets(targets_dir)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("name", "device", "sm", "DLA", "precisions", "memory", "workspace", "batch", "TensorRT (default)", "variants"):
        table.add_column(column)
    for t in profiles:
        trt = ", ".join(f"{v}*" if v == t.default_tensorrt else v for v in t.tensorrt_versions)
        table.add_row(
            t.name, t.display_name, t.sm, str(t.dla_cores), "/".join(t.precisions) + f" ({t.default_precision})",
            f"{t.memory_gb:g} GB", f"{t.workspace_mib} MiB", f"{t.default_batch}..{t.max_batch}", trt,
            ", ".join(t.variants) or "-",
        )
    Console(width=200, soft_wrap=True).print(table)
    if show_sources:
        for t in profiles:
            click.echo(f"\n{t.name} ({t.path}):")
            for url in t.sources:
                click.echo(f"  {url}")
            for field, note in t.provenance.items():
                click.echo(f"  {field}: {note}")
