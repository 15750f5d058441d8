"""edgeres INT8 calibration against the tools users pick today, measured in one run.

Workloads:
  (a) the shipped reference model (CIFAR ResNet-20 on real MNIST digits): calibration
      on ``reference:calib``, accuracy on ``reference:test``;
  (b) ResNet-50 (ImageNet architecture) with RANDOMLY INITIALIZED weights whose
      BatchNorm statistics are re-estimated on real photos (no pretrained weights can
      be downloaded here). Its "real images" are random crops/flips of the sample
      photos shipped inside scikit-image (``skimage/data``) and scikit-learn
      (``load_sample_images``); calibration and evaluation crops are disjoint draws.
      It has no labels: agreement with FP32 and logits SQNR only.

Methods: edgeres (entropy, max, percentile 99.99, mse; ``mse+classifier`` also quantizes the
classifier Gemm, which edgeres leaves unquantized by default); onnxruntime ``quantize_static``
(QDQ, per-channel, symmetric INT8 activations and weights; MinMax and Entropy with
their defaults); NVIDIA ModelOpt ONNX PTQ (``modelopt.onnx.quantization.quantize``,
int8, entropy and max, CPU EP) from a separate venv if it installs and runs; why not
otherwise. Each method calibrates in a fresh subprocess on the same images (an
``.npy`` file): wall time of the calibration call and that child's peak RSS
(``os.wait4`` rusage). Latency: onnxruntime CPU, batch 1, every model alternated
round by round with FP32, median of the rounds. edgeres latency is measured on its
onnxruntime-placement variant (same scales; the TensorRT-placement ``model.qdq.onnx``
leaves Conv outputs unquantized, so onnxruntime runs those convs in float).

Usage:
    python benchmarks/calibration_peers.py [--r50-calib 256] [--r50-eval 128] [--json out.json]
    python benchmarks/calibration_peers.py --whole resnet18 resnet50 --rounds 3 --json out.json   # issue 13

``--whole`` (issue 13): the whole ``edgeres calibrate --method entropy --calib-size 256`` command (a
fresh process: imports, fold, export, decoding the photo folder, every phase, writing) beside
onnxruntime ``quantize_static`` MinMax, Entropy and Percentile and ModelOpt max/entropy on the
same photos (the recipe's pixels, as ``.npy``), torchvision ResNet-18/-50 with random weights and
BatchNorm re-estimated on other crops; alternated round by round, median of ``--rounds``;
logits SQNR and top-1 agreement on held-out crops; the isolated-sensitivity ranking from
edgeres' report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
MODELOPT_PYTHON = os.environ.get("EDGERES_MODELOPT_PYTHON", "/tmp/venv-mo/bin/python")


# ---------------------------------------------------------------- children (one method each)

class _Arrays:
    def __init__(self, images: np.ndarray) -> None:
        self.images = images
        self.labels = None

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch_size: int):
        for start in range(0, len(self.images), batch_size):
            yield np.ascontiguousarray(self.images[start:start + batch_size], dtype=np.float32), None


def child_edgeres(model_path: str, calib: str, out: str, method: str, batch_size: int) -> dict:
    import onnx

    from edgeres.calibrate.calibrators import compute_amax, scale_from_amax
    from edgeres.calibrate.qdq import qdq_model
    from edgeres.calibrate.stats import collect_statistics

    images = np.load(calib, mmap_mode="r")
    method, _, extra = method.partition("+")  # "mse+classifier": also quantize the classifier Gemm
    options = {"quantize_classifier": extra == "classifier"}
    start = time.perf_counter()
    model = onnx.load(model_path)
    hists = collect_statistics(model, _Arrays(images), batch_size=batch_size)
    scales = {n: scale_from_amax(compute_amax(h, method)) for n, h in hists.items()}
    onnx.save(qdq_model(model, scales, **options), out)
    calib_s = time.perf_counter() - start
    onnx.save(qdq_model(model, scales, placement="onnxruntime", **options), out.replace(".onnx", ".ort.onnx"))
    return {"calib_s": calib_s}


def child_ort(model_path: str, calib: str, out: str, method: str, batch_size: int) -> dict:
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    images = np.load(calib, mmap_mode="r")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(range(0, len(images), batch_size))

        def get_next(self):
            start = next(self.it, None)
            return None if start is None else {"input": np.ascontiguousarray(images[start:start + batch_size], dtype=np.float32)}

    start = time.perf_counter()
    quantize_static(
        model_path, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                          "percentile": CalibrationMethod.Percentile}[method],
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    return {"calib_s": time.perf_counter() - start}


def child_modelopt(model_path: str, calib: str, out: str, method: str, batch_size: int) -> dict:
    from modelopt.onnx.quantization import quantize

    images = np.ascontiguousarray(np.load(calib), dtype=np.float32)
    start = time.perf_counter()
    quantize(model_path, quantize_mode="int8", calibration_data={"input": images}, calibration_method=method,
             calibration_eps=["cpu"], output_path=out, log_level="ERROR")
    return {"calib_s": time.perf_counter() - start}


def child_floor(model_path: str, calib: str, out: str, method: str, batch_size: int) -> dict:
    """What no calibrator of every image can go below: ``import`` (Python with torch and onnxruntime, which the
    command needs to read a PyTorch checkpoint and run ONNX) or ``forward`` (one plain FP32 onnxruntime pass over
    the calibration images, default session options: the pass every statistics method needs)."""
    start = time.perf_counter()
    if method == "import":
        import onnxruntime  # noqa: F401
        import torch  # noqa: F401

        return {"calib_s": time.perf_counter() - start}
    import onnxruntime as ort

    images = np.ascontiguousarray(np.load(calib), dtype=np.float32)
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    session.run(None, {"input": images[:1]})  # warm-up (first-call allocations)
    start = time.perf_counter()
    for first in range(0, len(images), batch_size):
        session.run(None, {"input": images[first:first + batch_size]})
    return {"calib_s": time.perf_counter() - start}


CHILDREN = {"edgeres": child_edgeres, "onnxruntime": child_ort, "modelopt": child_modelopt, "floor": child_floor}


def run_child(tool: str, method: str, model_path: Path, calib: Path, out: Path, batch_size: int, python: str = sys.executable) -> dict:
    """Run one calibration in a fresh process; its wall time, peak RSS, and any failure."""
    cmd = [python, str(HERE), "--child", tool, method, str(model_path), str(calib), str(out), str(batch_size)]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env)
        stdout = proc.stdout.read().decode()
        _, status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        err = log.read().decode(errors="replace")
    if proc.returncode != 0:
        tail = [ln for ln in err.strip().splitlines() if ln.strip()][-3:]
        return {"ok": False, "error": " | ".join(tail)[-400:] or f"exit {proc.returncode}"}
    result = json.loads(stdout.strip().splitlines()[-1])
    return {"ok": True, "calib_s": result["calib_s"], "peak_rss_mb": rusage.ru_maxrss / 1024}


# ---------------------------------------------------------------- workloads

def photo_crops(count: int, side: int, seed: int) -> np.ndarray:
    """``count`` random-resized crops (with flips) of the photos shipped in scikit-image/scikit-learn, uint8 NHWC."""
    from PIL import Image

    photos = []
    try:
        import skimage

        folder = Path(skimage.__file__).parent / "data"
        for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                     "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "brick.png", "grass.png", "gravel.png",
                     "color.png", "camera.png", "coins.png", "moon.png", "horse.png", "page.png"):
            if (folder / name).exists():
                photos.append(Image.open(folder / name).convert("RGB"))
    except ImportError:
        pass
    from sklearn.datasets import load_sample_images

    photos += [Image.fromarray(img) for img in load_sample_images().images]
    rng = np.random.default_rng(seed)
    out = np.empty((count, side, side, 3), np.uint8)
    for i in range(count):
        img = photos[int(rng.integers(len(photos)))]
        w, h = img.size
        frac = rng.uniform(0.15, 1.0)
        cw = ch = int(min(w, h) * np.sqrt(frac))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = img.crop((x0, y0, x0 + cw, y0 + ch)).resize((side, side), Image.BILINEAR)
        arr = np.asarray(crop)
        out[i] = arr[:, ::-1] if rng.random() < 0.5 else arr
    return out, len(photos)


def normalize(images: np.ndarray, mean, std) -> np.ndarray:
    x = images.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def build_resnet50(workdir: Path, n_calib: int, n_eval: int, n_bn: int) -> dict:
    import torch

    from edgeres.models import create_model
    from edgeres.pipeline import onnx_from_model
    from edgeres.recipe import IMAGENET_MEAN, IMAGENET_STD

    crops, n_photos = photo_crops(n_bn + n_calib + n_eval, 224, seed=0)
    x = normalize(crops, IMAGENET_MEAN, IMAGENET_STD)
    bn, calib, evaluation = x[:n_bn], x[n_bn:n_bn + n_calib], x[n_bn + n_calib:]
    torch.manual_seed(0)
    model = create_model("resnet50")
    for m in model.modules():  # re-estimate BN statistics on the real crops (cumulative average)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for start in range(0, len(bn), 16):
            model(torch.from_numpy(bn[start:start + 16]))
    model.eval()
    path = workdir / "resnet50.onnx"
    onnx_from_model(model, path, (3, 224, 224))
    np.save(workdir / "r50_calib.npy", calib)
    return {"name": "resnet50 (random init, BN re-estimated on real photos)", "model": path,
            "calib": workdir / "r50_calib.npy", "eval": evaluation, "labels": None,
            "note": f"random weights; BN stats from {n_bn} crops; {n_photos} shipped photos (scikit-image + scikit-learn)"}


def build_reference(workdir: Path, n_calib: int | None) -> dict:
    from edgeres import reference
    from edgeres.data import reference_dataset
    from edgeres.pipeline import export_model

    calib_ds = reference_dataset("calib")
    test_ds = reference_dataset("test")
    calib = calib_ds.array()
    if n_calib:
        calib = calib[:n_calib]
    evaluation = test_ds.array()
    path = workdir / "reference.onnx"
    export_model(None, None, path)
    np.save(workdir / "ref_calib.npy", calib)
    return {"name": "reference (ResNet-20 on MNIST digits)", "model": path, "calib": workdir / "ref_calib.npy",
            "eval": evaluation, "labels": test_ds.labels, "note": f"{len(calib)} calibration / {len(evaluation)} test images"}


def build_photo_workload(workdir: Path, arch: str, n_calib: int, n_eval: int, n_bn: int) -> dict:
    """``arch`` (torchvision layout, random init, BN re-estimated on real photos) as a user would have it.

    Files: ``weights.pt`` (state dict), ``photos/`` (``n_calib`` PNG crops: what ``edgeres calibrate
    --calib-data`` reads), ``calib.npy`` (the same photos through the arch's recipe: what the peers
    read, so every tool sees the same pixels), ``model.onnx`` (the front end's export of the same
    weights: what the peers quantize) and the held-out evaluation crops.
    """
    import torch
    from PIL import Image

    from edgeres.data import load_dataset
    from edgeres.models import create_model
    from edgeres.pipeline import export_model, model_from_source
    from edgeres.recipe import IMAGENET_MEAN, IMAGENET_STD

    folder = workdir / arch
    folder.mkdir(parents=True, exist_ok=True)
    crops, n_photos = photo_crops(n_bn + n_calib + n_eval, 224, seed=0)
    bn, calib, evaluation = crops[:n_bn], crops[n_bn:n_bn + n_calib], crops[n_bn + n_calib:]
    made = {"name": f"{arch} (random init, BN re-estimated on real photos)", "arch": arch, "model": folder / "model.onnx",
            "weights": folder / "weights.pt", "photos": folder / "photos", "calib": folder / "calib.npy",
            "eval": normalize(evaluation, IMAGENET_MEAN, IMAGENET_STD), "labels": None,
            "note": f"random weights, BN stats from {n_bn} crops; {n_calib} calibration / {n_eval} held-out crops "
                    f"of {n_photos} shipped photos (scikit-image + scikit-learn)"}
    if (folder / "done").exists():  # same arguments, same files (everything above is seeded)
        return made
    torch.manual_seed(0)
    model = create_model(arch)
    for m in model.modules():  # re-estimate BN statistics on the real crops (cumulative average)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    x = normalize(bn, IMAGENET_MEAN, IMAGENET_STD)
    with torch.no_grad():
        for start in range(0, len(x), 16):
            model(torch.from_numpy(x[start:start + 16]))
    weights = folder / "weights.pt"
    torch.save(model.state_dict(), weights)
    photos = folder / "photos"
    photos.mkdir(exist_ok=True)
    for i, img in enumerate(calib):
        Image.fromarray(img).save(photos / f"{i:04d}.png")
    recipe = model_from_source(arch, weights).recipe
    np.save(folder / "calib.npy", load_dataset(photos, recipe).array())
    export_model(arch, weights, folder / "model.onnx")
    (folder / "done").write_text(f"{n_calib} {n_eval} {n_bn}\n")
    return made


# ---------------------------------------------------------------- measurement

def logits(model_path: Path, images: np.ndarray, batch: int = 32) -> np.ndarray:
    from edgeres.evaluate import onnx_session

    session = onnx_session(model_path)
    return np.concatenate([session.run(None, {"input": images[i:i + batch]})[0] for i in range(0, len(images), batch)])


def latencies_ms(models: dict[str, Path], sample: np.ndarray, rounds: int, iters: int) -> dict[str, float]:
    """Median per-call latency (batch 1) of each model, all alternated round by round."""
    from edgeres.evaluate import onnx_session

    sessions = {k: onnx_session(p) for k, p in models.items()}
    for s in sessions.values():
        for _ in range(3):
            s.run(None, {"input": sample})
    times: dict[str, list[float]] = {k: [] for k in sessions}
    order = list(sessions)
    for r in range(rounds):
        for k in (order if r % 2 == 0 else order[::-1]):
            start = time.perf_counter()
            for _ in range(iters):
                sessions[k].run(None, {"input": sample})
            times[k].append((time.perf_counter() - start) * 1000 / iters)
    return {k: statistics.median(v) for k, v in times.items()}


METHODS = [("edgeres", "entropy"), ("edgeres", "max"), ("edgeres", "percentile"), ("edgeres", "mse"), ("edgeres", "mse+classifier"),
           ("onnxruntime", "minmax"), ("onnxruntime", "entropy"), ("modelopt", "entropy"), ("modelopt", "max")]


def bench_workload(w: dict, workdir: Path, args: argparse.Namespace) -> dict:
    from edgeres.evaluate import compare_logits

    n_calib = len(np.load(w["calib"], mmap_mode="r"))
    ref_logits = logits(w["model"], w["eval"])
    rows = []
    int8_models: dict[str, Path] = {"fp32": w["model"]}
    modelopt_ok = Path(MODELOPT_PYTHON).exists()
    for tool, method in METHODS:
        label = f"{tool}:{method}"
        out = workdir / f"{w['model'].stem}.{tool}.{method}.onnx"
        if tool == "modelopt" and not modelopt_ok:
            rows.append({"method": label, "ok": False, "error": f"no ModelOpt venv at {MODELOPT_PYTHON}"})
            continue
        python = MODELOPT_PYTHON if tool == "modelopt" else sys.executable
        # onnxruntime's histogram calibrators fail on a short last batch (they stack per-batch arrays),
        # so every tool gets the largest batch size <= --batch-size that divides the image count
        batch = max(b for b in range(1, args.batch_size + 1) if n_calib % b == 0)
        print(f"  {label} (batch {batch}) ...", file=sys.stderr, flush=True)
        res = run_child(tool, method, w["model"], w["calib"], out, batch, python)
        row = {"method": label, "batch_size": batch, **res}
        if res["ok"]:
            row["calib_ms_per_image"] = 1000 * res["calib_s"] / n_calib
            row.update(compare_logits(ref_logits, logits(out, w["eval"]), w["labels"]))
            int8_models[label] = out.with_suffix(".ort.onnx") if tool == "edgeres" else out
        rows.append(row)
    sample = np.ascontiguousarray(w["eval"][:1])
    lat = latencies_ms(int8_models, sample, args.rounds, args.iters)
    for row in rows:
        if row["method"] in lat:
            row["latency_ms"] = lat[row["method"]]
            row["latency_vs_fp32"] = lat[row["method"]] / lat["fp32"]
    return {"workload": w["name"], "note": w["note"], "calibration_images": n_calib,
            "eval_images": len(w["eval"]), "fp32_latency_ms": lat["fp32"], "rows": rows}


WHOLE_METHODS = [("edgeres-cli", "entropy"), ("edgeres-cli", "max"), ("onnxruntime", "minmax"), ("onnxruntime", "entropy"),
                 ("onnxruntime", "percentile"), ("modelopt", "max"), ("modelopt", "entropy"),
                 ("floor", "import"), ("floor", "forward")]


def run_edgeres_command(w: dict, out: Path, method: str) -> dict:
    """The whole ``edgeres calibrate`` command in a fresh process (import, fold, export, data, every phase, writing)."""
    cmd = [sys.executable, "-c", "from edgeres.cli import main; main()", "calibrate", "--arch", w["arch"],
           "--weights", str(w["weights"]), "--calib-data", str(w["photos"]), "--calib-size", str(w["n_calib"]),
           "--method", method, "--quiet", "-o", str(out)]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"ok": False, "error": proc.stderr.decode(errors="replace")[-400:]}
    return {"ok": True, "calib_s": wall, "command_s": wall}


def bench_whole(w: dict, workdir: Path, rounds: int, methods: list[tuple[str, str]] = WHOLE_METHODS) -> dict:
    """Whole-command times, alternated round by round (order reversed every other round), median of ``rounds``."""
    from edgeres.evaluate import compare_logits

    ref_logits = logits(w["model"], w["eval"])
    modelopt_ok = Path(MODELOPT_PYTHON).exists()
    times: dict[str, list[float]] = {f"{t}:{m}": [] for t, m in methods}
    outputs: dict[str, Path] = {}
    errors: dict[str, str] = {}
    order = list(methods)
    for r in range(rounds):
        for tool, method in (order if r % 2 == 0 else order[::-1]):
            label = f"{tool}:{method}"
            if label in errors:
                continue
            print(f"  round {r + 1}/{rounds} {label} ...", file=sys.stderr, flush=True)
            if tool == "edgeres-cli":
                out = workdir / f"{w['arch']}.edgeres.{method}"
                res = run_edgeres_command(w, out, method)
                path = out / "model.qdq.onnx"
            elif tool == "modelopt" and not modelopt_ok:
                errors[label] = f"no ModelOpt venv at {MODELOPT_PYTHON}"
                continue
            else:
                path = workdir / f"{w['arch']}.{tool}.{method}.onnx"
                start = time.perf_counter()
                res = run_child(tool, method, w["model"], w["calib"], path, 32,
                                MODELOPT_PYTHON if tool == "modelopt" else sys.executable)
                res["command_s"] = time.perf_counter() - start
            if not res["ok"]:
                errors[label] = res["error"]
                continue
            times[label].append(res["command_s"] if tool == "edgeres-cli" else res["calib_s"])
            if tool != "floor":
                outputs[label] = path
    rows = []
    for label, values in times.items():
        if label in errors or not values:
            rows.append({"method": label, "ok": False, "error": errors.get(label, "not run")})
            continue
        row = {"method": label, "ok": True, "median_s": statistics.median(values), "rounds_s": values}
        if label in outputs:  # the floor rows make no model
            row.update(compare_logits(ref_logits, logits(outputs[label], w["eval"]), None))
        rows.append(row)
    report = json.loads((workdir / f"{w['arch']}.edgeres.entropy" / "calib_report.json").read_text()) \
        if not errors.get("edgeres-cli:entropy") else {}
    return {"workload": w["name"], "note": w["note"], "rounds": rounds, "rows": rows,
            "edgeres_timing": report.get("timing"), "edgeres_worst_isolated": (report.get("sensitivity") or {}).get("worst_isolated"),
            "edgeres_stability": (report.get("stability") or {}).get("verdict"),
            "timed": "edgeres: the whole command's process wall time (Python start, imports, fold, export, image decoding, "
                     "statistics, evaluation, per-layer analysis, writing); peers: their quantize call only "
                     "(imports and reading the .npy excluded)"}


def whole_targets(result: dict) -> list[str]:
    """The issue-13 targets against this run: <= 0.25x onnxruntime Entropy, <= MinMax, SQNR above every peer."""
    rows = {r["method"]: r for r in result["rows"] if r["ok"]}
    ours, lines = rows.get("edgeres-cli:entropy"), []
    if not ours:
        return ["edgeres did not run"]
    for peer, limit in (("onnxruntime:entropy", 0.25), ("onnxruntime:minmax", 1.0)):
        if peer in rows:
            ratio = ours["median_s"] / rows[peer]["median_s"]
            lines.append(f"whole edgeres calibrate / {peer}: {ratio:.2f}x (target <= {limit}x): {'met' if ratio <= limit else 'MISSED'}")
    floor = sum(rows[k]["median_s"] for k in ("floor:import", "floor:forward") if k in rows)
    if "floor:forward" in rows and "onnxruntime:entropy" in rows:
        lines.append(f"floor (torch+onnxruntime import + one plain FP32 onnxruntime pass) / onnxruntime:entropy: "
                     f"{floor / rows['onnxruntime:entropy']['median_s']:.2f}x; edgeres above that floor: "
                     f"{ours['median_s'] - floor:.2f} s")
    peers = {k: r["sqnr_db"] for k, r in rows.items() if not k.startswith(("edgeres", "floor")) and "sqnr_db" in r}
    if peers:
        best = max(peers, key=peers.get)
        for label in [k for k in rows if k.startswith("edgeres-cli:")]:
            sqnr = rows[label]["sqnr_db"]
            lines.append(f"held-out logits SQNR {label} {sqnr:.2f} dB vs best peer {peers[best]:.2f} dB ({best}): "
                         f"{'met' if sqnr > peers[best] else 'MISSED'}")
    return lines


def print_whole(result: dict) -> None:
    print(f"\n== {result['workload']} ({result['note']}); median of {result['rounds']} alternated round(s)")
    print(f"{'method':<24} {'median s':>9} {'rounds s':<26} {'agree %':>8} {'SQNR dB':>8} {'cos':>9}")
    for r in result["rows"]:
        if not r["ok"]:
            print(f"{r['method']:<24} FAILED: {r['error'][:200]}")
            continue
        rs = ", ".join(f"{v:.1f}" for v in r["rounds_s"])
        if "sqnr_db" not in r:
            print(f"{r['method']:<24} {r['median_s']:>9.2f} {rs:<26} {'-':>8} {'-':>8} {'-':>9}")
            continue
        print(f"{r['method']:<24} {r['median_s']:>9.2f} {rs:<26} {100 * r['top1_agreement']:>8.2f} {r['sqnr_db']:>8.2f} {r['cosine']:>9.6f}")
    if result.get("edgeres_timing"):
        print("edgeres phases (last round): " + ", ".join(f"{k} {v:.2f}" for k, v in result["edgeres_timing"].items()))
    if result.get("edgeres_worst_isolated"):
        print("edgeres worst layers alone (isolated SQNR dB): " + "; ".join(
            f"{r['layer']} {r['isolated_sqnr_db']:.2f}" for r in result["edgeres_worst_isolated"]))
    if result.get("edgeres_stability"):
        print(f"edgeres stability: {result['edgeres_stability']}")
    print(f"timed: {result['timed']}")


def print_table(result: dict) -> None:
    print(f"\n== {result['workload']} ({result['note']}); FP32 latency {result['fp32_latency_ms']:.2f} ms")
    print(f"{'method':<22} {'calib s':>8} {'ms/img':>7} {'RSS MB':>7} {'acc %':>7} {'agree %':>8} {'SQNR dB':>8} {'cos':>9} {'lat ms':>7} {'xFP32':>6}")
    for r in result["rows"]:
        if not r["ok"]:
            print(f"{r['method']:<22} FAILED: {r['error']}")
            continue
        acc = f"{100 * r['accuracy']:.2f}" if r.get("accuracy") is not None else "-"
        print(f"{r['method']:<22} {r['calib_s']:>8.2f} {r['calib_ms_per_image']:>7.1f} {r['peak_rss_mb']:>7.0f} {acc:>7} "
              f"{100 * r['top1_agreement']:>8.2f} {r['sqnr_db']:>8.2f} {r['cosine']:>9.6f} {r.get('latency_ms', float('nan')):>7.2f} "
              f"{r.get('latency_vs_fp32', float('nan')):>6.2f}")
    if result["rows"] and result["rows"][0].get("accuracy_ref") is not None:
        print(f"FP32 accuracy {100 * result['rows'][0]['accuracy_ref']:.2f}%")


def targets(result: dict) -> list[str]:
    """The issue's targets, checked against this run's numbers (misses included), for edgeres' default method."""
    from edgeres.calibrate.calibrators import DEFAULT_METHOD

    rows = {r["method"]: r for r in result["rows"] if r["ok"]}
    name = f"edgeres:{DEFAULT_METHOD}"
    lines = []
    ours = rows.get(name)
    ort_entropy = rows.get("onnxruntime:entropy")
    if ours and ort_entropy:
        speed = ort_entropy["calib_s"] / ours["calib_s"]
        lines.append(f"calibration speed {name} vs onnxruntime Entropy: {speed:.1f}x (target >= 4x): "
                     f"{'met' if speed >= 4 else 'MISSED'}")
    floor = sum(rows[k]["median_s"] for k in ("floor:import", "floor:forward") if k in rows)
    if "floor:forward" in rows and "onnxruntime:entropy" in rows:
        lines.append(f"floor (torch+onnxruntime import + one plain FP32 onnxruntime pass) / onnxruntime:entropy: "
                     f"{floor / rows['onnxruntime:entropy']['median_s']:.2f}x; edgeres above that floor: "
                     f"{ours['median_s'] - floor:.2f} s")
    peers = {k: r["sqnr_db"] for k, r in rows.items() if not k.startswith(("edgeres", "floor")) and "sqnr_db" in r}
    if ours and peers:
        best_peer = max(peers, key=peers.get)
        lines.append(f"logits SQNR {name} {ours['sqnr_db']:.2f} dB vs best peer {peers[best_peer]:.2f} dB ({best_peer}): "
                     f"{'met' if ours['sqnr_db'] >= peers[best_peer] else 'MISSED'}")
    if ours and ours.get("accuracy") is not None:
        drop = 100 * (ours["accuracy_ref"] - ours["accuracy"])
        lines.append(f"top-1 drop {name} {drop:.2f} pts (target <= 0.2): {'met' if drop <= 0.2 else 'MISSED'}")
    ort_lat = [r["latency_ms"] for k, r in rows.items() if k.startswith("onnxruntime") and "latency_ms" in r]
    if ours and ort_lat and "latency_ms" in ours:
        lines.append(f"INT8 latency {name} {ours['latency_ms']:.2f} ms vs onnxruntime-quantized {min(ort_lat):.2f} ms: "
                     f"{'met' if ours['latency_ms'] <= min(ort_lat) * 1.02 else 'MISSED'} (2% noise allowance)")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument("--r50-calib", type=int, default=256, help="ResNet-50 calibration images")
    parser.add_argument("--r50-eval", type=int, default=128, help="ResNet-50 evaluation images")
    parser.add_argument("--r50-bn", type=int, default=128, help="images for re-estimating ResNet-50 BN statistics")
    parser.add_argument("--ref-calib", type=int, default=None, help="reference calibration images (all if omitted)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--only", choices=("reference", "resnet50"), default=None)
    parser.add_argument("--whole", nargs="*", default=None, metavar="ARCH",
                        help="issue 13: whole-command comparison on these archs (default resnet18 resnet50), 256 photos")
    parser.add_argument("--calib", type=int, default=256, help="--whole: calibration photos")
    parser.add_argument("--whole-methods", default=None,
                        help="--whole: comma-separated tool:method subset (default all), e.g. edgeres-cli:entropy,onnxruntime:entropy")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.child:
        tool, method, model, calib, out, batch = args.child
        print(json.dumps(CHILDREN[tool](model, calib, out, method, int(batch))))
        return
    import onnxruntime

    import edgeres

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="edgeres-calib-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    header = {"edgeres": edgeres.__version__, "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
              "cpus": os.cpu_count(), "machine": platform.machine(),
              "caveat": "CPU timings: compare ratios within this run, not across machines or runs"}
    print(json.dumps(header), file=sys.stderr)
    if args.whole is not None:
        header["load"] = os.getloadavg()
        results = []
        for arch in args.whole or ["resnet18", "resnet50"]:
            w = build_photo_workload(workdir, arch, args.calib, args.r50_eval, args.r50_bn)
            w["n_calib"] = args.calib
            print(f"- {w['name']}", file=sys.stderr)
            chosen = [m for m in WHOLE_METHODS if args.whole_methods is None or f"{m[0]}:{m[1]}" in args.whole_methods.split(",")]
            result = bench_whole(w, workdir, args.rounds, chosen)
            result["targets"] = whole_targets(result)
            print_whole(result)
            for line in result["targets"]:
                print("  " + line)
            results.append(result)
        header["load_after"] = os.getloadavg()
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"environment": header, "results": results}, indent=2, default=str) + "\n")
        return
    results = []
    builders = []
    if args.only in (None, "reference"):
        builders.append(lambda: build_reference(workdir, args.ref_calib))
    if args.only in (None, "resnet50"):
        builders.append(lambda: build_resnet50(workdir, args.r50_calib, args.r50_eval, args.r50_bn))
    for build in builders:
        try:
            w = build()
        except Exception as exc:  # a workload that cannot be built is reported, not fatal
            results.append({"workload": getattr(build, "__name__", "workload"), "error": f"{type(exc).__name__}: {exc}"})
            print(f"workload failed: {exc}", file=sys.stderr)
            continue
        print(f"- {w['name']}", file=sys.stderr)
        result = bench_workload(w, workdir, args)
        result["targets"] = targets(result)
        print_table(result)
        for line in result["targets"]:
            print("  " + line)
        results.append(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"environment": header, "results": results}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
