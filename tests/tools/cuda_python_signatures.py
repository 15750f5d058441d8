"""Record the Python signatures of the cuda-python runtime calls edgeres makes, from the REAL wheels.

Developer tool, run by hand (it downloads wheels; the test suite never does): for each
cuda-python release in :data:`RELEASES` it ``pip download``s the wheel, installs it with
``--no-deps --target`` into a temporary folder, imports the runtime module in a separate
interpreter (no GPU or driver is needed to import it) and writes, for every function in
:data:`FUNCTIONS`, its parameters (``inspect.signature``) and the names of what it returns
(the docstring's "Returns" section; every call returns ``(cudaError_t, *those)``), and
whether each enum member in :data:`MEMBERS` exists. The result,
``tests/data/cuda_python_signatures.json``, is what tests/test_runtime_cuda.py builds its
fake bindings from, so edgeres' call sites are checked against each release's signatures.

    python tests/tools/cuda_python_signatures.py            # rewrite tests/data/cuda_python_signatures.json
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "data" / "cuda_python_signatures.json"

# (pip requirement, extra requirement needed to import it): cuda-python 11.8.3 and 12.2.1 are the
# standalone packages (``cuda.cudart``); 11.8.7, 12.9 and 13.x are ``cuda-bindings`` (``cuda.bindings.runtime``),
# which cuda-python >= 12.8 / 11.8.7 install as a dependency.
RELEASES: dict[str, tuple[str, ...]] = {
    "11.8.3": ("cuda-python==11.8.3",),
    "11.8.7": ("cuda-bindings==11.8.7",),
    "12.2.1": ("cuda-python==12.2.1",),
    "12.9.10": ("cuda-bindings==12.9.10", "cuda-pathfinder"),
    "13.4.4": ("cuda-bindings==13.4.4", "cuda-pathfinder"),
}

# Wheels this interpreter cannot import (another CPU or Python): their signatures are read from the
# docstrings Cython embeds in the extension module ("cudaGraphInstantiate(graph, char *pLogBuffer, size_t
# bufferSize)"); what each returns is taken from the named imported release of the same CUDA major.
# 11.8.2 is the newest cuda-python with an aarch64 wheel for Python 3.8 (JetPack 5); 11.8.6/11.8.7 there
# are meta packages whose cuda-bindings has no such wheel.
FOREIGN: dict[str, tuple[str, tuple[str, ...], str]] = {
    "11.8.2-cp38-aarch64": ("cuda-python==11.8.2", ("--platform", "manylinux2014_aarch64", "--python-version", "38"),
                            "11.8.3"),
}

FUNCTIONS = (
    "cudaGetDeviceCount", "cudaGetErrorString", "cudaSetDevice", "cudaDeviceGetAttribute", "cudaGetDeviceProperties",
    "cudaMalloc", "cudaFree", "cudaMallocHost", "cudaFreeHost", "cudaMemcpy", "cudaMemcpyAsync",
    "cudaStreamCreateWithFlags", "cudaStreamSynchronize", "cudaStreamDestroy", "cudaStreamWaitEvent",
    "cudaEventCreateWithFlags", "cudaEventRecord", "cudaEventQuery", "cudaEventSynchronize", "cudaEventDestroy",
    "cudaStreamBeginCapture", "cudaStreamEndCapture", "cudaStreamIsCapturing", "cudaGraphInstantiate",
    "cudaGraphInstantiateWithFlags", "cudaGraphLaunch", "cudaGraphDestroy", "cudaGraphExecDestroy", "cudaGetLastError",
)
MEMBERS = (
    "cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor", "cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor",
    "cudaMemcpyKind.cudaMemcpyHostToDevice", "cudaMemcpyKind.cudaMemcpyDeviceToHost",
    "cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal", "cudaStreamNonBlocking", "cudaEventDisableTiming",
    "cudaError_t.cudaSuccess", "cudaError_t.cudaErrorNotReady", "cudaError_t.cudaErrorStreamCaptureInvalidated",
)

# Runs inside the interpreter that has one release on its path; prints the record as JSON.
PROBE = r'''
import inspect, json, sys
try:
    from cuda.bindings import runtime as rt
    module = "cuda.bindings.runtime"
except ImportError:
    from cuda import cudart as rt
    module = "cuda.cudart"
functions, members = json.loads(sys.argv[1]), json.loads(sys.argv[2])

def returns(doc):
    lines = (doc or "").splitlines()
    out, inside = [], False
    for i, line in enumerate(lines):
        text = line.strip()
        if text == "Returns" and i + 1 < len(lines) and lines[i + 1].strip().startswith("---"):
            inside, indent = True, len(line) - len(line.lstrip())
            continue
        if not inside or not text or text.startswith("---"):
            continue
        if len(line) - len(line.lstrip()) > indent:
            continue  # a description line
        if text in ("See Also", "Notes", "Examples"):
            break
        out.append(text.split(" : ")[0].strip())
    return out[1:] if out and out[0].startswith("cudaError_t") else out

record = {"module": module, "functions": {}, "members": {}}
for name in functions:
    fn = getattr(rt, name, None)
    if fn is None:
        record["functions"][name] = None
        continue
    params = [p.name for p in inspect.signature(fn).parameters.values()]
    record["functions"][name] = {"params": params, "returns": returns(fn.__doc__),
                                 "doc": (fn.__doc__ or "").strip().splitlines()[0]}
for dotted in members:
    obj = rt
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
    record["members"][dotted] = obj is not None
print(json.dumps(record))
'''


def record(version: str, requirements: tuple[str, ...], work: Path) -> dict:
    wheels, site = work / f"wheels-{version}", work / f"site-{version}"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(wheels),
                    *requirements], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    *map(str, wheels.iterdir())], check=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); " + PROBE,
                          json.dumps(FUNCTIONS), json.dumps(MEMBERS)], env=env, capture_output=True, text=True,
                         check=True).stdout
    wheel_names = sorted(p.name for p in wheels.iterdir())
    return {"wheels": wheel_names, **json.loads(out)}


_EMBEDDED = re.compile(rb"\b(cuda[A-Za-z]+)\(([^()\n\x00]*)\)(?=[\n\x00])")


def embedded_params(text: str) -> list[str]:
    """``"graph, char *pLogBuffer, size_t bufferSize"`` -> ``["graph", "pLogBuffer", "bufferSize"]``."""
    names = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        part = part.split(":")[0].split("=")[0].strip()  # "mode: cudaStreamCaptureMode" -> "mode"
        names.append(re.split(r"[\s*]+", part)[-1])      # "unsigned long long flags" -> "flags"
    return names


def record_foreign(name: str, requirement: str, platform: tuple[str, ...], returns_from: dict, work: Path) -> dict:
    wheels = work / f"wheels-{name}"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", *platform,
                    "-d", str(wheels), requirement], check=True)
    (wheel,) = wheels.iterdir()
    found: dict[str, list[str]] = {}
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.endswith(".so") and ("cudart" in member or "runtime" in member):
                for fn, params in _EMBEDDED.findall(archive.read(member)):
                    found.setdefault(fn.decode(), embedded_params(params.decode()))
    functions = {}
    for fn in FUNCTIONS:
        if fn not in found:
            functions[fn] = None
            continue
        known = returns_from["functions"].get(fn) or {"returns": []}
        functions[fn] = {"params": found[fn], "returns": known["returns"], "doc": f"{fn}(...) (embedded docstring)"}
    return {"wheels": [wheel.name], "module": returns_from["module"], "functions": functions,
            "members": returns_from["members"], "read_from": "embedded docstrings",
            "returns_and_members_from": returns_from["wheels"]}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        releases = {v: record(v, reqs, Path(tmp)) for v, reqs in RELEASES.items()}
        for name, (requirement, platform, like) in FOREIGN.items():
            releases[name] = record_foreign(name, requirement, platform, releases[like], Path(tmp))
    data = {
        "format": "edgeres-cuda-python-signatures/1",
        "made_by": "python tests/tools/cuda_python_signatures.py (pip download of each wheel, imported without a GPU)",
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "date": datetime.date.today().isoformat(),
        "releases": releases,
    }
    OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUT}: {', '.join(releases)}")


if __name__ == "__main__":
    main()
