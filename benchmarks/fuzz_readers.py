"""Long fuzzing run of every edgeres file reader: the CI properties of tests/test_readers_fuzz.py at a large scale.

    python benchmarks/fuzz_readers.py [--scale 20] [--json benchmarks/results/fuzz_readers.json]

Runs each property with ``EDGERES_FUZZ_SCALE`` times its CI example count (CI runs scale 1:
a few thousand examples per reader, about 35 s of CPU), one pytest process, and records per
property the examples run and the wall time. A failure prints hypothesis' minimal example:
add it to tests/data/hostile/<reader>/ (named for what it is) and fix the reader.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=20.0, help="multiple of the CI example counts")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("-k", default="not corpus", help="pytest -k expression (default: every property)")
    args = parser.parse_args()
    env = {**os.environ, "EDGERES_FUZZ_SCALE": str(args.scale),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_readers_fuzz.py"),
         "-k", args.k, "--durations=0", "-o", "addopts=", "--hypothesis-show-statistics"],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )
    wall_s = time.perf_counter() - start
    sys.stdout.write(done.stdout[-20000:])
    sys.stderr.write(done.stderr[-5000:])
    sys.path.insert(0, str(ROOT))
    from tests.test_readers_fuzz import EXAMPLES

    durations = {m.group(2): float(m.group(1)) for m in re.finditer(r"([\d.]+)s call\s+\S+::(\w+)", done.stdout)}
    passing = {m.group(1): int(m.group(2))
               for m in re.finditer(r"test_readers_fuzz.py::(\w+):\n\n\s+- during generate phase \([\d.]+ seconds\):\n"
                                    r"\s+- Typical runtimes: [^\n]*\n\s+- (\d+) passing examples", done.stdout)}
    result = {
        "script": "benchmarks/fuzz_readers.py", "scale": args.scale, "ci_examples_per_reader": EXAMPLES,
        "returncode": done.returncode, "wall_s": round(wall_s, 1), "property_seconds": durations,
        "passing_examples": passing, "total_passing_examples": sum(passing.values()),
        "python": platform.python_version(), "machine": platform.machine(),
        "note": "machine shared with other jobs; wall times are indicative only",
    }
    print(json.dumps({k: result[k] for k in ("returncode", "wall_s", "total_passing_examples")}))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
