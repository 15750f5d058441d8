"""``edgeres calibrate``: INT8 calibration -> model.qdq.onnx, calib.cache, calib_report.json (+ model.onnx)."""

from __future__ import annotations

import click

from edgeres.calibrate.calibrators import CALIBRATORS, DEFAULT_METHOD, DEFAULT_PERCENTILE
from edgeres.cli._options import MAX_CALIB_SIZE, arch_option, log, seed_option, stage, weights_option
from edgeres.tensorrt_version import DEFAULT_TENSORRT

METHODS = tuple(CALIBRATORS)


@click.command("calibrate")
@arch_option(omitted="the shipped reference model (with no --weights either)")
@weights_option()
@click.option("--calib-data", default=None, help="Calibration images: image folder, .npy or .npz (reference:calib by default).")
@click.option("--method", type=click.Choice(METHODS), default=DEFAULT_METHOD, show_default=True, help="Activation calibrator.")
@click.option("--percentile", type=float, default=DEFAULT_PERCENTILE, show_default=True, help="For --method percentile.")
@click.option("--calib-size", type=click.IntRange(min=1, max=MAX_CALIB_SIZE), default=None, help="Calibration samples to pick (all if omitted).")
@click.option("--eval-data", default=None, help="Evaluation data for accuracy and the budget (labels needed for --max-accuracy-drop).")
@click.option("--max-accuracy-drop", type=float, default=None, help="Budget: largest top-1 drop in points.")
@click.option("--min-agreement", type=float, default=None, help="Budget: smallest FP32/INT8 top-1 agreement in percent.")
@click.option("--trt-version", default=DEFAULT_TENSORRT, show_default=True, help="TensorRT version of the calibration cache header (8.5 to 10.x).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@seed_option("Seed of the calibration sample pick, the random initialization (no --weights) and example input.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), default="calib_out", show_default=True, help="Output folder.")
@click.option("--quiet", is_flag=True, help="One line per phase instead of the progress display, and no table.")
@click.option("--from-cache", type=click.Path(dir_okay=False), default=None,
              help="Migrate: build OUT/model.qdq.onnx from this TensorRT calibration cache and --onnx (no calibration).")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), default=None, help="FP32 ONNX model for --from-cache.")
@click.option("--quantize-classifier", is_flag=True,
              help="Quantize the final Gemm too (left at higher precision by default, as ModelOpt does).")
@click.option("--force", is_flag=True,
              help="Replace an existing OUT that is not an earlier calibrate output (never one holding an input).")
@click.option("--eval-size", default=None, metavar="N|all",
              help="Evaluation samples (default: the first 16 calibration samples without --eval-data, all of --eval-data).")
@click.option("--check-data", default=None, metavar="DIR",
              help="Images from the deployment camera: saturation under the calibrated ranges vs the calibration set's.")
def calibrate(arch: str | None, weights: str | None, calib_data: str | None, method: str, percentile: float,
              calib_size: int | None, eval_data: str | None, max_accuracy_drop: float | None,
              min_agreement: float | None, trt_version: str, batch_size: int, seed: int, out_dir: str, quiet: bool,
              from_cache: str | None, onnx_path: str | None, quantize_classifier: bool, force: bool,
              eval_size: str | None, check_data: str | None) -> None:
    """Calibrate a model for INT8; with no arguments, the shipped reference model and data."""
    import shutil
    from pathlib import Path

    from edgeres.pipeline import calibrate_model
    from edgeres.errors import CalibrationError

    if from_cache is not None or onnx_path is not None:
        if from_cache is None or onnx_path is None:
            raise CalibrationError("--from-cache and --onnx go together (a TensorRT cache and the FP32 ONNX it was made for)")
        from edgeres._io import output_dir
        from edgeres.calibrate.cache import qdq_file_from_cache

        with output_dir(out_dir, "calibrate", inputs=(onnx_path, from_cache), force=force) as staging:
            qdq_file_from_cache(onnx_path, from_cache, staging / "model.qdq.onnx", warn=log,
                                quantize_classifier=quantize_classifier)
        click.echo(f"wrote {Path(out_dir) / 'model.qdq.onnx'} from {from_cache}")
        return

    from edgeres._io import check_output_folder
    from edgeres.pipeline import calibration_inputs

    # a folder that may not be replaced is one line, before any progress output
    check_output_folder(out_dir, "calibrate", inputs=calibration_inputs(weights, calib_data, eval_data, check_data),
                        force=force)
    from edgeres._progress import PhaseProgress, progress_mode
    from edgeres.calibrate.report import format_summary

    size: int | str | None = eval_size
    if eval_size is not None and eval_size != "all":
        if not eval_size.isdigit() or int(eval_size) < 1:
            raise CalibrationError(f"--eval-size takes a positive number of samples or 'all', received {eval_size!r}")
        size = int(eval_size)
    what = "the reference model" if arch is None and weights is None else arch
    with stage(f"calibrate {what} ({method})"):
        result = calibrate_model(
            arch, weights, calib_data, out_dir, calib_size=calib_size, eval_source=eval_data, seed=seed,
            method=method, percentile=percentile, trt_version=trt_version, max_accuracy_drop=max_accuracy_drop,
            min_agreement=min_agreement, batch_size=batch_size, progress=PhaseProgress(progress_mode(quiet)),
            quantize_classifier=quantize_classifier, eval_size=size, check_source=check_data, force=force,
        )
    width = shutil.get_terminal_size((100, 24)).columns
    if not quiet:
        click.echo(format_summary(result.report, width=width))
    for line in result.report.get("warnings", []):
        log(f"warning: {line}")
    click.echo(f"wrote {', '.join(str(p) for p in result.qdq_paths.values())}, {result.cache_path}, {result.report_path}, {result.ort_qdq_path}")
    budget = result.report.get("budget")
    if budget and not budget["met"]:
        m = result.report["model"]
        log(
            f"warning: accuracy budget {budget['kind']} {budget['limit']} not met; best reached: top-1 agreement "
            f"{100 * m['top1_agreement']:.2f}%"
            + (f", accuracy {100 * m['accuracy']:.2f}% (FP32 {100 * m['accuracy_ref']:.2f}%)" if m.get("accuracy") is not None else "")
            + f" with {len(budget['excluded_layers'])} layer(s) left at higher precision"
        )
        raise SystemExit(1)
