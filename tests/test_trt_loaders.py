"""edgeres.trt in the main test process, where TensorRT is absent: lazy import, install hints,
settings and precision rules, failure messages. The TensorRT calls themselves are checked
against the real bindings in test_trt_conformance.py."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest


def _write_model_function():
    import importlib.util

    path = Path(__file__).resolve().parent / "trt_stubs" / "onnx_models.py"
    spec = importlib.util.spec_from_file_location("edgeres_trt_stubs_onnx_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_model


write_model = _write_model_function()

from edgeres.errors import BuildError, TensorRTUnavailableError  # noqa: E402
from edgeres.trt import caps as caps_mod  # noqa: E402
from edgeres.trt import loaders  # noqa: E402
from edgeres.trt.settings import EngineSettings  # noqa: E402


def make_caps(major: int) -> caps_mod.Capabilities:
    """Capabilities as the real 8.6 / 10.3 / 11.4 modules report them (see test_trt_conformance)."""
    flags = major < 11
    fields = {f.name: False for f in dataclasses.fields(caps_mod.Capabilities) if f.name != "version"}
    fields.update(fp16_flag=flags, int8_flag=flags, implicit_int8_calibrator=flags, memory_pool_limit=True,
                  progress_monitor=major >= 10, explicit_batch_flag=major < 11, timing_cache=True)
    return caps_mod.Capabilities(version=f"{major}.0.0", **fields)


def settings(tmp_path: Path, **kw) -> EngineSettings:
    base = dict(onnx_path=tmp_path / "m.onnx", plan_path=tmp_path / "model.plan", precision="fp32", input_shape=(3, 8, 8))
    return EngineSettings(**{**base, **kw})


def test_import_is_lazy():
    code = "import sys, edgeres.trt, edgeres.trt.settings; print(sorted(m for m in ('tensorrt', 'torch', 'onnx', 'cuda') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"import edgeres.trt loaded heavy modules: {out}"


def test_require_tensorrt_without_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as if not installed, even where it is
    with pytest.raises(TensorRTUnavailableError) as info:
        loaders.require_tensorrt()
    msg = str(info.value)
    for hint in ("JetPack", "sudo apt install python3-libnvinfer", "pip install --extra-index-url https://pypi.nvidia.com tensorrt"):
        assert hint in msg, f"install hint {hint!r} missing from: {msg}"
    assert "\n" not in msg, "the CLI prints one line"


def test_build_engine_without_tensorrt_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    write_model(tmp_path / "m.onnx")
    with pytest.raises(TensorRTUnavailableError, match="TensorRT is not importable"):
        loaders.build_engine(settings(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"], "nothing may be written when TensorRT is missing"


def test_onnx_precision_reads_types_and_qdq(tmp_path):
    fp32 = loaders.onnx_precision(write_model(tmp_path / "a.onnx", "fp32"))
    fp16 = loaders.onnx_precision(write_model(tmp_path / "b.onnx", "fp16"))
    qdq = loaders.onnx_precision(write_model(tmp_path / "c.onnx", "qdq"))
    assert fp32 == loaders.OnnxPrecision(frozenset({"float32"}), False), f"fp32 model read as {fp32}"
    assert fp16 == loaders.OnnxPrecision(frozenset({"float16"}), False), f"fp16 model read as {fp16}"
    assert qdq == loaders.OnnxPrecision(frozenset({"float16"}), True), f"Q/DQ model read as {qdq}"


@pytest.mark.parametrize("major, kind, precision, int8_mode, match", [
    (11, "fp32", "fp16", "qdq", "strongly typed .*needs an ONNX with float16 tensors, received .* with float32"),
    (11, "fp32", "int8", "qdq", "needs a Q/DQ ONNX"),
    (11, "fp32", "int8", "calibrator", "removed implicit INT8 calibration"),
    (10, "fp32", "int8", "qdq", "needs a Q/DQ ONNX.*or use int8_mode='calibrator'"),
    (10, "qdq", "int8", "calibrator", "already has Q/DQ nodes"),
])
def test_precision_refusals(tmp_path, major, kind, precision, int8_mode, match):
    onnx = loaders.onnx_precision(write_model(tmp_path / "m.onnx", kind))
    s = settings(tmp_path, precision=precision, int8_mode=int8_mode)
    with pytest.raises(BuildError, match=match):
        loaders.check_precision_support(s, make_caps(major), onnx)


@pytest.mark.parametrize("major, kind, precision", [
    (8, "fp32", "fp16"), (10, "fp32", "best"), (10, "qdq", "int8"), (11, "fp16", "fp16"), (11, "qdq", "int8"), (11, "fp32", "fp32"),
])
def test_precision_accepted(tmp_path, major, kind, precision):
    onnx = loaders.onnx_precision(write_model(tmp_path / "m.onnx", kind))
    loaders.check_precision_support(settings(tmp_path, precision=precision), make_caps(major), onnx)


def test_explain_build_failure():
    oom = loaders.explain_build_failure(["[virtualMemoryBuffer.cpp] Error: out of memory"], 1 << 30)
    assert "ran out of GPU memory" in oom and "1024 MiB" in oom and "--workspace" in oom, f"OOM message: {oom}"
    other = loaders.explain_build_failure(["Network validation failed.\nline two"], 1 << 30)
    assert other == "TensorRT could not build the engine: Network validation failed. line two", f"message: {other}"


def test_compute_capability_check(tmp_path):
    s = settings(tmp_path, expected_compute_capability=(8, 7), target="orin-nano")
    loaders.check_compute_capability(s, (8, 7), "Orin")
    loaders.check_compute_capability(s, None, "unknown")  # no GPU: the builder step reports that
    with pytest.raises(BuildError, match=r"target orin-nano has compute capability 8\.7, this GPU \(RTX\) has 8\.6.*--allow-mismatch"):
        loaders.check_compute_capability(s, (8, 6), "RTX")
    loaders.check_compute_capability(dataclasses.replace(s, allow_mismatch=True), (8, 6), "RTX")


def test_probe_table_covers_capabilities():
    fields = {f.name for f in dataclasses.fields(caps_mod.Capabilities)} - {"version"}
    assert fields == set(caps_mod.PROBES), f"Capabilities fields and PROBES differ: {fields ^ set(caps_mod.PROBES)}"


def test_local_compute_capability_without_gpu():
    import torch

    from edgeres.runtime import cuda

    cc = loaders.local_compute_capability()
    if cuda.local_device() is None:  # no GPU, or no cuda-python/pycuda to ask it (torch is not asked: one CUDA layer)
        assert cc is None, f"no GPU or no CUDA binding here, local_compute_capability() returned {cc}"
    elif torch.cuda.is_available():
        assert cc == tuple(torch.cuda.get_device_capability(0)), f"compute capability {cc} disagrees with torch"
    else:  # a GPU, but CPU-only torch cannot confirm the number
        assert isinstance(cc, tuple) and len(cc) == 2 and cc >= (3, 0), f"compute capability {cc} is not (major, minor)"


def test_local_compute_capability_comes_from_the_runtime_cuda_layer(monkeypatch):
    from edgeres.runtime import cuda

    class Gpu(cuda.CudaApi):
        def __init__(self, device):
            self.device = device

        def compute_capability(self):
            return (8, 7)

        def device_name(self):
            return "Orin"

    monkeypatch.setattr(cuda, "BINDINGS", {"fake": Gpu})
    assert loaders.local_compute_capability() == (8, 7), "compute capability must come from edgeres.runtime.cuda"


def test_default_allocator_without_bindings_says_what_to_install(monkeypatch):
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(TensorRTUnavailableError) as info:
        loaders.default_allocator()
    msg = str(info.value)
    assert "cuda-python" in msg and "pycuda" in msg and "pip install cuda-python" in msg, f"message: {msg}"


def test_cuda_allocator_owns_and_frees_its_buffers():
    import numpy as np

    from tests._trt_standin import StandinCuda

    api = StandinCuda()
    alloc = loaders.CudaAllocator(api)
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    ptr = alloc.alloc(data.nbytes)
    assert isinstance(ptr, int) and ptr in api.live_device, f"alloc must return the int device pointer, got {ptr!r}"
    alloc.copy_htod(ptr, data)
    got = api.live_device[ptr][: data.nbytes].view(np.float32).reshape(data.shape)
    np.testing.assert_array_equal(got, data, err_msg="copy_htod must leave the batch in device memory")
    alloc.free(ptr)
    alloc.free(ptr)  # the calibrator may free twice (after the last batch and after the build)
    assert not api.live_device, f"device memory left after free: {list(api.live_device)}"


def test_lazy_public_names_resolve_to_their_split_modules():
    import edgeres.trt as trt_pkg

    where = {"Int8EntropyCalibrator": "edgeres.trt.calibrator", "ProgressMonitor": "edgeres.trt.progress",
             "require_tensorrt": "edgeres.trt.guard", "build_engine": "edgeres.trt.loaders"}
    for name, module in where.items():
        value = getattr(trt_pkg, name)
        assert value.__module__ == module, f"edgeres.trt.{name} comes from {value.__module__}, expected {module}"
        assert getattr(loaders, name) is value, f"edgeres.trt.loaders.{name} must stay the same object"
    lines = len((Path(loaders.__file__)).read_text().splitlines())
    assert lines < 500, f"trt/loaders.py has {lines} lines; the calibrator and progress monitor live apart"


class FakeCache:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return self.data


class FakeConfig:
    def __init__(self, data: bytes) -> None:
        self.cache = FakeCache(data)

    def get_timing_cache(self) -> FakeCache:
        return self.cache


def test_timing_cache_is_reused_only_by_the_same_tensorrt_build(tmp_path):
    path = tmp_path / "timing.cache"
    loaders.save_timing_cache(FakeConfig(b"tactics"), path, "10.3.0.30")
    assert loaders.timing_cache_version(path) == "10.3.0.30", "the version that wrote the cache is recorded beside it"
    assert loaders.timing_cache_bytes(path, "10.3.0.30") == b"tactics", "same build: the cache is reused"
    for other in ("10.3.0.26", "8.6.2.3", "10.3.0"):  # another build, another release, an unknown build
        assert loaders.timing_cache_bytes(path, other) is None, f"a cache from 10.3.0.30 must not be fed to {other}"
    loaders.save_timing_cache(FakeConfig(b"fresh"), path, "10.3.0.26")
    assert loaders.timing_cache_bytes(path, "10.3.0.26") == b"fresh", "the rebuilt cache replaces the old one"


def test_timing_cache_without_or_with_a_broken_stamp_is_not_reused(tmp_path):
    path = tmp_path / "timing.cache"
    path.write_bytes(b"from an older edgeres or trtexec")
    assert loaders.timing_cache_bytes(path, "10.3.0") is None, "no stamp: unknown version, build a fresh cache"
    loaders.timing_cache_stamp_path(path).write_text("{not json")
    assert loaders.timing_cache_bytes(path, "10.3.0") is None, "unreadable stamp: unknown version"
    assert loaders.timing_cache_bytes(path) == b"from an older edgeres or trtexec", "no version given: unchecked read"
    assert loaders.timing_cache_bytes(tmp_path / "none.cache", "10.3.0") is None, "no cache yet"


@pytest.mark.parametrize(("version", "preview_enum", "dynamic", "want"), [
    ("8.5.2.2", False, True, loaders.ContextProfiles(count=3, sharing=False, preview_feature=False)),
    ("8.5.2.2", False, False, loaders.ContextProfiles(count=1, sharing=False, preview_feature=False)),
    ("8.6.2.3", True, True, loaders.ContextProfiles(count=1, sharing=True, preview_feature=True)),
    ("10.3.0.30", True, True, loaders.ContextProfiles(count=1, sharing=True, preview_feature=False)),
    ("11.4.0.106", False, True, loaders.ContextProfiles(count=1, sharing=True, preview_feature=False)),
])
def test_context_profiles_per_version(tmp_path, version, preview_enum, dynamic, want):
    """8.5 builds one profile per concurrent context; 8.6 enables PROFILE_SHARING_0806; from 9.0 contexts share."""
    caps = dataclasses.replace(make_caps(int(version.split(".")[0])), version=version, profile_sharing_preview=preview_enum)
    got = loaders.context_profiles(settings(tmp_path, concurrent_contexts=3), caps, dynamic)
    assert got == want, f"TensorRT {version} (dynamic={dynamic}): {got}, expected {want}"


def test_config_builds_one_profile_per_context_on_8_5(tmp_path, monkeypatch):
    """config_from_settings on an 8.5-like module: N identical profiles, no preview feature (8.5 has none)."""
    import types

    calls: list = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def __getattr__(self, attr):
            return lambda *a: calls.append((f"{self.name}.{attr}", a)) or Recorder(attr)

        def __setattr__(self, attr, value):
            if attr == "name":
                object.__setattr__(self, attr, value)
            else:
                calls.append((f"{self.name}.{attr}=", (value,)))

    fake = types.SimpleNamespace(__version__="8.5.2.2", MemoryPoolType=types.SimpleNamespace(WORKSPACE=0),
                                 BuilderFlag=types.SimpleNamespace(FP16=1, INT8=2))
    network = types.SimpleNamespace(num_inputs=1, num_outputs=0,
                                    get_input=lambda i: types.SimpleNamespace(name="input", shape=(-1, 3, 8, 8)))
    caps = dataclasses.replace(make_caps(8), version="8.5.2.2", timing_cache=False)
    monkeypatch.setattr(loaders, "require_tensorrt", lambda: fake)
    loaders.config_from_settings(Recorder("builder"), network,
                                 settings(tmp_path, concurrent_contexts=3, min_batch=1, opt_batch=2, max_batch=4), caps)
    added = [c for c in calls if c[0].endswith("add_optimization_profile")]
    shapes = [c[1] for c in calls if c[0] == "create_optimization_profile.set_shape"]
    assert len(added) == 3 and len(set(shapes)) == 1, f"expected 3 identical profiles, got {len(added)}: {shapes}"
    assert not [c for c in calls if "preview" in c[0]], "8.5 has no PROFILE_SHARING_0806 to set"
