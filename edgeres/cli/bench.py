"""``edgeres bench``: latency against the FP32 reference, statistics, JSON, plot, power."""

from __future__ import annotations

import click

from edgeres.cli._options import (
    MAX_AGREEMENT_SAMPLES,
    MAX_BATCH,
    MAX_BUFFERS,
    MAX_DURATION_S,
    MAX_ITERATIONS,
    MAX_ROUNDS,
    MAX_THREADS,
    MAX_WARMUP_MS,
    FiniteFloat,
    arch_option,
    log,
)


def _batch_list(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    from edgeres.errors import BenchError

    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise BenchError(f"--batch takes comma-separated integers like 1,8,32, received {value!r}") from None
    if not sizes or any(b < 1 for b in sizes):
        raise BenchError(f"--batch sizes must be integers of at least 1, received {value!r}")
    if any(b > MAX_BATCH for b in sizes) or len(sizes) > 64:
        raise BenchError(f"--batch takes at most 64 sizes of at most {MAX_BATCH}, received {value[:60]!r}")
    return sizes


@click.command("bench")
@click.argument("candidate", required=False)
@click.option("--reference", "reference", default=None, help="FP32 reference model (default: the FP32 model of the same recipe, see docs).")
@click.option("--no-reference", is_flag=True, help="Latency of CANDIDATE only.")
@click.option("--backend", type=click.Choice(["onnxruntime", "tensorrt", "torch"]), default=None, help="Candidate backend (default: from the file).")
@click.option("--reference-backend", type=click.Choice(["onnxruntime", "tensorrt", "torch"]), default=None, help="Reference backend (default: from the file).")
@click.option("--provider", type=click.Choice(["cpu", "cuda", "tensorrt"]), default="cpu", show_default=True, help="onnxruntime execution provider.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="torch device.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True, help="torch candidate precision.")
@click.option("--channels-last", is_flag=True, help="torch candidate: NHWC memory format.")
@click.option("--compile", "compile_", is_flag=True, help="torch candidate: torch.compile instead of eager.")
@click.option("--cuda-graphs", is_flag=True, help="torch on CUDA: replay a captured CUDA graph.")
@click.option("--sync", type=click.Choice(["blocking", "spin"]), default="blocking", show_default=True, help="How the host waits for the GPU.")
@click.option("--pageable", is_flag=True, help="Pageable host buffers instead of pinned (what a naive app does).")
@arch_option(omitted="guessed from the keys of a bare weights file (.pth/.safetensors)")
@click.option("--threads", type=click.IntRange(max=MAX_THREADS), default=None, help="CPU intra-op threads (default: the library's).")
@click.option("--batch", "batch_sizes", default="1", show_default=True, callback=_batch_list, help="Batch size or sweep, e.g. 1,8,32.")
@click.option("--warmup", "warmup_ms", type=FiniteFloat(MAX_WARMUP_MS), default=200.0, show_default=True, help="Warm-up time per side (ms).")
@click.option("--warmup-iterations", type=click.IntRange(max=MAX_ITERATIONS), default=5, show_default=True, help="Warm-up iterations at least.")
@click.option("--duration", "duration_s", type=FiniteFloat(MAX_DURATION_S), default=3.0, show_default=True, help="Measured time per side (s).")
@click.option("--iterations", "min_iters", type=click.IntRange(max=MAX_ITERATIONS), default=10, show_default=True, help="Measured iterations per side at least.")
@click.option("--rounds", type=click.IntRange(max=MAX_ROUNDS), default=10, show_default=True, help="Alternated rounds when comparing with the reference.")
@click.option("--buffers", type=click.IntRange(max=MAX_BUFFERS), default=4, show_default=True, help="Input batches rotated so caches do not flatter the result.")
@click.option("--agreement-samples", type=click.IntRange(max=MAX_AGREEMENT_SAMPLES), default=64, show_default=True, help="Samples on which both sides' outputs are compared.")
@click.option("--data", default=None, help="Input data: reference:test, or an image folder/.npy/.npz (images and raw uint8 are normalized with ImageNet statistics at the model's input size; float arrays are used as given). Synthetic image-like inputs if omitted.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write the report as JSON (docs/bench_json.md).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Write a PNG of latency distributions and speedup (needs matplotlib).")
def bench(candidate: str | None, reference: str | None, no_reference: bool, backend: str | None, reference_backend: str | None,
          provider: str, device: str, precision: str, channels_last: bool, compile_: bool, cuda_graphs: bool, sync: str,
          pageable: bool, arch: str | None, threads: int | None, batch_sizes: list[int], warmup_ms: float,
          warmup_iterations: int, duration_s: float, min_iters: int, rounds: int, buffers: int, agreement_samples: int, data: str | None,
          json_path: str | None, plot_path: str | None) -> None:
    """Benchmark CANDIDATE (.plan, .onnx, weights or an architecture name) against its FP32 reference.

    With no CANDIDATE: the shipped reference model, INT8 Q/DQ against FP32 on onnxruntime CPU.
    """
    import os

    from edgeres._io import check_not_input, check_writable_parent
    from edgeres.bench.api import bench_models
    from edgeres.bench.report import render_table, write_json
    from edgeres.bench.backends import BackendOptions
    from edgeres.bench.timing import TimingConfig
    from edgeres.data import source_path
    from edgeres.errors import BenchError

    config = TimingConfig(warmup_ms=warmup_ms, min_warmup_iters=warmup_iterations, duration_s=duration_s,
                          min_iters=min_iters, rounds=rounds)
    if agreement_samples < 1:
        raise BenchError(f"--agreement-samples must be at least 1, received {agreement_samples}")
    if threads is not None and threads < 1:
        raise BenchError(f"--threads must be at least 1, received {threads}")
    if reference and no_reference:
        raise BenchError("--reference and --no-reference exclude each other; pass one")
    inputs = [candidate, reference, source_path(data) if data else None]
    for path in (json_path, plot_path):
        if path:
            check_writable_parent(path)
            check_not_input(path, inputs)  # --json/--plot naming a model or the data would replace it
    if json_path and plot_path and os.path.realpath(json_path) == os.path.realpath(plot_path):
        raise BenchError("--json and --plot name the same file; pass two paths")
    if plot_path:
        from edgeres.bench.plot import import_pyplot

        import_pyplot()  # fail before measuring if matplotlib is missing
    options = BackendOptions(device=device, provider=provider, precision=precision, channels_last=channels_last,
                             compile=compile_, cuda_graphs=cuda_graphs, sync=sync, pinned=not pageable,
                             threads=threads, arch=arch)
    result = bench_models(
        candidate, reference=reference, no_reference=no_reference, backend=backend, reference_backend=reference_backend,
        options=options, batch_sizes=batch_sizes, config=config, num_buffers=buffers, agreement_samples=agreement_samples,
        data=data, log=log,
    )
    render_table(result)
    if json_path:
        click.echo(f"wrote {write_json(result, json_path)}")
    if plot_path:
        from edgeres.bench.plot import plot_result

        click.echo(f"wrote {plot_result(result, plot_path)}")
