"""``edgeres doctor [BUNDLE|PLAN]``: what this device has, and what would break before it breaks."""

from __future__ import annotations

import json

import click


@click.command("doctor")
@click.argument("subject", required=False, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (docs/doctor.md) instead of the table.")
@click.option("--allow-mismatch", is_flag=True, help="As for `edgeres compile`: another GPU is a warning, not an error.")
@click.option("--root", default="/", hidden=True, type=click.Path(file_okay=False),
              help="Filesystem root to read (a mounted device image); commands run only with /.")
@click.pass_context
def doctor(ctx: click.Context, subject: str | None, as_json: bool, allow_mismatch: bool, root: str) -> None:
    """Check L4T/JetPack, TensorRT, CUDA, GPU, DLA, power mode, clocks, memory, disk and container against
    SUBJECT (a bundle folder or a plan with its sidecar), or this device alone.

    Exit 0 when everything needed is there (warnings allowed), 1 when something is missing or wrong,
    2 on bad input.
    """
    from edgeres.doctor import facts as device
    from edgeres.doctor.report import exit_code, render_text, report_dict
    from edgeres.doctor.rules import Subject, diagnose, subject_for

    target = subject_for(subject, allow_mismatch=allow_mismatch) if subject else Subject()
    disk = target.bundle_dir or None
    found = device.collect_facts(root, disk_path=disk)
    problems = diagnose(found, target)
    if as_json:
        click.echo(json.dumps(report_dict(found, problems, target), indent=2, sort_keys=True))
    else:
        click.echo(render_text(found, problems, target))
    ctx.exit(exit_code(problems))
