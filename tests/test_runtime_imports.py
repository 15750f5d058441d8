"""edgeres.runtime stays light: no torch, onnx or click, and no TensorRT/CUDA until an engine needs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("torch", "onnx", "click", "tensorrt", "cuda", "pycuda", "onnxruntime")


def modules_after(code: str) -> set[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, f"subprocess failed: {result.stderr[-2000:]}"
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def heavy(modules: set[str], names: tuple[str, ...] = FORBIDDEN) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in names)


@pytest.mark.parametrize(
    "code",
    [
        "import edgeres.runtime",
        "from edgeres.runtime import Engine, open_engine",
        "import edgeres.runtime.cuda, edgeres.runtime.trt_engine, edgeres.runtime.onnx_engine",
    ],
)
def test_runtime_imports_no_torch_onnx_click_or_gpu_libraries(code):
    loaded = heavy(modules_after(code))
    assert not loaded, f"`{code}` imported {loaded}"


def test_opening_an_onnx_engine_imports_onnxruntime_but_not_torch_or_onnx():
    from tests._runtime_helpers import reference_onnx

    path = reference_onnx()
    code = (
        "import numpy as np\nfrom edgeres.runtime import Engine\n"
        f"e = Engine({str(path)!r})\ne.infer(np.zeros((1, 1, 28, 28), np.float32))\ne.close()"
    )
    loaded = heavy(modules_after(code), ("torch", "onnx", "click", "tensorrt", "pycuda"))
    assert not loaded, f"running an ONNX engine imported {loaded}"
