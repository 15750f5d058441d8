"""Backends: selection from the file, missing packages, onnxruntime and torch on CPU, TensorRT through a fake Engine.

The CUDA paths (torch events, pinned memory, CUDA graphs; onnxruntime CUDA/TensorRT
EPs; a real TensorRT plan) are not verified: this machine has no GPU.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from tests.bench_fixtures import linear_onnx
from edgeres.bench.backends import BackendOptions, backend_for, check_installed, create_backend
from edgeres.bench.resolve import SideSpec, default_reference, find_fp32_onnx, onnx_precision
from edgeres.errors import BenchError

NO_CUDA = "CUDA path not verified on a GPU: no CUDA device on this machine"


def _batches(n: int = 3, batch: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=(batch, 1, 28, 28)).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("name, backend", [("m.onnx", "onnxruntime"), ("m.plan", "tensorrt"), ("m.engine", "tensorrt"),
                                           ("m.pth", "torch"), ("m.safetensors", "torch"), ("resnet18", "torch")])
def test_backend_for(name: str, backend: str) -> None:
    assert backend_for(name) == backend, f"{name} runs on {backend}"


def test_backend_for_unknown(tmp_path: Path) -> None:
    weird = tmp_path / "model.xyz"
    weird.write_bytes(b"x")
    with pytest.raises(BenchError, match=r"unknown model file type '\.xyz'"):
        backend_for(weird)
    with pytest.raises(BenchError, match="neither an existing model file"):
        backend_for("resnet9000")


def test_missing_package_named(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorrt" else real(name, *a))
    with pytest.raises(BenchError, match=r"needs the tensorrt package, which is not installed; pip install 'edgeres\[tensorrt\]'"):
        check_installed("tensorrt")


def test_onnxruntime_backend_runs(tmp_path: Path) -> None:
    path = linear_onnx(tmp_path / "m.onnx")
    backend = create_backend(path)
    assert backend.input_shape() == (1, 28, 28) and backend.batch_range() is None, "shape from the graph, dynamic batch"
    backend.load()
    batches = _batches()
    backend.prepare(batches)
    backend.run(1)
    assert backend.synchronize() is None, "CPU backend reports no device phases"
    out = backend.output()
    expected = batches[1].reshape(2, -1) @ np.random.default_rng(0).normal(0, 0.05, size=(784, 10)).astype(np.float32)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4, err_msg="output of the slot that ran")
    settings = backend.settings()
    assert settings["execution_providers"] == ["CPUExecutionProvider"] and settings["device"] == "cpu", f"settings: {settings}"
    backend.close()


def test_onnxruntime_fp16_and_static_batch(tmp_path: Path) -> None:
    backend = create_backend(linear_onnx(tmp_path / "h.onnx", fp16=True, batch=2))
    assert backend.batch_range() == (2, 2), "a static batch of 2 accepts only 2"
    backend.load()
    backend.prepare(_batches())
    backend.run(0)
    assert backend.output().dtype == np.float32 and backend.settings()["input_dtype"] == "float16", "fp16 in, float32 out"


def test_onnxruntime_missing_provider(tmp_path: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA EP installed here; the missing-provider message cannot be provoked")
    backend = create_backend(linear_onnx(tmp_path / "m.onnx"), options=BackendOptions(provider="cuda"))
    with pytest.raises(BenchError, match="no CUDAExecutionProvider.*pip install onnxruntime-gpu"):
        backend.load()


def test_onnxruntime_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(BenchError, match="not a readable ONNX model"):
        create_backend(bad)


def test_torch_cpu_backend_matches_onnx() -> None:
    backend = create_backend("resnet20", options=BackendOptions(threads=1))
    backend.load()
    assert backend.input_shape() == (3, 32, 32), "resnet20 recipe: CIFAR 3x32x32"
    rng = np.random.default_rng(0)
    backend.prepare([rng.normal(size=(2, 3, 32, 32)).astype(np.float32)])
    backend.run(0)
    assert backend.synchronize() is None and backend.output().shape == (2, 10), "CPU: no phases, (2, 10) logits"
    assert backend.settings()["bn_folded"] and backend.settings()["precision"] == "fp32", "the reference is folded FP32"


def test_torch_option_checks() -> None:
    with pytest.raises(BenchError, match="fp16 needs --device cuda"):
        create_backend("resnet20", options=BackendOptions(precision="fp16"))
    with pytest.raises(BenchError, match="CUDA graphs need --device cuda"):
        create_backend("resnet20", options=BackendOptions(cuda_graphs=True))


def test_torch_cuda_unavailable() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present; this checks the CPU-only message")
    backend = create_backend("resnet20", options=BackendOptions(device="cuda"))
    with pytest.raises(BenchError, match="needs a CUDA GPU"):
        backend.load()


@pytest.mark.parametrize("graphs, sync, pinned", [(False, "blocking", True), (True, "spin", True), (False, "blocking", False)])
def test_torch_cuda_phases(graphs: bool, sync: str, pinned: bool) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip(NO_CUDA)
    backend = create_backend("resnet20", options=BackendOptions(device="cuda", cuda_graphs=graphs, sync=sync, pinned=pinned))
    backend.load()
    backend.prepare([np.ones((4, 3, 32, 32), np.float32), np.full((4, 3, 32, 32), 0.5, np.float32)])
    backend.run(1)
    phases = backend.synchronize()
    assert phases and phases.compute_ms > 0 and phases.h2d_ms >= 0 and phases.d2h_ms >= 0, f"device phases: {phases}"
    assert backend.output().shape == (4, 10), "logits copied back"


class _FakeEngine:
    instances: list["_FakeEngine"] = []

    def __init__(self, path: str, cuda_graph: bool = False) -> None:
        self.min_batch, self.max_batch = 1, 4
        self.inputs = (types.SimpleNamespace(dtype=np.dtype(np.float32)),)
        self.cuda_graph = cuda_graph
        self.calls = 0
        self.closed = False
        _FakeEngine.instances.append(self)

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        return x.reshape(len(x), -1)[:, :10] * 2

    def close(self) -> None:
        self.closed = True


def _fake_plan(tmp_path: Path, min_batch: int = 1, max_batch: int = 4) -> Path:
    from edgeres.sidecar import PlanSidecar, TensorSpec, write_sidecar

    plan = tmp_path / "model.plan"
    plan.write_bytes(b"fake plan")
    write_sidecar(plan, PlanSidecar(
        tensorrt_version="10.3.0", compute_capability=(8, 7), device_name="Orin", precision="int8",
        inputs=(TensorSpec("input", (-1, 1, 28, 28), "float32"),), outputs=(TensorSpec("logits", (-1, 10), "float32"),),
        min_batch=min_batch, opt_batch=max_batch, max_batch=max_batch, plan_sha256="0" * 64, onnx_sha256="0" * 64, edgeres_version="0.1.0",
    ))
    return plan


def test_tensorrt_backend_with_fake_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeres.bench.backends.tensorrt import TensorRTBackend

    monkeypatch.setitem(sys.modules, "edgeres.runtime", types.SimpleNamespace(Engine=_FakeEngine))
    backend = TensorRTBackend(_fake_plan(tmp_path), BackendOptions(cuda_graphs=True))
    assert backend.batch_range() == (1, 4) and backend.input_shape() == (1, 28, 28), "profile and shape from the sidecar"
    backend.load()
    engine = _FakeEngine.instances[-1]
    assert engine.cuda_graph, "--cuda-graphs reaches the runtime"
    backend.prepare(_batches(batch=2))
    backend.run(0)
    assert backend.synchronize() is None and backend.output().shape == (2, 10), "host output through Engine.infer"
    with pytest.raises(BenchError, match=r"outside the engine's profile \[1, 4\]"):
        backend.prepare(_batches(batch=8))
    settings = backend.settings()
    assert settings["transfers_included"] and settings["precision"] == "int8", f"settings: {settings}"
    backend.close()
    assert engine.closed, "close releases the engine"


def test_onnx_precision_and_fp32_sibling(tmp_path: Path) -> None:
    fp32 = linear_onnx(tmp_path / "model.onnx")
    qdq = linear_onnx(tmp_path / "model.qdq.onnx", qdq=True)
    half = linear_onnx(tmp_path / "model_fp16.onnx", fp16=True)
    assert [onnx_precision(p) for p in (fp32, qdq, half)] == ["fp32", "int8-qdq", "fp16"], "precision from the graph"
    assert find_fp32_onnx(qdq) == fp32 and find_fp32_onnx(half) == fp32, "FP32 sibling by stripped name"
    ref = default_reference(SideSpec(str(qdq), "onnxruntime", BackendOptions(threads=2)))
    assert ref == SideSpec(str(fp32), "onnxruntime", BackendOptions(threads=2)), f"same provider and threads: {ref}"
    assert default_reference(SideSpec(str(fp32), "onnxruntime")) is None, "an FP32 candidate has no separate reference"


def test_default_reference_missing(tmp_path: Path) -> None:
    qdq = linear_onnx(tmp_path / "lonely.qdq.onnx", qdq=True)
    with pytest.raises(BenchError, match="no FP32 reference found.*--reference"):
        default_reference(SideSpec(str(qdq), "onnxruntime"))


def test_default_reference_torch_and_plan(tmp_path: Path) -> None:
    fp16 = SideSpec("resnet18", "torch", BackendOptions(device="cuda", precision="fp16", channels_last=True, cuda_graphs=True))
    ref = default_reference(fp16)
    assert ref is not None and ref.options.precision == "fp32" and not ref.options.channels_last, "FP32 eager reference"
    assert ref.options.cuda_graphs and ref.options.device == "cuda", "same harness settings as the candidate"
    assert default_reference(SideSpec("resnet18", "torch")) is None, "FP32 eager torch is the reference itself"
    fp32 = linear_onnx(tmp_path / "model.onnx")
    plan_ref = default_reference(SideSpec(str(_fake_plan(tmp_path)), "tensorrt"))
    assert plan_ref is not None and plan_ref.model == str(fp32) and plan_ref.backend == "onnxruntime", f"plan -> FP32 ONNX: {plan_ref}"
    assert json.loads((tmp_path / "model.plan.json").read_text())["max_batch"] == 4, "fixture sidecar written"


def _standin_plan(tmp_path: Path, cc: tuple[int, int] = (8, 7)) -> Path:
    """A stand-in plan (runtime tests' format: magic + ONNX bytes) of the reference model, with its sidecar."""
    import hashlib

    from edgeres.sidecar import PlanSidecar, TensorSpec, write_sidecar
    from tests._runtime_helpers import reference_onnx
    from tests._trt_standin import PLAN_MAGIC

    plan = tmp_path / "model.plan"
    plan.write_bytes(PLAN_MAGIC + reference_onnx().read_bytes())
    write_sidecar(plan, PlanSidecar(
        tensorrt_version="10.3.0", compute_capability=cc, device_name="Jetson AGX Orin", precision="fp16",
        inputs=(TensorSpec("input", (-1, 1, 28, 28), "float32"),), outputs=(TensorSpec("logits", (-1, 10), "float32"),),
        min_batch=1, opt_batch=4, max_batch=8, plan_sha256=hashlib.sha256(plan.read_bytes()).hexdigest(),
        onnx_sha256="0" * 64, edgeres_version="0.1.0",
    ))
    return plan


def _standin_runtime(monkeypatch: pytest.MonkeyPatch, device_cc: tuple[int, int]) -> None:
    """Route the tensorrt backend's ``Engine(path)`` to the real TrtEngine over the runtime tests' stand-ins."""
    import edgeres.runtime as runtime
    from tests._trt_standin import StandinCuda, standin_tensorrt

    real_engine = runtime.Engine
    cuda = StandinCuda(compute_capability=device_cc)

    def engine(path, **kwargs):
        return real_engine(path, _trt=standin_tensorrt(cuda, max_batch=8), _cuda=cuda, **kwargs)

    monkeypatch.setattr(runtime, "Engine", engine)


def test_tensorrt_backend_through_real_runtime_standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Backend + real TrtEngine logic over stand-in TensorRT/CUDA (NOT TensorRT, NOT a GPU) against onnxruntime."""
    from edgeres.bench.backends.tensorrt import TensorRTBackend
    from edgeres.bench.inputs import InputSource
    from edgeres.bench.runner import run_benchmark
    from edgeres.bench.timing import TimingConfig
    from tests._runtime_helpers import reference_onnx

    _standin_runtime(monkeypatch, (8, 7))
    plan = _standin_plan(tmp_path)
    result = run_benchmark(
        TensorRTBackend(plan, BackendOptions(cuda_graphs=True)), create_backend(reference_onnx()),
        batch_sizes=[1, 8], config=TimingConfig(warmup_ms=0, min_warmup_iters=1, duration_s=0.05, min_iters=3, rounds=2),
        inputs=InputSource(), sysfs_root=str(tmp_path),
    )
    for r in result.results:
        assert r.agreement["top1_agreement"] == 1.0 and r.agreement["max_abs"] < 1e-4, f"batch {r.batch_size}: {r.agreement}"
    assert result.candidate["profile_batch"] == [1, 4, 8] and result.candidate["cuda_graphs"], f"settings: {result.candidate}"


def test_tensorrt_plan_for_another_gpu_standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeres.bench.backends.tensorrt import TensorRTBackend
    from edgeres.errors import EdgeresError

    _standin_runtime(monkeypatch, (8, 6))
    backend = TensorRTBackend(_standin_plan(tmp_path, cc=(8, 7)), BackendOptions())
    with pytest.raises(EdgeresError, match=r"8\.7|8\.6"):
        backend.load()


def test_backends_satisfy_protocol(tmp_path: Path) -> None:
    from edgeres.bench.backends import Backend
    from edgeres.bench.backends.tensorrt import TensorRTBackend

    backends = [create_backend(linear_onnx(tmp_path / "m.onnx")), create_backend("resnet20"),
                TensorRTBackend(_fake_plan(tmp_path), BackendOptions())]
    for backend in backends:
        assert isinstance(backend, Backend), f"{type(backend).__name__} implements load/prepare/run/synchronize"
