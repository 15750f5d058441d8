"""``edgeres compile BUNDLE``: verify a deploy bundle's files, then build its engine on this device."""

from __future__ import annotations

import click

from edgeres.cli._options import MAX_WORKSPACE_MIB, log


@click.command("compile")
@click.argument("bundle", type=click.Path())
@click.option("--verify-only", is_flag=True, help="Check every file's sha256 and stop.")
@click.option("--allow-mismatch", is_flag=True, help="Build even if this GPU is not the bundle's target.")
@click.option("--workspace", "workspace_mib", type=click.IntRange(min=1, max=MAX_WORKSPACE_MIB), default=None,
              help="Builder workspace limit in MiB (the bundle's if omitted); lower it after an out-of-memory build.")
def compile_(bundle: str, verify_only: bool, allow_mismatch: bool, workspace_mib: int | None) -> None:
    """Verify every sha256 in BUNDLE/manifest.json, then compile BUNDLE/model.plan with the local TensorRT."""
    from edgeres.device_build import compile_bundle
    from edgeres.bundle import verify_bundle

    if verify_only:
        manifest = verify_bundle(bundle)
        click.echo(f"bundle {bundle} verified: {len(manifest.files)} files, target {manifest.target}, "
                   f"{manifest.precision}, TensorRT {', '.join(manifest.tensorrt_versions)}")
        return
    sidecar = compile_bundle(bundle, allow_mismatch=allow_mismatch, workspace_mib=workspace_mib, report=log)
    click.echo(f"built {bundle}/model.plan: {sidecar.precision} on {sidecar.device_name} "
               f"(sm_{sidecar.compute_capability[0]}.{sidecar.compute_capability[1]}), TensorRT {sidecar.tensorrt_version}")
