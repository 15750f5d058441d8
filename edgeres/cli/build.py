"""``edgeres build --target T``: a ResNet to a TensorRT engine, or a deploy bundle where none can be built."""

from __future__ import annotations

import click

from edgeres.cli._options import MAX_BATCH, MAX_CALIB_SIZE, MAX_WORKSPACE_MIB, arch_option, human_bytes, log, weights_option


@click.command("build")
@click.option("--target", "-t", required=True, help="Device profile (see `edgeres targets`), e.g. jetson-orin or jetson-orin-nx:16gb.")
@arch_option(omitted="the shipped reference model (resnet50 with --weights)")
@weights_option("random initialization (seed 0) with --arch, the shipped reference model without")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8", "best"]), default=None,
              help="Engine precision; the target's default if omitted. best = int8 where fast, else fp16.")
@click.option("--int8-mode", type=click.Choice(["qdq", "calibrator"]), default=None, help="Explicit Q/DQ or implicit calibrator (target default).")
@click.option("--calib-data", default=None, help="Calibration images: folder, .npy, .npz[#split] (the reference data if omitted).")
@click.option("--calib-size", type=click.IntRange(min=1, max=MAX_CALIB_SIZE), default=None, help="Calibration samples to use (all, at most 512, if omitted).")
@click.option("--batch", type=click.IntRange(max=MAX_BATCH), default=None, help="Optimization batch (target default).")
@click.option("--max-batch", type=click.IntRange(max=MAX_BATCH), default=None, help="Largest batch the engine accepts (default: --batch).")
@click.option("--dla-core", type=click.IntRange(max=15), default=None, help="Build for this DLA core (Xavier/Orin), with GPU fallback.")
@click.option("--trt-version", default=None, help="TensorRT the bundle's build.sh is for (the installed one, else the target default).")
@click.option("--workspace", "workspace_mib", type=click.IntRange(min=1, max=MAX_WORKSPACE_MIB), default=None, help="Builder workspace limit in MiB (target default).")
@click.option("--frontend", type=click.Choice(["onnx", "torch-tensorrt"]), default="onnx", show_default=True)
@click.option("--bundle", "bundle_only", is_flag=True, help="Make a deploy bundle even where an engine could be built.")
@click.option("--allow-mismatch", is_flag=True, help="Build an engine on a GPU other than the target's.")
@click.option("--targets-dir", type=click.Path(file_okay=False), default=None, help="Folder of extra target profiles.")
@click.option("-o", "--output", type=click.Path(), default=None, help="Output folder (default: ./edgeres-<target>).")
@click.option("--force", is_flag=True,
              help="Replace an existing -o folder that is not an earlier build (never one holding an input).")
def build(target: str, output: str | None, **options: object) -> None:
    """Fold, export, calibrate and compile for TARGET: an engine here, or a bundle for `edgeres compile`."""
    from edgeres.build import BuildRequest, build as run_build

    out = output or f"edgeres-{target.replace(':', '-')}"
    request = BuildRequest(target=target, output=out, **options)  # type: ignore[arg-type]
    result = run_build(request, report=log)
    rows = [(name, human_bytes(size)) for name, size in result.files.items()]
    width = max(len(n) for n, _ in rows)
    click.echo(f"\n{'file':<{width}}  size")
    for name, size in rows:
        click.echo(f"{name:<{width}}  {size}")
    click.echo(f"\ntarget {result.target.name} (sm_{result.target.sm}), precision {result.precision}, TensorRT {result.trt_version}")
    click.echo("stages: " + ", ".join(f"{s.name} {s.seconds:.2f} s" for s in result.stages))
    if result.calibration:
        click.echo("INT8 vs FP32: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                for k, v in result.calibration.items()))
    if result.kind == "engine":
        click.echo(f"built engine {result.output}/model.plan")
    else:
        click.echo(f"made a deploy BUNDLE, not an engine ({result.reason}): {result.output}")
        click.echo(f"finish on the device with: {result.compile_command}")
