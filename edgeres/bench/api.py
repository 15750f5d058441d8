"""``bench_models``: from command-line-like arguments to a :class:`BenchResult`.

Resolves the candidate's backend and its FP32 reference, loads the inputs
(the same arrays for both sides), and runs :func:`edgeres.bench.runner.run_benchmark`.
With no candidate it benchmarks the shipped reference model: its INT8 Q/DQ
ONNX against its FP32 ONNX on onnxruntime CPU, both built into a temporary
folder from the shipped weights and calibration split.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from edgeres.bench.backends import BackendOptions, create_backend
from edgeres.bench.inputs import InputSource
from edgeres.bench.resolve import SideSpec, default_reference, side_spec
from edgeres.bench.runner import BenchResult, run_benchmark
from edgeres.bench.timing import TimingConfig
from edgeres.calibrate.calibrators import DEFAULT_METHOD
from edgeres.errors import BenchError

#: Samples loaded from --data (rotating buffers draw batches from this pool).
DATA_POOL_SAMPLES = 512


#: Calibration method of the no-argument default (edgeres calibrate's default).
DEFAULT_CALIBRATION_METHOD = DEFAULT_METHOD


def onnxruntime_qdq_onnx(fp32: Path, dataset: Any, folder: Path, method: str = DEFAULT_CALIBRATION_METHOD) -> Path:
    """Calibrate ``fp32`` on ``dataset`` and return the Q/DQ model placed for onnxruntime's CPU INT8 kernels.

    The calibration's outputs (TensorRT-placement Q/DQ, onnxruntime-placement
    Q/DQ, cache, report) go to ``folder/calib``.
    """
    from edgeres.calibrate import calibrate

    result = calibrate(fp32, dataset, folder / "calib", method=method, progress=False)
    if result.ort_qdq_path is None:
        raise BenchError("calibration wrote no onnxruntime-placement Q/DQ model")
    return Path(result.ort_qdq_path)


@contextlib.contextmanager
def reference_pair(log: Callable[[str], None]) -> Iterator[tuple[Path, Path]]:
    """(INT8 Q/DQ ONNX, FP32 ONNX) of the shipped reference model, built in a temporary folder.

    FP32: the shipped weights through :mod:`edgeres.pipeline` (BatchNorm folded,
    exported and checked against PyTorch). INT8: calibrated on the shipped calibration split with
    :data:`DEFAULT_CALIBRATION_METHOD`; the Q/DQ placement is onnxruntime's, since
    the default comparison runs on onnxruntime CPU.
    """
    from edgeres import reference
    from edgeres.data import reference_dataset
    from edgeres.pipeline import front_end, onnx_from_folded

    with tempfile.TemporaryDirectory(prefix="edgeres-bench-") as tmp:
        folder = Path(tmp)
        log(f"- build the reference model's FP32 ONNX and INT8 Q/DQ ONNX ({DEFAULT_CALIBRATION_METHOD} calibration "
            "on the shipped calibration split, onnxruntime Q/DQ placement)")
        made = front_end(None, None)
        fp32 = folder / "model.onnx"
        onnx_from_folded(made.folded, fp32, made.example)
        calib = reference_dataset("calib")
        yield onnxruntime_qdq_onnx(fp32, calib, folder), fp32


def load_input_pool(data: str | None, sample_shape: tuple[int, int, int] | None, recipe: Any = None) -> InputSource:
    """An :class:`InputSource` from ``--data`` (real samples) or synthetic inputs when None."""
    if data is None:
        return InputSource()
    from edgeres.data import load_dataset

    if recipe is None and not data.startswith("reference:"):
        if sample_shape is None:
            raise BenchError(f"cannot preprocess {data} without knowing the model's input shape")
        from edgeres.recipe import IMAGENET, recipe_for_channels

        c, h, w = sample_shape
        recipe = recipe_for_channels(IMAGENET, c).replace(input_size=(h, w), resize=None)
    dataset = load_dataset(data, recipe)
    count = min(len(dataset), DATA_POOL_SAMPLES)
    pool = np.concatenate([images for images, _ in dataset.batches(256)], axis=0)[:count]
    labels = None if dataset.labels is None else np.asarray(dataset.labels)[:count]
    return InputSource(pool=pool, labels=labels, description=f"{count} samples of {data}")


def bench_models(
    candidate: str | None,
    *,
    reference: str | None = None,
    no_reference: bool = False,
    backend: str | None = None,
    reference_backend: str | None = None,
    options: BackendOptions = BackendOptions(),
    batch_sizes: Sequence[int] = (1,),
    config: TimingConfig = TimingConfig(),
    num_buffers: int = 4,
    agreement_samples: int = 64,
    data: str | None = None,
    sysfs_root: str = "/",
    log: Callable[[str], None] = lambda _m: None,
) -> BenchResult:
    """Benchmark ``candidate`` against its FP32 reference (see the CLI's ``edgeres bench --help``)."""
    if candidate is None:
        if reference is not None or backend is not None:
            raise BenchError("--reference and --backend need a CANDIDATE; with none, the shipped reference model is benchmarked")
        with reference_pair(log) as (qdq, fp32):
            tmp = str(fp32.parent)
            say = log  # the temporary folder is removed at the end: do not print its paths
            log = lambda m: say(m.replace(tmp, "<temporary folder, removed afterwards>"))  # noqa: E731
            result = bench_models(
                str(qdq), reference=None if no_reference else str(fp32), no_reference=no_reference,
                options=dataclasses.replace(options, provider="cpu"), batch_sizes=batch_sizes, config=config,
                num_buffers=num_buffers, agreement_samples=agreement_samples, data=data or "reference:test",
                sysfs_root=sysfs_root, log=log,
            )
        # the temporary folder is gone: say so instead of printing paths that no longer exist
        for side in (result.candidate, result.reference):
            if side is not None and isinstance(side.get("model"), str):
                side["model"] = side["model"].replace(tmp, "<temporary folder, removed afterwards>")
        return result
    if Path(candidate).is_dir():  # a bundle folder: its files, recipe and (reference model) data
        from edgeres.bench.resolve import bundle_sides

        sides = bundle_sides(candidate, backend, options)
        ref_side = None if no_reference else sides.reference
        if reference is not None:
            ref_side = side_spec(reference, reference_backend,
                                 dataclasses.replace(options, precision="fp32", channels_last=False, compile=False))
        log(f"- bundle {candidate}: {Path(sides.candidate.model).name} against "
            f"{Path(ref_side.model).name if ref_side else 'nothing (latency only)'}"
            + (f", data {data or sides.data}" if (data or sides.data) else ", synthetic inputs (pass --data for real ones)"))
        cand = create_backend(sides.candidate.model, sides.candidate.backend, sides.candidate.options)
        ref = create_backend(ref_side.model, ref_side.backend, ref_side.options) if ref_side else None
        shape = cand.input_shape() or (ref.input_shape() if ref else None)
        inputs = load_input_pool(data or sides.data, shape, sides.recipe if (data or sides.data) != "reference:test" else None)
        return run_benchmark(cand, ref, batch_sizes=batch_sizes, config=config, inputs=inputs, num_buffers=num_buffers,
                             agreement_samples=agreement_samples, sysfs_root=sysfs_root, log=log)
    cand_spec = side_spec(candidate, backend, options)
    ref_spec: SideSpec | None = None
    if reference is not None:
        ref_opts = dataclasses.replace(options, precision="fp32", channels_last=False, compile=False)
        ref_spec = side_spec(reference, reference_backend, ref_opts)
    elif not no_reference:
        ref_spec = default_reference(cand_spec)
        if ref_spec is None:
            log(f"- {candidate} is an FP32 model: measuring its latency only (pass --reference to compare)")
    cand = create_backend(cand_spec.model, cand_spec.backend, cand_spec.options)
    ref = create_backend(ref_spec.model, ref_spec.backend, ref_spec.options) if ref_spec else None
    shape = cand.input_shape() or (ref.input_shape() if ref else None)
    inputs = load_input_pool(data, shape)
    return run_benchmark(cand, ref, batch_sizes=batch_sizes, config=config, inputs=inputs, num_buffers=num_buffers,
                         agreement_samples=agreement_samples, sysfs_root=sysfs_root, log=log)
