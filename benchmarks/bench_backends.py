"""ResNet-18 and ResNet-50 through every backend available here, each against the FP32 reference.

For each model: torch FP32 eager (BN folded) is the reference on its device;
candidates are whatever this machine can run: onnxruntime CPU FP32 and INT8
Q/DQ (onnxruntime's Q/DQ placement, calibrated on synthetic image-like data:
valid for latency, not for accuracy), torch channels-last, torch.compile (``--compile``), and on a GPU
torch FP16 / CUDA graphs, onnxruntime CUDA and TensorRT EPs, and any
``--plan`` engines given. Every pair runs alternated rounds on the same
inputs. Writes one JSON (a list of ``edgeres bench`` reports, schema in
docs/bench_json.md) and a PNG summary.

    python benchmarks/bench_backends.py [--models resnet18,resnet50] [--duration 3] [--out out/bench_backends]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from _common import fp32_onnx


def int8_qdq_onnx(fp32: Path, shape: tuple[int, int, int], folder: Path, samples: int) -> Path:
    from edgeres.bench.api import onnxruntime_qdq_onnx
    from edgeres.bench.inputs import InputSource
    from edgeres.data import load_dataset
    from edgeres.recipe import Recipe

    data = np.concatenate(InputSource(seed=100).batches(shape, 8, max(1, samples // 8)))
    npy = folder / f"{fp32.stem}_calib.npy"
    np.save(npy, data)
    recipe = Recipe(input_size=shape[1:], in_channels=shape[0], resize=None)
    out = folder / f"{fp32.stem}_int8"
    out.mkdir()
    return onnxruntime_qdq_onnx(fp32, load_dataset(str(npy), recipe), out, method="max")


def candidates(arch: str, fp32: Path, qdq: Path | None, args: argparse.Namespace) -> list[tuple[str, Any, Any]]:
    """(label, candidate spec, reference spec) pairs that can run here; specs are (model, backend, options)."""
    import onnxruntime
    import torch

    from edgeres.bench.backends import BackendOptions

    cpu = BackendOptions(threads=args.threads)
    ref_cpu = (arch, "torch", cpu)
    pairs = [("onnxruntime cpu fp32", (str(fp32), "onnxruntime", cpu), ref_cpu)]
    if qdq is not None:
        pairs.append(("onnxruntime cpu int8-qdq", (str(qdq), "onnxruntime", cpu), ref_cpu))
    pairs.append(("torch cpu channels-last", (arch, "torch", BackendOptions(threads=args.threads, channels_last=True)), ref_cpu))
    if args.compile:
        pairs.append(("torch cpu compile", (arch, "torch", BackendOptions(threads=args.threads, compile=True)), ref_cpu))
    if torch.cuda.is_available():
        gpu = BackendOptions(device="cuda")
        ref_gpu = (arch, "torch", gpu)
        pairs += [
            ("torch cuda fp16 channels-last", (arch, "torch", BackendOptions(device="cuda", precision="fp16", channels_last=True)), ref_gpu),
            ("torch cuda fp16 cuda-graphs", (arch, "torch", BackendOptions(device="cuda", precision="fp16", cuda_graphs=True)), ref_gpu),
        ]
        providers = onnxruntime.get_available_providers()
        if "CUDAExecutionProvider" in providers:
            pairs.append(("onnxruntime cuda fp32", (str(fp32), "onnxruntime", BackendOptions(provider="cuda")), ref_gpu))
        if "TensorrtExecutionProvider" in providers and qdq is not None:
            trt_qdq = qdq.parent / "calib" / "model.qdq.onnx"  # calibrate()'s TensorRT placement
            pairs.append(("onnxruntime tensorrt-ep int8", (str(trt_qdq), "onnxruntime", BackendOptions(provider="tensorrt")), ref_gpu))
        for plan in args.plan or []:
            if arch in Path(plan).name:
                pairs.append((f"tensorrt {Path(plan).name}", (plan, "tensorrt", BackendOptions()), ref_gpu))
    return pairs


def summary_png(rows: list[dict[str, Any]], path: Path) -> None:
    from edgeres.bench.plot import import_pyplot

    plt = import_pyplot()
    models = sorted({r["model"] for r in rows}, key=[r["model"] for r in rows].index)
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        mine = [r for r in rows if r["model"] == model]
        labels = ["torch fp32 (reference)"] + [r["label"] for r in mine]
        medians = [float(np.median([r["reference_median_ms"] for r in mine]))] + [r["candidate_median_ms"] for r in mine]
        bars = ax.barh(range(len(labels)), medians, color=["#7f7f7f"] + ["#1f77b4"] * len(mine))
        for bar, r in zip(bars[1:], mine):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {r['speedup']:.2f}x", va="center", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("median end-to-end latency (ms), batch 1")
        ax.set_title(f"{model}: speedup vs torch FP32 (alternated rounds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--batch", default="1")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--calib-samples", type=int, default=32)
    parser.add_argument("--agreement-samples", type=int, default=16)
    parser.add_argument("--compile", action="store_true", help="also torch.compile (slow to compile on a CPU)")
    parser.add_argument("--plan", action="append", help="TensorRT plan(s) to include; matched to models by name")
    parser.add_argument("--out", default="out/bench_backends")
    args = parser.parse_args()

    from edgeres.bench.backends import create_backend
    from edgeres.bench.report import report_dict
    from edgeres.bench.runner import run_benchmark
    from edgeres.bench.timing import TimingConfig

    config = TimingConfig(duration_s=args.duration, rounds=args.rounds)
    batch_sizes = [int(b) for b in args.batch.split(",")]
    reports, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.models.split(","):
            fp32, shape = fp32_onnx(arch, Path(tmp))
            qdq = int8_qdq_onnx(fp32, shape, Path(tmp), args.calib_samples)
            for label, cand, ref in candidates(arch, fp32, qdq, args):
                print(f"- {arch}: {label} vs torch fp32 ...", flush=True)
                try:
                    result = run_benchmark(create_backend(*cand), create_backend(*ref), batch_sizes=batch_sizes, config=config,
                                           agreement_samples=args.agreement_samples)
                except Exception as exc:  # noqa: BLE001 - one failing backend must not hide the others
                    print(f"  skipped: {exc}")
                    continue
                report = report_dict(result)
                report["label"] = f"{arch} {label}"
                reports.append(report)
                for r in result.results:
                    rows.append({
                        "model": arch, "label": label, "batch_size": r.batch_size,
                        "candidate_median_ms": r.candidate.e2e.median_ms, "reference_median_ms": r.reference.e2e.median_ms,
                        "speedup": r.speedup.median, "speedup_ci": [r.speedup.ci_low, r.speedup.ci_high],
                        "candidate_cv": r.candidate.e2e.cv, "top1_agreement": r.agreement["top1_agreement"],
                        "cosine": r.agreement["cosine"],
                    })
                    print(f"  batch {r.batch_size}: {r.candidate.e2e.median_ms:.2f} ms vs {r.reference.e2e.median_ms:.2f} ms "
                          f"-> {r.speedup.median:.2f}x (CI {r.speedup.ci_low:.2f}..{r.speedup.ci_high:.2f}), "
                          f"CV {r.candidate.e2e.cv:.1%}, top-1 agreement {r.agreement['top1_agreement']:.0%}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps({"summary": rows, "reports": reports}, indent=2, allow_nan=False) + "\n")
    summary_png([r for r in rows if r["batch_size"] == batch_sizes[0]], out.with_suffix(".png"))
    print(f"wrote {json_path} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
