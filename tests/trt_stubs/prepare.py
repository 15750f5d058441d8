"""Make the REAL TensorRT Python bindings importable on a machine without TensorRT.

For API-conformance tests only: NVIDIA publishes the bindings as plain wheels
(``tensorrt_bindings`` extension module) on the package index, but their
shared libraries (libnvinfer & co.) come only from NVIDIA's own index. We
install the bindings wheel per version into its own folder, compile small
stand-in libraries (``stubs.cpp``) whose factories return null, and add a
``tensorrt`` package that re-exports ``tensorrt_bindings`` exactly as NVIDIA's
``tensorrt`` frontend package does. The result: every class, enum and
signature of that TensorRT version is the real one, and ``trt.Builder(logger)``
raises ``TypeError`` instead of building. Nothing here can build an engine.

The environment (``PYTHONPATH``, ``LD_LIBRARY_PATH``) must be set before the
Python process starts, so tests run each version in a subprocess.

Usage::

    python tests/trt_stubs/prepare.py            # all versions; prints one env line each
    python tests/trt_stubs/prepare.py 10.3.0

Idempotent: a finished version leaves a stamp and costs only a few stat calls
afterwards. Cold cost: one pip install (~1 MB wheel) and four compiles per version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "stubs.cpp"
BUILD_DIR = Path(os.environ.get("EDGERES_TRT_STUBS_DIR", HERE.parent / "_trt_stubs_build"))

# version -> (pip requirement, libraries the bindings' extension module links: soname stem -> -D macro)
_COMMON = {"libnvinfer": "STUB_NVINFER", "libnvonnxparser": "STUB_NVONNXPARSER", "libnvinfer_plugin": "STUB_NVINFER_PLUGIN"}
VERSIONS: dict[str, tuple[str, dict[str, str]]] = {
    "8.6.1": ("tensorrt-bindings==8.6.1", {**_COMMON, "libnvparsers": "STUB_NVPARSERS"}),
    "10.3.0": ("tensorrt-cu12-bindings==10.3.0", dict(_COMMON)),
    "11.4.0.106": ("tensorrt-cu12-bindings==11.4.0.106", dict(_COMMON)),
}

# NVIDIA's frontend package (python/packaging/frontend_sdist/tensorrt/__init__.py) is exactly this.
SHIM = "from tensorrt_bindings import *\nfrom tensorrt_bindings import __version__\n"


class StubsUnavailable(RuntimeError):
    """The compiler or the package index is missing; the reason says which."""


@dataclasses.dataclass(frozen=True)
class StubEnv:
    """Where one version's bindings and stand-in libraries are."""

    version: str
    site_dir: Path
    lib_dir: Path

    def env(self, base: dict[str, str] | None = None, extra_pythonpath: list[str] | None = None) -> dict[str, str]:
        """``base`` (default: os.environ) with this version's PYTHONPATH and LD_LIBRARY_PATH in front."""
        env = dict(os.environ if base is None else base)
        paths = [str(self.site_dir), *(extra_pythonpath or [])]
        env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["LD_LIBRARY_PATH"] = os.pathsep.join([str(self.lib_dir)] + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []))
        env["EDGERES_TRT_EXPECTED_VERSION"] = self.version
        return env


def _major(version: str) -> str:
    return version.split(".")[0]


def _stamp(version: str) -> str:
    """Changes when the stub source, the pinned wheel or the Python ABI changes."""
    req, libs = VERSIONS[version]
    h = hashlib.sha256(SOURCE.read_bytes())
    h.update(json.dumps([req, sorted(libs.items()), sys.version_info[:2], sys.executable]).encode())
    return h.hexdigest()[:16]


def _compiler() -> str:
    for name in (os.environ.get("CXX", ""), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    raise StubsUnavailable("no C++ compiler (c++, g++ or clang++) on PATH to compile the TensorRT stand-in libraries")


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise StubsUnavailable(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")


def _install_bindings(version: str, site_dir: Path) -> None:
    req, _ = VERSIONS[version]
    tmp = site_dir.with_name(f"{site_dir.name}.{os.getpid()}.tmp")  # concurrent pytest runs never share one
    shutil.rmtree(tmp, ignore_errors=True)
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
          "--no-compile", "--target", str(tmp), req], f"pip install {req} (is the package index reachable?)")
    (tmp / "tensorrt").mkdir(exist_ok=True)
    (tmp / "tensorrt" / "__init__.py").write_text(SHIM)
    # Shadow a real tensorrt_libs wheel, if one is installed: it would load the real libnvinfer first.
    (tmp / "tensorrt_libs").mkdir(exist_ok=True)
    (tmp / "tensorrt_libs" / "__init__.py").write_text('"""Empty on purpose: the stand-in libraries must be the ones loaded."""\n')
    shutil.rmtree(site_dir, ignore_errors=True)
    try:
        tmp.rename(site_dir)
    except OSError:  # another process finished the same version first
        shutil.rmtree(tmp, ignore_errors=True)


def _compile_stubs(version: str, lib_dir: Path) -> None:
    cxx = _compiler()
    _, libs = VERSIONS[version]
    tmp = lib_dir.with_name(f"{lib_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for stem, macro in libs.items():
        soname = f"{stem}.so.{_major(version)}"
        _run([cxx, "-shared", "-fPIC", "-O1", f"-D{macro}", f"-Wl,-soname,{soname}", "-o", str(tmp / soname), str(SOURCE)],
             f"compiling {soname}")
    shutil.rmtree(lib_dir, ignore_errors=True)
    try:
        tmp.rename(lib_dir)
    except OSError:  # another process finished the same version first
        shutil.rmtree(tmp, ignore_errors=True)


def prepare(version: str, build_dir: Path = BUILD_DIR) -> StubEnv:
    """Install and compile what ``version`` needs (once); return where it is.

    Raises:
        StubsUnavailable: no C++ compiler, or pip could not fetch the bindings wheel.
    """
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {sorted(VERSIONS)}, received {version!r}")
    root = build_dir / version
    site_dir, lib_dir, stamp_file = root / "site", root / "lib", root / "stamp"
    stamp = _stamp(version)
    if stamp_file.is_file() and stamp_file.read_text() == stamp and site_dir.is_dir() and lib_dir.is_dir():
        return StubEnv(version, site_dir, lib_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp_file.unlink(missing_ok=True)
    _compile_stubs(version, lib_dir)  # first: without a compiler there is no point downloading
    _install_bindings(version, site_dir)
    stamp_file.write_text(stamp)
    return StubEnv(version, site_dir, lib_dir)


def main(argv: list[str]) -> int:
    for version in argv or sorted(VERSIONS, key=lambda v: tuple(int(p) for p in v.split("."))):
        try:
            env = prepare(version)
        except StubsUnavailable as exc:
            print(f"{version}: unavailable: {exc}", file=sys.stderr)
            return 1
        print(f"PYTHONPATH={env.site_dir} LD_LIBRARY_PATH={env.lib_dir}  # TensorRT {version} bindings over stand-ins")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
