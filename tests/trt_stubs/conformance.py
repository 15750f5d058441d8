"""API conformance of edgeres.trt against the REAL TensorRT Python bindings of one version.

Run by tests/test_trt_conformance.py in a subprocess whose PYTHONPATH and
LD_LIBRARY_PATH point at one version's bindings over stand-in libraries
(tests/trt_stubs/prepare.py). Not a TensorRT build: the stand-ins return no
builder, so objects that need a GPU are ``checked.Checked`` stand-ins whose
every call is validated against the real class's signatures. What this
proves: the classes, enums, flags, properties and signatures edgeres uses exist
in this version with the arguments edgeres passes, the calibrator and progress
monitor subclass the real base classes and work when driven, and everything up
to ``trt.Builder(logger)`` runs for real.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import tensorrt as trt
from rich.console import Console

from checked import Checked, checked_factory
from edgeres.errors import BuildError, CalibrationError, TensorRTUnavailableError
from edgeres.runtime import cuda
from edgeres.trt import loaders
from edgeres.trt.caps import capabilities
from edgeres.trt.settings import EngineSettings
from onnx_models import write_model

EXPECTED = os.environ["EDGERES_TRT_EXPECTED_VERSION"]
MAJOR = int(EXPECTED.split(".")[0])
CAPS = capabilities(trt)
REAL_BUILDER, REAL_PARSER = trt.Builder, trt.OnnxParser  # tests monkeypatch the module attributes

# What each major version must (True) or must not (False) have; from NVIDIA's release notes.
EXPECTED_CAPS = {
    8: dict(fp16_flag=True, int8_flag=True, implicit_int8_calibrator=True, int8_calibrator_config=True,
            progress_monitor=False, progress_monitor_class=False, memory_pool_limit=True, max_workspace_size=True,
            explicit_batch_required=True, strongly_typed_flag=False, build_engine=True, execute_async_v2=True,
            execute_async_v3=True, parser_node_name=False, precision_flags=True, always_strongly_typed=False,
            profile_sharing_preview=True),
    10: dict(fp16_flag=True, int8_flag=True, implicit_int8_calibrator=True, int8_calibrator_config=True,
             progress_monitor=True, progress_monitor_class=True, memory_pool_limit=True, max_workspace_size=False,
             explicit_batch_required=False, strongly_typed_flag=True, build_engine=False, execute_async_v2=False,
             execute_async_v3=True, parser_node_name=True, precision_flags=True, always_strongly_typed=False,
             profile_sharing_preview=True),
    11: dict(fp16_flag=False, int8_flag=False, implicit_int8_calibrator=False, int8_calibrator_config=False,
             progress_monitor=True, progress_monitor_class=True, memory_pool_limit=True, max_workspace_size=False,
             explicit_batch_required=False, build_engine=False, execute_async_v2=False, execute_async_v3=True,
             parser_node_name=True, precision_flags=False, always_strongly_typed=True, gpu_fallback_flag=True,
             profile_sharing_preview=False),
}

needs_calibrator = pytest.mark.skipif(not CAPS.implicit_int8_calibrator, reason=f"TensorRT {EXPECTED} has no implicit INT8 calibrator")
needs_progress = pytest.mark.skipif(not CAPS.progress_monitor, reason=f"TensorRT {EXPECTED} has no progress_monitor")


@pytest.fixture(autouse=True)
def _no_gpu_queries(monkeypatch):
    # no GPU here; no CUDA binding either, whichever are installed, so the run does not depend on them
    monkeypatch.setattr(cuda, "BINDINGS", {})


class FakeAllocator:
    """Host memory standing in for device memory: records what TensorRT would have seen at each pointer."""

    def __init__(self):
        self.memory: dict[int, np.ndarray] = {}
        self.freed: list[int] = []
        self._next = 0x10000

    def alloc(self, nbytes):
        ptr, self._next = self._next, self._next + nbytes + 256
        self.memory[ptr] = np.zeros(nbytes, np.uint8)
        return ptr

    def copy_htod(self, ptr, host):
        self.memory[ptr][:] = np.frombuffer(host.tobytes(), np.uint8)

    def free(self, ptr):
        self.freed.append(ptr)


class Rtx3090(cuda.CudaApi):
    """A CUDA binding that sees one RTX 3090 (device queries only)."""

    def __init__(self, device):
        self.device = device

    def device_name(self):
        return "NVIDIA GeForce RTX 3090"

    def compute_capability(self):
        return (8, 6)


class Batches:
    """A dataset as edgeres' data stage provides it: ``batches(batch_size)`` of float32 NCHW."""

    def __init__(self, n_images, chw=(3, 8, 8), dtype=np.float32):
        self.images = np.random.default_rng(1).standard_normal((n_images, *chw)).astype(dtype)

    def batches(self, batch_size):
        for i in range(0, len(self.images), batch_size):
            yield self.images[i : i + batch_size]


def settings_for(tmp_path, kind="fp32", **kw):
    onnx_path = write_model(tmp_path / f"{kind}.onnx", kind)
    base = dict(onnx_path=onnx_path, plan_path=tmp_path / "model.plan", precision="fp32", input_shape=(3, 8, 8),
                min_batch=1, opt_batch=4, max_batch=8)
    return EngineSettings(**{**base, **kw})


def test_real_bindings_are_imported():
    assert trt.__version__ == EXPECTED, f"imported TensorRT {trt.__version__}, expected {EXPECTED}"
    assert type(trt.Builder).__name__ == "pybind11_type", f"trt.Builder is {type(trt.Builder)}, expected the real pybind11 class"
    assert loaders.require_tensorrt() is trt, "require_tensorrt() must return the imported tensorrt module"
    assert loaders.tensorrt_version() == EXPECTED, "tensorrt_version() must report the bindings' version"


def test_capability_table_matches_release():
    want = EXPECTED_CAPS[MAJOR]
    have = {k: getattr(CAPS, k) for k in want}
    assert have == want, f"capabilities of TensorRT {EXPECTED} differ from expectations: {have} != {want}"


def test_builder_creation_fails_with_clear_error():
    log = loaders.logger(trt)
    assert isinstance(log, trt.ILogger), "the collecting logger must subclass the real trt.ILogger"
    trt.ILogger.log(log, trt.ILogger.Severity.ERROR, "boom")  # through the real binding, as TensorRT logs
    trt.ILogger.log(log, trt.ILogger.Severity.INFO, "chatter")
    assert log.errors() == ["boom"], f"logger kept {log.messages}, expected only the error"
    with pytest.raises(TensorRTUnavailableError, match="could not create a builder"):
        loaders.builder_from_logger(trt, log)


def test_build_engine_stops_at_builder_and_writes_nothing(tmp_path):
    settings = settings_for(tmp_path, precision="fp16" if CAPS.precision_flags else "fp32", timing_cache=tmp_path / "t.cache")
    with pytest.raises(TensorRTUnavailableError, match="no usable NVIDIA GPU"):
        loaders.build_engine(settings)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["fp32.onnx"], f"a failed build must leave no plan, sidecar or temporary file, found {left}"


def test_strongly_typed_precision_rules(tmp_path):
    fp32 = settings_for(tmp_path, precision="fp16")
    if CAPS.always_strongly_typed:
        with pytest.raises(BuildError, match="strongly typed.*needs an ONNX with float16"):
            loaders.build_engine(fp32)
        with pytest.raises(BuildError, match="removed implicit INT8 calibration"):
            loaders.build_engine(settings_for(tmp_path, precision="int8", int8_mode="calibrator", calib_dataset=Batches(8)))
        qdq_fp32 = write_model(tmp_path / "qdq32.onnx", "fp32")
        with pytest.raises(BuildError, match="needs a Q/DQ ONNX"):
            loaders.build_engine(settings_for(tmp_path, precision="int8", onnx_path=qdq_fp32))
    # accepted combinations reach the builder (and stop there, without a GPU)
    ok = [settings_for(tmp_path, "fp16", precision="fp16"), settings_for(tmp_path, "qdq", precision="int8")]
    if not CAPS.always_strongly_typed:
        ok.append(fp32)
    for s in ok:
        with pytest.raises(TensorRTUnavailableError, match="could not create a builder"):
            loaders.build_engine(s)


# --- calibrator and progress monitor: real base classes, driven as TensorRT drives them -----------


@needs_calibrator
def test_calibrator_driven_like_tensorrt(tmp_path):
    alloc, data = FakeAllocator(), Batches(20)  # 2 full batches of 8 and a partial one of 4
    cache = tmp_path / "calib.cache"
    cal = loaders.Int8EntropyCalibrator(data, cache, batch_size=8, input_shape=(3, 8, 8), allocator=alloc)
    assert isinstance(cal, trt.IInt8EntropyCalibrator2), "calibrator must subclass the real IInt8EntropyCalibrator2"
    assert trt.IInt8EntropyCalibrator2.get_batch_size(cal) == 8, "TensorRT's trampoline must reach get_batch_size"
    assert cal.read_calibration_cache() is None, "no cache file yet: TensorRT must calibrate"
    fed = []
    while (ptrs := cal.get_batch(["input"])) is not None:
        assert len(ptrs) == 1 and isinstance(ptrs[0], int), f"get_batch must return one int device pointer, got {ptrs}"
        fed.append(alloc.memory[ptrs[0]].view(np.float32).reshape(8, 3, 8, 8).copy())
    assert cal.error is None, f"calibrator recorded an error: {cal.error}"
    assert len(fed) == 2 and cal.batches_skipped == 1, f"expected 2 full batches fed and 1 partial skipped, got {len(fed)}/{cal.batches_skipped}"
    np.testing.assert_array_equal(np.concatenate(fed), data.images[:16], err_msg="device memory must hold the dataset's images in order")
    assert alloc.freed, "device buffers must be freed after the last batch"
    payload = b"TRT-8601-EntropyCalibration2\ninput: 3c010a14\n"
    cal.write_calibration_cache(memoryview(payload))  # TensorRT hands over a buffer, not bytes
    assert cache.read_bytes() == payload, "write_calibration_cache must store TensorRT's bytes unchanged"
    again = loaders.Int8EntropyCalibrator(None, cache, batch_size=8, input_shape=(3, 8, 8))
    assert again.read_calibration_cache() == payload, "a second build must read the cache instead of calibrating"


@needs_calibrator
def test_calibrator_keeps_bad_data_error_for_after_the_build(tmp_path):
    cal = loaders.Int8EntropyCalibrator(Batches(8, dtype=np.float64), None, batch_size=8, input_shape=(3, 8, 8), allocator=FakeAllocator())
    assert cal.get_batch(["input"]) is None, "bad data must end calibration (None) instead of raising into TensorRT"
    assert isinstance(cal.error, CalibrationError) and "float32" in str(cal.error), f"error kept: {cal.error!r}"


def test_calibrator_absent_where_removed(tmp_path):
    if CAPS.implicit_int8_calibrator:
        pytest.skip(f"TensorRT {EXPECTED} still has IInt8EntropyCalibrator2")
    with pytest.raises(BuildError, match="no implicit INT8 calibrator"):
        loaders.Int8EntropyCalibrator(Batches(8), None, allocator=FakeAllocator())


def test_progress_monitor():
    out = io.StringIO()
    pm = loaders.ProgressMonitor(Console(file=out, width=100, force_terminal=False))
    if not CAPS.progress_monitor_class:
        assert pm is None, "without IProgressMonitor, ProgressMonitor() must be None"
        return
    assert isinstance(pm, trt.IProgressMonitor), "progress monitor must subclass the real IProgressMonitor"
    trt.IProgressMonitor.phase_start(pm, "Building engine", None, 2)  # through the real bindings
    trt.IProgressMonitor.phase_start(pm, "Tactic selection", "Building engine", 3)
    for step in range(3):
        assert trt.IProgressMonitor.step_complete(pm, "Tactic selection", step) is True, "must continue the build"
    trt.IProgressMonitor.phase_finish(pm, "Tactic selection")
    assert trt.IProgressMonitor.step_complete(pm, "Building engine", 0) is True, "must continue the build"
    pm.cancelled = True
    assert trt.IProgressMonitor.step_complete(pm, "Building engine", 1) is False, "cancel must stop the build"
    trt.IProgressMonitor.phase_finish(pm, "Building engine")
    assert "Building engine" in out.getvalue(), f"progress output lacks the phase name: {out.getvalue()!r}"


# --- signature-checked dry runs: every call edgeres makes, validated against this version ---------


def checked_builder(network_input=(-1, 3, 8, 8), on_build=None, parse_ok=True, parser_errors=()):
    """Patch trt.Builder/trt.OnnxParser with checked stand-ins; returns the shared call log."""
    calls: list = []
    f32 = trt.DataType.FLOAT
    tensor = lambda name, shape: Checked(trt, trt.ITensor, {"name": name, "shape": shape, "dtype": f32}, calls)  # noqa: E731
    network = Checked(trt, trt.INetworkDefinition, {
        "num_inputs": 1, "num_outputs": 1,
        "get_input": lambda i: tensor("input", network_input),
        "get_output": lambda i: tensor("logits", (network_input[0], 4)),
    }, calls)
    config_returns = {"get_timing_cache": lambda: Checked(trt, trt.ITimingCache, {"serialize": b"timing-cache-bytes"}, calls)}

    def build(net, config):
        if on_build:
            on_build(config, calls)
        return b"not-a-real-plan: signature-checked dry run"

    builder = Checked(trt, REAL_BUILDER, {
        "create_network": network,
        "create_builder_config": lambda: Checked(trt, trt.IBuilderConfig, config_returns, calls),
        "create_optimization_profile": lambda: Checked(trt, trt.IOptimizationProfile, {}, calls),
        "build_serialized_network": build,
    }, calls)
    errors = [Checked(trt, trt.ParserError, e, calls) for e in parser_errors]
    parser = {"parse_from_file": parse_ok, "num_errors": len(errors), "get_error": lambda i: errors[i]}
    return calls, checked_factory(trt, REAL_BUILDER, lambda log: builder), \
        checked_factory(trt, REAL_PARSER, lambda net, log: Checked(trt, REAL_PARSER, parser, calls))


def other_build(version: str) -> str:
    """The same major.minor.patch with a build number no real release has."""
    from edgeres.tensorrt_version import parse_version

    v = parse_version(version)
    return f"{v.major}.{v.minor}.{v.patch}.99999"


def set_calls(calls, name):
    return [args for n, args in calls if n == name]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "best"])
def test_dry_run_build_engine(tmp_path, monkeypatch, precision):
    kind = {"fp32": "fp32", "fp16": "fp16" if CAPS.always_strongly_typed else "fp32", "int8": "qdq", "best": "fp32"}[precision]
    calls, builder, parser = checked_builder()
    monkeypatch.setattr(trt, "Builder", builder)
    monkeypatch.setattr(trt, "OnnxParser", parser)
    s = settings_for(tmp_path, kind, precision=precision, timing_cache=tmp_path / "model.timing", workspace_bytes=256 << 20,
                     target="orin-nano", recipe={"mean": [0.5, 0.5, 0.5]}, show_progress=True)
    sidecar = loaders.build_engine(s, console=Console(file=io.StringIO()))

    flags = [a[0] for a in set_calls(calls, "set_flag")]
    # "best" here has an FP32 ONNX without Q/DQ and no calibrator: no INT8 scales, so FP16 only
    by_precision = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"], "best": ["FP16"]}
    want = [getattr(trt.BuilderFlag, f) for f in by_precision[precision]] if CAPS.precision_flags else []
    assert flags == want, f"{precision} on TensorRT {EXPECTED}: set flags {flags}, expected {want}"
    net_flags = set_calls(calls, "create_network")[0][0]
    explicit = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if CAPS.explicit_batch_required else 0
    assert net_flags == explicit, f"create_network flags {net_flags}, expected {explicit}"
    assert set_calls(calls, "set_memory_pool_limit") == [(trt.MemoryPoolType.WORKSPACE, 256 << 20)], "workspace pool limit"
    assert set_calls(calls, "set_shape") == [("input", (1, 3, 8, 8), (4, 3, 8, 8), (8, 3, 8, 8))], "min/opt/max profile"
    assert set_calls(calls, "set_timing_cache") and set_calls(calls, "create_timing_cache") == [(b"",)], "fresh timing cache attached"
    assert bool(set_calls(calls, "set:progress_monitor")) == CAPS.progress_monitor, "progress monitor iff the API has it"
    # 8.6: contexts share profile 0 only with PROFILE_SHARING_0806 (NvInfer.h release/8.6 l.9038-9042); 10: always on
    sharing_8_6 = MAJOR == 8
    want_preview = [(trt.PreviewFeature.PROFILE_SHARING_0806, True)] if sharing_8_6 else []
    assert set_calls(calls, "set_preview_feature") == want_preview, f"preview features on TensorRT {EXPECTED}"
    assert len(set_calls(calls, "add_optimization_profile")) == 1, "one shared optimization profile"

    plan = (tmp_path / "model.plan").read_bytes()
    meta = json.loads((tmp_path / "model.plan.json").read_text())
    assert plan.startswith(b"not-a-real-plan"), "the plan file must hold the builder's bytes"
    assert meta["tensorrt_version"] == EXPECTED and meta["precision"] == precision, f"sidecar: {meta}"
    assert meta["inputs"] == [{"name": "input", "shape": [-1, 3, 8, 8], "dtype": "float32"}], f"sidecar inputs {meta['inputs']}"
    assert meta["outputs"][0]["name"] == "logits" and meta["target"] == "orin-nano", f"sidecar: {meta}"
    assert (meta["optimization_profiles"], meta["profile_sharing"]) == (1, True), f"contexts share profile 0: {meta}"
    import hashlib

    assert meta["plan_sha256"] == hashlib.sha256(plan).hexdigest(), "sidecar must hash the plan that was written"
    assert (tmp_path / "model.timing").read_bytes() == b"timing-cache-bytes", "timing cache must be saved beside the engine"
    from edgeres.sidecar import read_sidecar

    assert read_sidecar(tmp_path / "model.plan") == sidecar, "build_engine must return the sidecar it wrote"

    # second build reuses the saved timing cache
    calls2, builder2, parser2 = checked_builder()
    monkeypatch.setattr(trt, "Builder", builder2)
    monkeypatch.setattr(trt, "OnnxParser", parser2)
    loaders.build_engine(s, console=Console(file=io.StringIO()))
    assert set_calls(calls2, "create_timing_cache") == [(b"timing-cache-bytes",)], "saved timing cache must be reused"
    assert loaders.timing_cache_version(tmp_path / "model.timing") == trt.__version__, "the cache's TensorRT is recorded"

    # another TensorRT build must start from a fresh cache (Support Policies: timing caches need all four parts)
    loaders.timing_cache_stamp_path(tmp_path / "model.timing").write_text(
        json.dumps({"format": loaders.TIMING_CACHE_FORMAT, "tensorrt_version": other_build(EXPECTED)}))
    calls3, builder3, parser3 = checked_builder()
    monkeypatch.setattr(trt, "Builder", builder3)
    monkeypatch.setattr(trt, "OnnxParser", parser3)
    loaders.build_engine(s, console=Console(file=io.StringIO()))
    assert set_calls(calls3, "create_timing_cache") == [(b"",)], "a cache from another TensorRT build must not be fed in"


def test_dry_run_dla_with_gpu_fallback(tmp_path, monkeypatch):
    calls, builder, parser = checked_builder()
    monkeypatch.setattr(trt, "Builder", builder)
    monkeypatch.setattr(trt, "OnnxParser", parser)
    kind = "fp16" if CAPS.always_strongly_typed else "fp32"
    loaders.build_engine(settings_for(tmp_path, kind, precision="fp16", dla_core=1, show_progress=False))
    assert set_calls(calls, "set:default_device_type") == [(trt.DeviceType.DLA,)], "DLA must be the default device"
    assert set_calls(calls, "set:DLA_core") == [(1,)], "DLA core 1 must be selected"
    assert (trt.BuilderFlag.GPU_FALLBACK,) in set_calls(calls, "set_flag"), "GPU fallback flag must be set"


@needs_calibrator
def test_dry_run_implicit_calibration(tmp_path, monkeypatch):
    alloc, data = FakeAllocator(), Batches(16)
    payload = b"TRT-calibration-cache\n"

    def drive(config, calls):  # what TensorRT does with the attached calibrator during the build
        cal = set_calls(calls, "set:int8_calibrator")[0][0]
        assert trt.IInt8EntropyCalibrator2.get_batch_size(cal) == 8, "batch size through the real trampoline"
        assert cal.read_calibration_cache() is None, "no cache yet"
        while cal.get_batch(["input"]) is not None:
            pass
        cal.write_calibration_cache(memoryview(payload))

    calls, builder, parser = checked_builder(on_build=drive)
    monkeypatch.setattr(trt, "Builder", builder)
    monkeypatch.setattr(trt, "OnnxParser", parser)
    s = settings_for(tmp_path, precision="int8", int8_mode="calibrator", calib_dataset=data, calib_cache=tmp_path / "calib.cache",
                     show_progress=False)
    sidecar = loaders.build_engine(s, allocator=alloc)
    assert (tmp_path / "calib.cache").read_bytes() == payload, "calibration cache must be written"
    assert len(alloc.memory) == 1 and alloc.freed, "one device buffer, freed after calibration"
    assert set_calls(calls, "set_shape")[1] == ("input", (8, 3, 8, 8), (8, 3, 8, 8), (8, 3, 8, 8)), \
        "calibration profile must be fixed at the calibration batch"
    assert len(set_calls(calls, "set_calibration_profile")) == 1, "dynamic shapes need a calibration profile"
    assert len(set_calls(calls, "add_optimization_profile")) == 1, "the calibration profile is not an engine profile"
    flags = [a[0] for a in set_calls(calls, "set_flag")]
    assert flags == [trt.BuilderFlag.INT8, trt.BuilderFlag.FP16], f"int8 with a calibrator sets INT8 and FP16, got {flags}"
    assert sidecar.extra["int8_mode"] == "calibrator" and "calib_cache_sha256" in sidecar.extra, f"sidecar extra {sidecar.extra}"


def test_dry_run_parser_errors_name_the_node(tmp_path, monkeypatch):
    error = {"node": 1, "desc": "Unsupported Conv padding", "code": trt.ErrorCode.UNSUPPORTED_NODE,
             "node_name": "/conv/Conv", "node_operator": "Conv"}
    calls, builder, parser = checked_builder(parse_ok=False, parser_errors=[error])
    monkeypatch.setattr(trt, "Builder", builder)
    monkeypatch.setattr(trt, "OnnxParser", parser)
    with pytest.raises(BuildError) as info:
        loaders.build_engine(settings_for(tmp_path, "fp16" if CAPS.always_strongly_typed else "fp32", precision="fp32"))
    want = "node 1 (/conv/Conv, Conv): Unsupported Conv padding" if CAPS.parser_node_name else "node 1: Unsupported Conv padding"
    assert want in str(info.value), f"parser error text {info.value}, expected {want!r}"
    assert not (tmp_path / "model.plan").exists(), "no plan after a parse failure"


def test_dry_run_refuses_other_gpu(tmp_path, monkeypatch):
    calls, builder, parser = checked_builder()
    monkeypatch.setattr(trt, "Builder", builder)
    monkeypatch.setattr(trt, "OnnxParser", parser)
    monkeypatch.setattr(cuda, "BINDINGS", {"rtx3090": Rtx3090})
    kind = "fp16" if CAPS.always_strongly_typed else "fp32"
    s = settings_for(tmp_path, kind, precision="fp16", target="orin-nano", expected_compute_capability=(8, 7))
    with pytest.raises(BuildError, match=r"compute capability 8\.7, this GPU \(NVIDIA GeForce RTX 3090\) has 8\.6"):
        loaders.build_engine(s)
    import dataclasses

    meta = loaders.build_engine(dataclasses.replace(s, allow_mismatch=True, show_progress=False))
    assert meta.compute_capability == (8, 6) and meta.device_name == "NVIDIA GeForce RTX 3090", f"sidecar {meta}"


def test_dry_run_out_of_memory_names_workspace(tmp_path, monkeypatch):
    def oom(config, calls):
        log = trt_logger[0]
        trt.ILogger.log(log, trt.ILogger.Severity.ERROR, "Requested amount of GPU memory (4294967296 bytes) could not be allocated")

    trt_logger = []
    calls, builder, parser = checked_builder(on_build=oom)
    monkeypatch.setattr(trt, "Builder", lambda log: (trt_logger.append(log), builder(log))[1])
    monkeypatch.setattr(trt, "OnnxParser", parser)
    # build_serialized_network returning None is TensorRT's failure signal
    calls_builder = builder(loaders.logger(trt))
    calls_builder._returns["build_serialized_network"] = lambda net, cfg: (oom(cfg, calls), None)[1]
    with pytest.raises(BuildError, match="ran out of GPU memory.*--workspace"):
        loaders.build_engine(settings_for(tmp_path, "fp16" if CAPS.always_strongly_typed else "fp32", precision="fp32",
                                          show_progress=False))
    assert not (tmp_path / "model.plan").exists(), "no plan after a failed build"


@needs_calibrator
def test_dry_run_bad_calibration_data_is_the_reported_cause(tmp_path, monkeypatch):
    def drive(config, calls):
        cal = set_calls(calls, "set:int8_calibrator")[0][0]
        while cal.get_batch(["input"]) is not None:
            pass

    calls, builder, parser = checked_builder(on_build=drive)
    real = builder(loaders.logger(trt))
    real._returns["build_serialized_network"] = lambda net, cfg: (drive(cfg, calls), None)[1]  # TensorRT fails too
    monkeypatch.setattr(trt, "Builder", builder)
    monkeypatch.setattr(trt, "OnnxParser", parser)
    s = settings_for(tmp_path, precision="int8", int8_mode="calibrator", calib_dataset=Batches(4), calib_batch_size=8,
                     show_progress=False)
    with pytest.raises(CalibrationError, match="no full batch of 8 images"):
        loaders.build_engine(s, allocator=FakeAllocator())
    assert not (tmp_path / "model.plan").exists(), "no plan after failed calibration"


def test_dry_run_many_parser_errors_are_counted(tmp_path, monkeypatch):
    errors = [{"node": i, "desc": f"problem {i}", "node_name": f"/n{i}", "node_operator": "Foo"} for i in range(7)]
    calls, builder, parser = checked_builder(parse_ok=False, parser_errors=errors)
    monkeypatch.setattr(trt, "Builder", builder)
    monkeypatch.setattr(trt, "OnnxParser", parser)
    with pytest.raises(BuildError) as info:
        loaders.build_engine(settings_for(tmp_path, "fp16" if CAPS.always_strongly_typed else "fp32", precision="fp32"))
    msg = str(info.value)
    assert "problem 4" in msg and "problem 5" not in msg and msg.endswith("; and 2 more"), f"message: {msg}"


@pytest.mark.parametrize("network_input, kw, match", [
    ((1, 3, 8, 8), {}, "fixed batch of 1, received batches 1/4/8"),
    ((-1, 3, 16, 16), {}, r"has shape \[-1, 3, 16, 16\], expected \['N', 3, 8, 8\]"),
    ((-1, 3, 8, 8), {"input_name": "images"}, r"the ONNX has inputs \['input'\], expected one named 'images'"),
])
def test_dry_run_profile_must_fit_network(tmp_path, monkeypatch, network_input, kw, match):
    calls, builder, parser = checked_builder(network_input=network_input)
    monkeypatch.setattr(trt, "Builder", builder)
    monkeypatch.setattr(trt, "OnnxParser", parser)
    kind = "fp16" if CAPS.always_strongly_typed else "fp32"
    with pytest.raises(BuildError, match=match):
        loaders.build_engine(settings_for(tmp_path, kind, precision="fp16", show_progress=False, **kw))
    assert not set_calls(calls, "build_serialized_network"), "no build with a profile the network cannot take"


def test_dry_run_concurrent_contexts_need_no_extra_profiles_from_8_6(tmp_path, monkeypatch):
    """concurrent_contexts builds extra profiles only where contexts cannot share one (8.5, not in this set)."""
    calls, builder, parser = checked_builder()
    monkeypatch.setattr(trt, "Builder", builder)
    monkeypatch.setattr(trt, "OnnxParser", parser)
    sidecar = loaders.build_engine(settings_for(tmp_path, "fp32", concurrent_contexts=4, show_progress=False))
    assert len(set_calls(calls, "add_optimization_profile")) == 1, f"TensorRT {EXPECTED} shares profile 0"
    assert sidecar.optimization_profiles == 1 and sidecar.profile_sharing is True, sidecar
