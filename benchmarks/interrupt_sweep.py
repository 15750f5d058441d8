"""Kill fresh ``edgeres build`` / ``edgeres calibrate`` processes after delays spread over their whole run.

The CI test (``tests/test_interrupt.py``) pauses at named checkpoints; this sweep
is the undirected check, as a user's Ctrl-C or a job runner's SIGTERM lands:
for each command it times one uninterrupted run (T), then starts fresh
``python -c "from edgeres.cli import main; main()" ...`` processes with an
earlier result in OUT (or none, alternately) and sends SIGINT or SIGTERM after
``T * k / (points + 1)`` seconds, k = 1..points. Each run must leave OUT absent
(when there was none), the complete earlier result or the complete new one
(sha256 of every file; ``calib_report.json`` without its wall times), nothing
beside OUT, and exit 0 (finished first) or 128+signum with one true
``error: interrupted`` line.

    python benchmarks/interrupt_sweep.py [--points 12] [--out benchmarks/results/interrupt_sweep.json]

Not deterministic: where a delay lands depends on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_interrupt import BUILD, BUILD_OLD, CLI, _env, snapshot  # noqa: E402


def run_once(args: list[str], out: Path, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([*CLI, *args, "-o", str(out)], cwd=cwd, env=_env(), check=True, capture_output=True)
    return time.perf_counter() - start


def kill_after(args: list[str], delay_s: float, signum: int, case: Path, old: Path | None) -> dict:
    case.mkdir()
    out = case / "OUT"
    if old is not None:
        shutil.copytree(old, out)
    proc = subprocess.Popen([*CLI, *args, "-o", str(out)], cwd=case, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(delay_s)
    if proc.poll() is None:
        proc.send_signal(signum)
    stderr = proc.communicate(timeout=300)[1]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    return {"rc": proc.returncode, "errors": errors, "out": snapshot(out), "traceback": "Traceback" in stderr,
            "beside": sorted(p.name for p in case.iterdir() if p.name != "OUT")}


def verdict(got: dict, signum: int, old: dict | None, new: dict) -> tuple[str, str | None]:
    """(state of OUT, problem or None)."""
    states = {"absent": None, "old": old, "new": new}
    state = next((name for name, files in states.items() if got["out"] == files), "PARTIAL")
    problem = None
    if state == "PARTIAL" or (state == "absent" and old is not None) or (state == "old" and old is None):
        problem = f"OUT is {state}: {got['out']}"
    elif got["beside"]:
        problem = f"left beside OUT: {got['beside']}"
    elif got["traceback"]:
        problem = "a traceback"
    elif got["rc"] == 0:
        problem = None if state == "new" else f"exit 0 but OUT is {state}"
    elif got["rc"] != 128 + signum or len(got["errors"]) != 1 or "interrupted" not in got["errors"][0]:
        problem = f"exit {got['rc']}, errors {got['errors']}"
    elif ("after writing" in got["errors"][0]) != (state == "new"):
        problem = f"message untrue for OUT {state}: {got['errors'][0]}"
    return state, problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=12)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "interrupt_sweep.json")
    options = parser.parse_args()
    rows, summary = [], {}
    with tempfile.TemporaryDirectory(prefix="edgeres-sweep-") as tmp:
        work = Path(tmp)
        import numpy as np

        from edgeres.reference import reference_data_path

        with np.load(reference_data_path()) as ref:
            np.savez(work / "eval.npz", images=ref["test_images"][:16], labels=ref["test_labels"][:16])
        calibrate = ["calibrate", "--calib-size", "16", "--eval-data", str(work / "eval.npz"), "--quiet"]
        commands = {"build": (BUILD, BUILD_OLD), "calibrate": (calibrate, [*calibrate, "--method", "max"])}
        for name, (new_args, old_args) in commands.items():
            run_once(old_args, work / f"{name}-old", work)
            total_s = run_once(new_args, work / f"{name}-new", work)
            old, new = snapshot(work / f"{name}-old"), snapshot(work / f"{name}-new")
            counts: dict[str, int] = {}
            for k in range(1, options.points + 1):
                for j, signum in enumerate((signal.SIGINT, signal.SIGTERM)):
                    delay = total_s * k / (options.points + 1)
                    with_old = (k + j) % 2 == 0
                    got = kill_after(new_args, delay, signum, work / f"{name}-{k}-{j}", work / f"{name}-old" if with_old else None)
                    state, problem = verdict(got, signum, old if with_old else None, new)
                    counts[state] = counts.get(state, 0) + 1
                    counts["problems"] = counts.get("problems", 0) + (problem is not None)
                    rows.append({"command": name, "delay_s": round(delay, 3), "signal": signal.Signals(signum).name,
                                 "earlier_result": with_old, "exit": got["rc"], "out": state, "problem": problem})
                    print(f"{name:9} {delay:6.2f}s {signal.Signals(signum).name:7} earlier={with_old!s:5} -> "
                          f"exit {got['rc']:3} OUT {state:6} {problem or 'ok'}", flush=True)
            summary[name] = {"uninterrupted_s": round(total_s, 2), "runs": 2 * options.points, **counts}
    result = {
        "script": "benchmarks/interrupt_sweep.py", "points": options.points, "summary": summary, "runs": rows,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "note": "shared machine (other jobs running): where each delay lands in the run varies from run to run",
    }
    options.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    if any(r["problem"] for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
