"""TensorRT API conformance: edgeres.trt against the REAL Python bindings of 8.6.1, 10.3.0 and 11.4.

Not a TensorRT build (no GPU, no TensorRT libraries here): tests/trt_stubs/prepare.py
installs NVIDIA's bindings wheel per version and compiles stand-in libraries so
the real classes, enums and signatures import; tests/trt_stubs/conformance.py then
runs in one subprocess per version (the library path must be set before Python starts).
Skips only when no C++ compiler is present or the package index is unreachable.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _load(name: str, path: Path):
    """Import a helper by path under a unique name (tests/ is not a package; names must not collide)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


prepare = _load("edgeres_trt_stubs_prepare", HERE / "trt_stubs" / "prepare.py")

REPO = HERE.parent


@pytest.fixture(scope="module")
def runs():
    """Start every version's conformance run at once (they are independent); version -> Popen or skip reason."""
    started: dict[str, subprocess.Popen | str] = {}
    for version in prepare.VERSIONS:
        try:
            env = prepare.prepare(version)
        except prepare.StubsUnavailable as exc:
            started[version] = f"TensorRT {version} bindings cannot be prepared: {exc}"
            continue
        cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
               "--rootdir", str(REPO), str(HERE / "trt_stubs" / "conformance.py")]
        started[version] = subprocess.Popen(cmd, cwd=REPO, env=env.env(extra_pythonpath=[str(REPO)]),
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield started
    for proc in started.values():
        if isinstance(proc, subprocess.Popen) and proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("version", list(prepare.VERSIONS))
def test_conformance(runs, version):
    proc = runs[version]
    if isinstance(proc, str):
        pytest.skip(proc)
    out, _ = proc.communicate(timeout=300)
    report = out[-6000:]
    assert proc.returncode == 0, f"TensorRT {version} conformance failed:\n{report}"
    assert " passed" in out, f"TensorRT {version}: no test ran:\n{report}"


def test_prepare_without_compiler_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no c++, g++ or clang++ in an empty folder
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(prepare.StubsUnavailable, match="no C\\+\\+ compiler"):
        prepare.prepare("10.3.0", build_dir=tmp_path / "build")
    assert not (tmp_path / "build" / "10.3.0" / "site").exists(), "nothing may be downloaded without a compiler"
