"""TensorRT API conformance: edgeres.trt against the REAL Python bindings of 8.6.1, 10.3.0 and 11.4.

Not a TensorRT build (no GPU, no TensorRT libraries here): tests/trt_stubs/prepare.py
installs NVIDIA's bindings wheel per version and compiles stand-in libraries so
the real classes, enums and signatures import; tests/trt_stubs/conformance.py then
runs in one subprocess per version (the library path must be set before Python starts).
Skips only when no C++ compiler is present or the package index is unreachable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "trt_stubs"))
import prepare  # noqa: E402

REPO = HERE.parent


@pytest.mark.parametrize("version", list(prepare.VERSIONS))
def test_conformance(version):
    try:
        env = prepare.prepare(version)
    except prepare.StubsUnavailable as exc:
        pytest.skip(f"TensorRT {version} bindings cannot be prepared: {exc}")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
           "--rootdir", str(REPO), str(HERE / "trt_stubs" / "conformance.py")]
    proc = subprocess.run(cmd, cwd=REPO, env=env.env(extra_pythonpath=[str(REPO)]), capture_output=True, text=True, timeout=300)
    report = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"TensorRT {version} conformance failed:\n{report}"
    assert " passed" in proc.stdout, f"TensorRT {version}: no test ran:\n{report}"
