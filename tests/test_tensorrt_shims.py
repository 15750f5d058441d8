"""edgeres._tensorrt (the import guard, logger and dtype table shared by runtime and builder) and the
error types each side raises: runtime errors are EngineErrors, builder errors BuildErrors."""

from __future__ import annotations

import sys
import types
import warnings

import click
import pytest

from edgeres import _tensorrt
from edgeres.errors import BuildError, EngineError, TensorRTUnavailableError
from edgeres.runtime import EngineUnavailableError
from edgeres.runtime import _errors as runtime_errors
from edgeres.runtime import trt_engine
from edgeres.trt import guard
from tests._trt_standin import StandinCuda, standin_tensorrt


def fake_tensorrt(monkeypatch, version: str) -> types.ModuleType:
    module = standin_tensorrt(StandinCuda(), version=version)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module


@pytest.mark.parametrize("guarded, error", [(trt_engine.import_tensorrt, EngineUnavailableError),
                                            (guard.require_tensorrt, TensorRTUnavailableError)])
def test_each_side_raises_its_own_type_when_tensorrt_is_missing(monkeypatch, guarded, error):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as if not installed
    with pytest.raises(error, match="TensorRT is not importable") as info:
        guarded()
    side = EngineError if error is EngineUnavailableError else BuildError
    other = BuildError if side is EngineError else EngineError
    assert isinstance(info.value, side) and not isinstance(info.value, other), (
        f"{guarded.__module__} must raise a {side.__name__} only, raised {type(info.value).__mro__}"
    )


@pytest.mark.parametrize("version, ok", [("8.2.1", False), ("8.4.3.1", False), ("8.5.2.2", True), ("10.3.0.30", True),
                                         ("11.4.0.106", True), ("junk", False)])
def test_guard_minimum_is_the_adapter_minimum(monkeypatch, version, ok):
    module = fake_tensorrt(monkeypatch, version)
    for guarded, error in ((trt_engine.import_tensorrt, EngineUnavailableError), (guard.require_tensorrt, TensorRTUnavailableError)):
        if ok:
            assert guarded() is module, f"{version} must be accepted by {guarded.__module__}"
        else:
            with pytest.raises(error, match=r"8\.5|must look like"):
                guarded()


def test_logger_keeps_warnings_and_errors_with_recent_lines():
    trt = standin_tensorrt(StandinCuda())
    log = _tensorrt.collecting_logger(trt)
    assert isinstance(log, trt.ILogger), "the logger must subclass trt.ILogger"
    log.log(trt.ILogger.Severity(1), "boom")
    log.log(trt.ILogger.Severity(2), "careful")
    log.log(trt.ILogger.Severity(3), "chatter")
    assert log.errors() == ["boom"], f"errors(): {log.errors()}"
    assert log.recent(3) == ["ERROR: boom", "WARNING: careful"], f"recent(): {log.recent(3)}"
    assert type(trt_engine.logger_for(trt)) is type(guard.logger(trt)), "runtime and builder share one logger class"


def test_one_dtype_table_for_runtime_and_sidecars():
    assert set(_tensorrt.NUMPY_DTYPE_NAMES) < set(_tensorrt.DTYPE_NAMES), "numpy subset of the one table"
    assert {"BF16", "FP8", "INT4"} == set(_tensorrt.DTYPE_NAMES) - set(_tensorrt.NUMPY_DTYPE_NAMES), "no numpy type"
    assert str(trt_engine.numpy_dtype("DataType.HALF")) == "float16", "runtime reads the shared table"
    with pytest.raises(EngineError, match="no numpy equivalent"):
        trt_engine.numpy_dtype("DataType.BF16")


def test_every_runtime_error_is_an_engine_error():
    classes = [getattr(runtime_errors, n) for n in runtime_errors.__all__]
    errors = [c for c in classes if isinstance(c, type) and issubclass(c, Exception) and not issubclass(c, Warning)]
    assert errors and all(issubclass(c, EngineError) for c in errors), f"not EngineErrors: {errors}"
    assert not any(issubclass(c, BuildError) for c in errors), "runtime errors must not be BuildErrors"


def test_deprecated_runtime_alias_warns_and_catches_runtime_errors():
    import edgeres.runtime as runtime

    with pytest.warns(DeprecationWarning, match="use edgeres.runtime.EngineUnavailableError"):
        alias = runtime.TensorRTUnavailableError
    assert alias is EngineUnavailableError, "the old runtime name catches what the runtime raises now"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError):
            runtime.NoSuchName  # noqa: B018


def test_builder_maps_the_runtime_cuda_error(monkeypatch):
    from edgeres.runtime import cuda
    from edgeres.trt import calibrator

    def no_binding(*_a, **_k):
        raise cuda.CudaUnavailableError("no CUDA binding is usable: cuda-python: missing")

    monkeypatch.setattr(cuda, "cuda_api", no_binding)
    with pytest.raises(TensorRTUnavailableError, match="INT8 calibration needs GPU memory: no CUDA binding") as info:
        calibrator.default_allocator()
    assert isinstance(info.value.__cause__, EngineUnavailableError), "the runtime's error is kept as the cause"


@click.command("raise-engine-unavailable")
def raise_engine_unavailable() -> None:
    raise EngineUnavailableError("no TensorRT here")


@click.command("raise-builder-unavailable")
def raise_builder_unavailable() -> None:
    raise TensorRTUnavailableError("no TensorRT here")


@pytest.mark.parametrize("command", ["raise-engine-unavailable", "raise-builder-unavailable"])
def test_cli_maps_both_unavailable_errors_to_exit_2(monkeypatch, command):
    from click.testing import CliRunner

    import edgeres.cli as cli_mod

    monkeypatch.setitem(cli_mod.COMMANDS, command, (__name__, command.replace("-", "_"), "test command"))
    result = CliRunner().invoke(cli_mod.cli, [command])
    assert result.exit_code == 2 and "error: no TensorRT here" in result.output, (
        f"{command}: exit {result.exit_code}, output {result.output!r}"
    )
    assert "Traceback" not in result.output, "one line, never a traceback"
