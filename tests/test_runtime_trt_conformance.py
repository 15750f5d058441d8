"""edgeres.runtime's TensorRT backend against the REAL bindings of TensorRT 8.6.1, 10.3.0 and 11.4.

Each version runs tests/trt_stubs/runtime_conformance.py in its own subprocess
over the stand-in libraries of tests/trt_stubs/prepare.py (no GPU, no engine is
run). Skips only when no C++ compiler or no package index is available.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE / "trt_stubs"))
import prepare  # noqa: E402


@pytest.mark.parametrize("version", list(prepare.VERSIONS))
def test_runtime_conformance(version):
    try:
        env = prepare.prepare(version)
    except prepare.StubsUnavailable as exc:
        pytest.skip(f"TensorRT {version} bindings cannot be prepared: {exc}")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
           "--rootdir", str(REPO), str(HERE / "trt_stubs" / "runtime_conformance.py")]
    proc = subprocess.run(cmd, cwd=REPO, env=env.env(extra_pythonpath=[str(REPO)]), capture_output=True, text=True,
                          timeout=300)
    report = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"TensorRT {version} runtime conformance failed:\n{report}"
    assert " passed" in proc.stdout and " skipped" not in proc.stdout, f"TensorRT {version}: not all ran:\n{report}"
