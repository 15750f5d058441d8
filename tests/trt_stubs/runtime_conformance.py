"""API conformance of edgeres.runtime.trt_engine against the REAL TensorRT Python bindings of one version.

Run by tests/test_runtime_trt_conformance.py in a subprocess set up by
tests/trt_stubs/prepare.py (real bindings over stand-in libraries, no GPU).
What this proves: every TensorRT name the runtime uses exists in this version;
the logger subclasses the real ILogger; opening a plan runs the real
``trt.Runtime(logger)`` and fails there with a clear error (the stand-in
libraries return no runtime); a mismatched plan is refused before TensorRT is
touched; and, with checked stand-ins of ICudaEngine/IExecutionContext, every
call infer/infer_async/CUDA graphs/close make fits a real signature of this
version. Not proven: that a real engine runs (needs a GPU).
"""

from __future__ import annotations

import hashlib
import os
import warnings

import numpy as np
import pytest
import tensorrt as trt

import checked
from checked import Checked, checked_factory
from edgeres._tensorrt import NUMPY_DTYPE_NAMES
from edgeres.runtime import Engine, EngineUnavailableError, PlanMismatchError, SidecarMissingWarning
from edgeres.runtime import trt_engine as te
from edgeres.sidecar import PlanSidecar, TensorSpec, write_sidecar
from edgeres.tensorrt_version import parse_version
from tests._trt_standin import StandinCuda

EXPECTED = os.environ["EDGERES_TRT_EXPECTED_VERSION"]
REAL_RUNTIME = trt.Runtime
_ACCEPTS = checked.accepts


def _accepts(trt_module, typ, value):
    # TensorRT >= 10 overloads set_input_shape(name, shape: tuple | list | Dims); plain containers as pybind11 does
    plain = {"tuple": tuple, "list": list}.get(checked._strip(typ))
    return isinstance(value, plain) if plain else _ACCEPTS(trt_module, typ, value)


checked.accepts = _accepts
CC = (8, 7)


def write_plan(folder, version: str = trt.__version__):
    path = folder / "model.plan"
    path.write_bytes(b"serialized engine bytes")
    write_sidecar(path, PlanSidecar(
        tensorrt_version=version, compute_capability=CC, device_name="stand-in", precision="fp16",
        inputs=(TensorSpec("input", (-1, 1, 28, 28), "float32"),), outputs=(TensorSpec("logits", (-1, 10), "float32"),),
        min_batch=1, opt_batch=4, max_batch=8, plan_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        onnx_sha256="0" * 64, edgeres_version="0.1.0"))
    return path


def test_bindings_are_the_expected_version():
    assert parse_version(trt.__version__) == parse_version(EXPECTED), f"{trt.__version__} != {EXPECTED}"
    assert te.import_tensorrt() is trt, "import_tensorrt must accept this version"


def test_every_name_the_runtime_uses_exists():
    missing = [f"{owner}.{name}" for owner, names in te.TRT_API_USED.items()
               for name in names if not hasattr(trt if owner == "tensorrt" else getattr(trt, owner), name)]
    assert not missing, f"TensorRT {trt.__version__} lacks {missing}"
    assert hasattr(trt.TensorIOMode, "INPUT") and hasattr(trt.TensorIOMode, "OUTPUT"), "TensorIOMode members"


def test_datatype_names_map_to_numpy():
    present = {name for name in NUMPY_DTYPE_NAMES if hasattr(trt.DataType, name)}
    assert {"FLOAT", "HALF", "INT8", "INT32", "BOOL"} <= present, f"core types missing: {present}"
    for name in present:
        got = te.numpy_dtype(getattr(trt.DataType, name))
        assert got == np.dtype(NUMPY_DTYPE_NAMES[name]), f"DataType.{name} -> {got}"


def test_logger_is_a_real_ilogger_and_keeps_warnings_and_errors():
    log = te.logger_for(trt)
    assert isinstance(log, trt.ILogger), "logger must subclass the real trt.ILogger"
    log.log(trt.ILogger.Severity.ERROR, "boom")
    log.log(trt.ILogger.Severity.INFO, "chatter")
    assert log.recent() == ["ERROR: boom"], log.messages


def test_opening_a_plan_reaches_real_trt_runtime_then_fails_clearly(tmp_path):
    path = write_plan(tmp_path)
    with pytest.raises(EngineUnavailableError, match=f"TensorRT {trt.__version__} could not create a runtime"):
        Engine(path, _cuda=StandinCuda(CC))


def test_mismatched_plan_is_refused_before_tensorrt_runtime(tmp_path, monkeypatch):
    path = write_plan(tmp_path, version="7.2.3")
    monkeypatch.setattr(trt, "Runtime", lambda *a: pytest.fail("trt.Runtime must not be reached"))
    with pytest.raises(PlanMismatchError, match=rf"TensorRT 7\.2\.3 \(this machine: TensorRT {trt.__version__}\)"):
        Engine(path, _cuda=StandinCuda(CC))


def test_plan_from_another_build_of_this_release_is_refused_or_flagged(tmp_path, monkeypatch):
    from edgeres.runtime import PlanVersionWarning

    here = parse_version(trt.__version__)
    path = write_plan(tmp_path, version=f"{here.major}.{here.minor}.{here.patch}.99999")
    monkeypatch.setattr(trt, "Runtime", lambda *a: pytest.fail("trt.Runtime must not be reached"))
    if here.build is None:  # the pip wheels report three parts: the build cannot be compared, so a warning
        with pytest.warns(PlanVersionWarning, match="build numbers cannot be compared"), pytest.raises(pytest.fail.Exception):
            Engine(path, _cuda=StandinCuda(CC))
    else:
        with pytest.raises(PlanMismatchError, match=rf"\.99999 \(this machine: TensorRT {trt.__version__}\)"):
            Engine(path, _cuda=StandinCuda(CC))


def checked_engine(calls: list):
    shapes: dict[str, tuple[int, ...]] = {}
    context = Checked(trt, trt.IExecutionContext, {
        "set_input_shape": lambda name, shape: shapes.__setitem__(name, tuple(shape)) or True,
        "get_tensor_shape": lambda name: trt.Dims(shapes["input"] if name == "input" else (shapes["input"][0], 10)),
        "set_tensor_address": True,
        "execute_async_v3": True,
        "set_optimization_profile_async": True,
    }, calls)
    dims = {"input": (-1, 1, 28, 28), "logits": (-1, 10)}
    return Checked(trt, trt.ICudaEngine, {
        "num_io_tensors": 2,
        "get_tensor_name": lambda i: list(dims)[i],
        "get_tensor_mode": lambda n: trt.TensorIOMode.INPUT if n == "input" else trt.TensorIOMode.OUTPUT,
        "get_tensor_dtype": lambda n: trt.DataType.FLOAT,
        "get_tensor_shape": lambda n: trt.Dims(dims[n]),
        "get_tensor_profile_shape": lambda n, p: [trt.Dims((b, 1, 28, 28)) for b in (1, 4, 8)],
        "create_execution_context": lambda *a: context,
        "num_optimization_profiles": 1,
    }, calls)


def test_every_engine_call_fits_a_real_signature(tmp_path, monkeypatch):
    calls: list = []
    engine = checked_engine(calls)
    runtime = checked_factory(trt, REAL_RUNTIME, lambda logger: Checked(
        trt, REAL_RUNTIME, {"deserialize_cuda_engine": lambda plan: engine}, calls))
    monkeypatch.setattr(trt, "Runtime", runtime)
    cuda = StandinCuda(CC)
    with Engine(write_plan(tmp_path), _cuda=cuda, cuda_graph=True) as e:
        assert (e.min_batch, e.opt_batch, e.max_batch) == (1, 4, 8), "profile read through the real signature"
        x = np.zeros((3, 1, 28, 28), np.float32)
        assert e.infer(x).shape == (3, 10), "output shape from get_tensor_shape"
        e.infer(x)  # graph replay
        assert e.infer_async(np.zeros((8, 1, 28, 28), np.float32), stream=cuda.stream_create()).result().shape == (8, 10)
        e.warmup(2)
    names = {name for name, _ in calls}
    expected = {"deserialize_cuda_engine", "get:num_io_tensors", "get_tensor_name", "get_tensor_mode",
                "get_tensor_dtype", "get_tensor_shape", "get_tensor_profile_shape", "create_execution_context",
                "set_input_shape", "set_tensor_address", "execute_async_v3", "get:num_optimization_profiles"}
    from edgeres.tensorrt_version import context_rule

    if context_rule(trt.__version__).sharing != "always":  # 8.6 without a sharing sidecar: context 0 selects profile 0
        expected.add("set_optimization_profile_async")
    else:
        assert "set_optimization_profile_async" not in names, "from 9.0 every context already has profile 0"
    assert expected <= names, f"not exercised: {expected - names}"


def test_plan_without_sidecar_warns_then_reaches_real_runtime(tmp_path):
    path = write_plan(tmp_path)
    path.with_name("model.plan.json").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(EngineUnavailableError):
            Engine(path, _cuda=StandinCuda(CC))
    assert any(issubclass(w.category, SidecarMissingWarning) for w in caught), "missing sidecar must warn"
