"""``edgeres targets``: the device profiles as a table."""

from __future__ import annotations

import click


@click.command("targets")
@click.option("--targets-dir", type=click.Path(file_okay=False), default=None,
              help="Folder of your own *.toml profiles, added to (and overriding) the shipped ones.")
@click.option("--sources", "show_sources", is_flag=True, help="Also print where each profile's facts come from.")
@click.option("--rules", "show_rules", is_flag=True,
              help="List the TensorRT rules per version that build and compile check (id, versions, fix, source).")
def targets(targets_dir: str | None, show_sources: bool, show_rules: bool) -> None:
    """List the device target profiles for `edgeres build --target`."""
    from rich.console import Console
    from rich.table import Table

    if show_rules:
        _print_rules()
        return
    from edgeres.targets import list_targets
    from edgeres.tensorrt_version import SUPPORTED

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
    old = [t.name for t in profiles if not any(SUPPORTED["adapter"].contains(v) for v in t.tensorrt_versions)]
    if old:
        click.echo(f"\n{', '.join(old)}: TensorRT 8.2 and Python 3.6 only (JetPack 4.6.x). Build the bundle here; on the "
                   "device finish with its build.sh (trtexec): edgeres itself needs TensorRT >= 8.5 and Python >= 3.10 "
                   "(rule edgeres-needs-8.5; bundles are exported at ONNX opset 13, rule onnx-opset-8.2).")
    if show_sources:
        for t in profiles:
            click.echo(f"\n{t.name} ({t.path}):")
            for url in t.sources:
                click.echo(f"  {url}")
            for field, note in t.provenance.items():
                click.echo(f"  {field}: {note}")


def _print_rules() -> None:
    """The rule table (edgeres.trt_rules), one block per rule."""
    from edgeres.trt_rules import rules_table

    for row in rules_table():
        checked = "checked" if row["checked"] else "implemented by its table"
        click.echo(f"{row['id']}  [TensorRT {row['versions']}, {row['severity']}, {checked}]")
        click.echo(f"  rule:   {row['rule']}")
        click.echo(f"  fix:    {row['fix']}")
        click.echo(f"  source: {row['source']}")
