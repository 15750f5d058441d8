"""One prepared GPU check of edgeres.runtime's TensorRT path (run it where an NVIDIA GPU is).

NOT YET RUN: written without a GPU. Each check prints one line ``PASS``/``FAIL``
and the whole result goes to JSON; exit status 1 if any check fails. Takes
about a minute after the engine builds (the reference model is tiny).

Checks, on the shipped reference model (ResNet-20, real MNIST digits):
  1. build FP32 and FP16 plans (edgeres.trt.build_engine, batch 1..8) and open them with Engine;
  2. FP32 plan vs onnxruntime: max abs logit error; FP16: top-1 on the 1,000-digit test split;
  3. dynamic batch 1..8, and batch 9 refused;
  4. infer_async on the engine's stream and on a caller's stream;
  5. CUDA graph replay equals plain execution;
  6. zero-copy input from a torch CUDA tensor (if torch has CUDA) equals the host path;
  7. 8 threads x 200 inferences equal single-threaded results;
  8. 10,000 inferences: host RSS growth < 5 MB and device free-memory drop < 5 MB;
  9. a sidecar claiming another compute capability is refused with PlanMismatchError;
 10. close() returns the device memory.

Usage:
    python benchmarks/gpu_check_runtime.py [--json out/gpu_check_runtime.json] [--binding cuda-python|pycuda]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import threading
import traceback
from pathlib import Path

import numpy as np


def rss_bytes() -> int:
    import os

    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def device_free_bytes() -> int:
    from edgeres.runtime.cuda import check_result, import_cudart

    free, _total = check_result(import_cudart().cudaMemGetInfo(), "cudaMemGetInfo")
    return int(free)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--binding", default=None, choices=["cuda-python", "pycuda"])
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import torch

    import edgeres
    from edgeres.pipeline import export_model
    from edgeres.reference import reference_data_path, reference_info, reference_recipe
    from edgeres.runtime import Engine, EngineInputError, PlanMismatchError
    from edgeres.sidecar import read_sidecar, write_sidecar
    from edgeres.trt import EngineSettings, build_engine

    results: dict = {}

    def check(name: str, ok: bool, detail: str) -> None:
        results[name] = {"ok": bool(ok), "detail": detail}
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)

    with np.load(reference_data_path()) as archive:
        images, labels = archive["test_images"], archive["test_labels"]
    x_all = reference_recipe().normalize_uint8_nhwc(images)
    tmp = Path(tempfile.mkdtemp(prefix="edgeres-gpu-check-"))
    onnx_path = tmp / "model.onnx"
    export_model(None, None, onnx_path)  # the shipped reference model, through the one front end
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref_all = np.concatenate([session.run(None, {"input": x_all[i:i + 250]})[0] for i in range(0, 1000, 250)])

    plans = {}
    for precision in ("fp32", "fp16"):
        plan = tmp / precision / "model.plan"
        plan.parent.mkdir()
        try:
            build_engine(EngineSettings(onnx_path=onnx_path, plan_path=plan, precision=precision,
                                        input_shape=(1, 28, 28), min_batch=1, opt_batch=4, max_batch=8,
                                        recipe=reference_recipe().to_dict(), show_progress=False))
            plans[precision] = plan
            check(f"build_{precision}", plan.is_file(), f"{plan.stat().st_size} bytes")
        except Exception as exc:
            check(f"build_{precision}", False, f"{type(exc).__name__}: {exc}")
    if "fp32" not in plans:
        print("cannot go on without an FP32 plan", file=sys.stderr)
        return 1

    free_before_open = device_free_bytes()
    engine = Engine(plans["fp32"], binding=args.binding)
    try:
        out = np.concatenate([engine.infer(x_all[i:i + 8]) for i in range(0, 1000, 8)])
        err = float(np.abs(out - ref_all).max())
        check("fp32_vs_onnxruntime", err < 1e-3, f"max abs logit error {err:.2e} over 1,000 digits")
        correct = int((out.argmax(1) == labels).sum())
        recorded = reference_info()["accuracy"]["fp32_onnxruntime_correct"]
        check("fp32_top1", abs(correct - recorded) <= 1, f"{correct}/1000 (recorded FP32 {recorded})")

        for batch in (1, 3, 8):
            got = engine.infer(x_all[:batch])
            err_b = float(np.abs(got - ref_all[:batch]).max())
            check(f"batch_{batch}", err_b < 1e-3, f"max err {err_b:.2e}")
        try:
            engine.infer(x_all[:9])
            check("batch_9_refused", False, "no error")
        except EngineInputError as exc:
            check("batch_9_refused", True, str(exc)[:120])

        pending = engine.infer_async(x_all[:4])
        check("infer_async_own_stream", np.allclose(pending.result(), ref_all[:4], atol=1e-3), "engine stream")
        stream = engine._cuda.stream_create()
        got = engine.infer_async(x_all[4:8], stream=stream).result()
        engine._cuda.stream_destroy(stream)
        check("infer_async_caller_stream", np.allclose(got, ref_all[4:8], atol=1e-3), "caller stream")

        with Engine(plans["fp32"], binding=args.binding, cuda_graph=True) as graphed:
            outs = [graphed.infer(x_all[:4]) for _ in range(5)]
            ok = all(np.allclose(o, ref_all[:4], atol=1e-3) for o in outs)
            check("cuda_graph_replay", ok, f"{len(next(iter(graphed._slots)).graphs)} graph(s) captured")

        if torch.cuda.is_available():
            t = torch.from_numpy(x_all[:4]).cuda()
            got = engine.infer(t)
            check("zero_copy_torch_cuda", np.allclose(got, ref_all[:4], atol=1e-3), "via __cuda_array_interface__")
            got = engine.infer(_DlpackOnly(t))
            check("zero_copy_dlpack", np.allclose(got, ref_all[:4], atol=1e-3), "via __dlpack__")
        else:
            check("zero_copy_torch_cuda", True, "skipped: torch has no CUDA here")

        errors: list[str] = []

        def work(seed: int) -> None:
            for k in range(200):
                i = (seed * 31 + k * 8) % 992
                if not np.allclose(engine.infer(x_all[i:i + 8]), out[i:i + 8], atol=1e-5):
                    errors.append(f"thread {seed} run {k}")

        threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
        for t_ in threads:
            t_.start()
        for t_ in threads:
            t_.join()
        check("threads_8x200", not errors, f"{len(errors)} mismatches, {len(engine._slots)} contexts")

        x1 = x_all[:1]
        for _ in range(500):
            engine.infer(x1)
        rss0, free0 = rss_bytes(), device_free_bytes()
        for _ in range(10_000):
            engine.infer(x1)
        rss_growth, dev_drop = rss_bytes() - rss0, free0 - device_free_bytes()
        check("soak_10000", rss_growth < 5 << 20 and dev_drop < 5 << 20,
              f"RSS +{rss_growth / 2**20:.2f} MiB, device -{dev_drop / 2**20:.2f} MiB")
    except Exception as exc:
        check("unexpected_error", False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    finally:
        engine.close()
    freed = free_before_open - device_free_bytes()
    check("close_returns_device_memory", freed < 8 << 20, f"{freed / 2**20:.2f} MiB still held after close")

    if "fp16" in plans:
        with Engine(plans["fp16"], binding=args.binding) as e16:
            out16 = np.concatenate([e16.infer(x_all[i:i + 8]) for i in range(0, 1000, 8)])
        agree = float((out16.argmax(1) == ref_all.argmax(1)).mean())
        check("fp16_top1_agreement", agree >= 0.99, f"{agree:.1%} of 1,000 digits agree with FP32")

    sidecar = read_sidecar(plans["fp32"])
    major, minor = sidecar.compute_capability
    write_sidecar(plans["fp32"], dataclasses.replace(sidecar, compute_capability=(major, minor + 1)))
    try:
        Engine(plans["fp32"], binding=args.binding).close()
        check("mismatch_refused", False, "opened a plan whose sidecar names another GPU")
    except PlanMismatchError as exc:
        check("mismatch_refused", True, str(exc)[:160])

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["ok"] for r in results.values()) else 1


class _DlpackOnly:
    """Hides a tensor's __cuda_array_interface__ so the DLPack path is taken."""

    def __init__(self, tensor) -> None:
        self._t = tensor

    def __dlpack__(self, stream=None, **kwargs):
        return self._t.__dlpack__(stream=stream)

    def __dlpack_device__(self):
        return self._t.__dlpack_device__()


if __name__ == "__main__":
    sys.exit(main())
