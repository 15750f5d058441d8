"""What serving through Triton (``edgeres serve``) costs against calling ``Engine.infer`` directly, in one run.

For each model (the shipped reference ResNet-20 1x28x28, and a seeded random ResNet-50 3x224x224),
FP32 bundles with a 1..32 batch profile on onnxruntime CPU:

  * direct: C threads in this process call ``Engine.infer`` on batch-1 inputs (one shared engine);
  * served: ``edgeres serve BUNDLE --instances K`` (K = 1 and 2 by default, one server each) runs as
    its own process on loopback ports; C client threads (one gRPC ``tritonclient`` each) send
    batch-1 requests; Triton batches them dynamically.

at concurrency C = 1, 8 and 32, measured in turn in rounds (the order rotated each round). Each
measurement sends a bounded number of requests and stops early at a time limit. Reported per C:
median throughput (inferences/s) of each side, median per-round ratio served/direct (its spread too), p50/p99
latency of each side (all rounds pooled), and the overhead 1 - served/direct. The target is an
overhead under 15% at C = 8.

Loopback only; the server is stopped (SIGTERM) in a ``finally``. TensorRT is not measured (no GPU).

Usage:
    python benchmarks/serve_throughput.py [--rounds 5] [--models reference,resnet50] [--instances 1,2]
        [--json benchmarks/results/serve_throughput.json] [--txt benchmarks/results/serve_throughput.txt]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 8, 32)
MAX_BATCH = 32
# per model: requests per measurement at each concurrency, and a time limit per measurement (s)
BUDGET = {"reference": {"requests": 400, "seconds": 10.0}, "resnet50": {"requests": 32, "seconds": 15.0}}
BUILD_ARGS = {
    "reference": ["--precision", "fp32"],
    "resnet50": ["--arch", "resnet50", "--precision", "fp32"],
}
TARGET_OVERHEAD_C8 = 0.15


def build_bundle(model: str, out: Path) -> Path:
    """An FP32 bundle of ``model`` with batch profile 1..32 (opt 8), through ``edgeres build``."""
    cmd = [sys.executable, "-c", "from edgeres.cli import main; main()", "build", "--target", "jetson-orin",
           *BUILD_ARGS[model], "--batch", "8", "--max-batch", str(MAX_BATCH), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, env=_env())
    return out


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def free_ports(n: int = 3) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_server(bundle: Path, ports: list[int], instances: int = 1) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-c", "from edgeres.cli import main; main()", "serve", str(bundle),
           "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
           "--instances", str(instances)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    import tritonclient.grpc as grpcclient

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"edgeres serve exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            client = grpcclient.InferenceServerClient(f"127.0.0.1:{ports[1]}")
            if client.is_model_ready("edgeres"):
                client.close()
                return proc
            client.close()
        except Exception:
            pass
        time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError("server not ready in 120 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_load(make_call: Callable[[], Callable[[np.ndarray], Any]], x: np.ndarray, concurrency: int,
             requests: int, seconds: float) -> dict[str, Any]:
    """``concurrency`` threads share ``requests`` calls (stopping at ``seconds``); throughput and latencies."""
    lock = threading.Lock()
    remaining = [requests]
    latencies: list[float] = []
    errors: list[str] = []
    barrier = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def worker() -> None:
        call = make_call()
        barrier.wait()
        mine = []
        while True:
            with lock:
                if remaining[0] <= 0 or time.perf_counter() > stop_at[0]:
                    break
                remaining[0] -= 1
            t = time.perf_counter()
            try:
                call(x)
            except Exception as exc:  # counted and reported, never hidden
                errors.append(f"{type(exc).__name__}: {exc}")
                break
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    start = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"throughput": len(latencies) / wall, "latencies_ms": [v * 1000 for v in latencies], "done": len(latencies),
            "errors": errors[:3]}


def direct_caller(engine: Any) -> Callable[[], Callable[[np.ndarray], Any]]:
    return lambda: engine.infer


def served_caller(grpc_port: int, input_name: str, output_name: str) -> Callable[[], Callable[[np.ndarray], Any]]:
    def make() -> Callable[[np.ndarray], Any]:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")

        def call(x: np.ndarray) -> Any:
            inp = grpcclient.InferInput(input_name, list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            return client.infer("edgeres", [inp]).as_numpy(output_name)

        return call

    return make


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def bench_model(model: str, rounds: int, work: Path, instances: tuple[int, ...] = (1,)) -> dict[str, Any]:
    """Direct and served (one server per instance count) at each concurrency, order rotated each round."""
    from edgeres.runtime import open_engine

    bundle = build_bundle(model, work / model)
    budget = BUDGET[model]
    servers: dict[int, tuple[subprocess.Popen[bytes], list[int]]] = {}
    rows = []
    try:
        for k in instances:
            ports = free_ports()
            servers[k] = (start_server(bundle, ports, k), ports)
        with open_engine(bundle) as engine:
            x = np.random.default_rng(0).standard_normal(engine.sample_shape(batch=1)).astype(np.float32)
            callers = {"direct": direct_caller(engine)}
            for k, (_proc, ports) in servers.items():
                callers[f"served_i{k}"] = served_caller(ports[1], engine.inputs[0].name, engine.outputs[0].name)
                np.testing.assert_allclose(callers[f"served_i{k}"]()(x), engine.infer(x), rtol=1e-5, atol=1e-5)
            names = list(callers)
            for c in CONCURRENCY:
                for name in names:
                    run_load(callers[name], x, c, max(c, 8), 10)  # warm-up
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
                for i in range(rounds):  # rotate the order so no side always runs first
                    for name in names[i % len(names):] + names[:i % len(names)]:
                        runs[name].append(run_load(callers[name], x, c, budget["requests"], budget["seconds"]))
                d_runs = runs["direct"]
                d_lat = [v for r in d_runs for v in r["latencies_ms"]]
                for k in servers:
                    s_runs = runs[f"served_i{k}"]
                    s_lat = [v for r in s_runs for v in r["latencies_ms"]]
                    ratios = [s["throughput"] / d["throughput"] for d, s in zip(d_runs, s_runs)]
                    row = {
                        "concurrency": c, "instances": k,
                        "direct_inf_per_s": statistics.median(r["throughput"] for r in d_runs),
                        "served_inf_per_s": statistics.median(r["throughput"] for r in s_runs),
                        "ratio_served_over_direct": statistics.median(ratios),
                        "overhead": 1 - statistics.median(ratios),
                        "direct_p50_ms": pct(d_lat, 50), "direct_p99_ms": pct(d_lat, 99),
                        "served_p50_ms": pct(s_lat, 50), "served_p99_ms": pct(s_lat, 99),
                        "round_ratios": ratios,
                        "requests_per_round": [r["done"] for r in s_runs],
                        "errors": [e for r in d_runs + s_runs for e in r["errors"]],
                    }
                    rows.append(row)
                    print(f"  {model} C={c} instances={k}: direct {row['direct_inf_per_s']:.1f}/s, "
                          f"served {row['served_inf_per_s']:.1f}/s, overhead {row['overhead'] * 100:+.1f}%", flush=True)
    finally:
        for proc, _ports in servers.values():
            stop_server(proc)
    return {"model": model, "input_shape": list(json.loads((bundle / "manifest.json").read_text())["input_shape"]),
            "batch_profile": [1, 8, MAX_BATCH], "rows": rows}


def report_text(result: dict[str, Any]) -> str:
    lines = [
        "edgeres serve (Triton via PyTriton, onnxruntime CPU) vs Engine.infer direct, batch-1 requests",
        f"machine: {result['environment']['cpu_count']} CPU cores, {result['environment']['platform']}; "
        f"load average at start {result['environment']['loadavg_start']}, end {result['environment']['loadavg_end']}",
        "NOTE: " + result["note"],
        f"server instances {result['instances']} (one server each, all up during the run); rounds {result['rounds']} (direct and each server measured in turn, order rotated each round); throughput = median of rounds; overhead = 1 - median of per-round ratios; latency pooled",
        "",
        f"{'model':<10} {'C':>3} {'inst':>4} {'direct/s':>9} {'served/s':>9} {'overhead':>9} {'d p50':>7} {'d p99':>7} "
        f"{'s p50':>7} {'s p99':>7}  (ms)  per-round served/direct",
    ]
    for m in result["models"]:
        for r in m["rows"]:
            lines.append(f"{m['model']:<10} {r['concurrency']:>3} {r['instances']:>4} {r['direct_inf_per_s']:>9.1f} {r['served_inf_per_s']:>9.1f} "
                         f"{r['overhead'] * 100:>8.1f}% {r['direct_p50_ms']:>7.2f} {r['direct_p99_ms']:>7.2f} "
                         f"{r['served_p50_ms']:>7.2f} {r['served_p99_ms']:>7.2f}        "
                         f"{min(r['round_ratios']):.2f}..{max(r['round_ratios']):.2f}")
    lines += ["", f"target: overhead at C=8 under {TARGET_OVERHEAD_C8 * 100:.0f}%: " + ", ".join(
        f"{m['model']} --instances {r['instances']} {'met' if r['overhead'] < TARGET_OVERHEAD_C8 else 'NOT met'} "
        f"({r['overhead'] * 100:.1f}%)"
        for m in result["models"] for r in m["rows"] if r["concurrency"] == 8)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", default="reference,resnet50")
    parser.add_argument("--instances", default="1,2", help="edgeres serve --instances values to measure (comma list)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--txt", type=Path, default=None)
    parser.add_argument("--note", default="the 2-core CPU was shared with other jobs during this run; "
                                          "absolute numbers are noisy, compare the ratios within one run")
    args = parser.parse_args(argv)
    instances = tuple(int(k) for k in args.instances.split(","))
    import onnxruntime
    import pytriton  # noqa: F401  (fails early with an ImportError if the serve extra is missing)

    env = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "onnxruntime": onnxruntime.__version__, "loadavg_start": [round(v, 2) for v in os.getloadavg()]}
    models = []
    with tempfile.TemporaryDirectory(prefix="edgeres-serve-bench-") as tmp:
        for model in args.models.split(","):
            print(f"{model}:", flush=True)
            models.append(bench_model(model, args.rounds, Path(tmp), instances))
    env["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    result = {"benchmark": "serve_throughput", "rounds": args.rounds, "instances": list(instances), "note": args.note, "environment": env,
              "concurrency": list(CONCURRENCY), "budget": BUDGET, "models": models}
    text = report_text(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.txt:
        args.txt.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
