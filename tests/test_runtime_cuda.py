"""The CUDA buffer layer: error handling against the real cuda-python enums and tuples, GPU round trips where a GPU is.

On a machine without an NVIDIA driver the real cuda-python runtime binding
returns ``(cudaErrorInsufficientDriver, None)`` from every call; that is used
here to check that every call the layer makes is accepted by the binding
(argument types, signatures) and that its error tuple becomes a clear CudaError.
"""

from __future__ import annotations

import enum
import importlib.util
import sys

import numpy as np
import pytest

from edgeres.runtime import CudaError, CudaUnavailableError
from edgeres.runtime import cuda as cuda_mod
from edgeres.runtime.cuda import (
    BINDINGS,
    CudaApi,
    CudaPythonApi,
    DeviceBuffer,
    PycudaApi,
    DeviceInfo,
    check_result,
    cuda_api,
    local_device,
    stream_handle_of,
)

HAS_CUDA_PYTHON = importlib.util.find_spec("cuda") is not None and (
    importlib.util.find_spec("cuda.bindings") is not None or importlib.util.find_spec("cuda.cudart") is not None
)
NOT_ON_GPU = "not verified on a GPU: no NVIDIA GPU/driver in this environment"


def _gpu_count() -> int:
    if not HAS_CUDA_PYTHON:
        return 0
    from edgeres.runtime.cuda import import_cudart

    result = import_cudart().cudaGetDeviceCount()
    return int(result[1]) if int(result[0]) == 0 else 0


GPU = _gpu_count() > 0
needs_cuda_python = pytest.mark.skipif(not HAS_CUDA_PYTHON, reason="cuda-python not installed (pip install cuda-python)")


class FakeError(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2


def test_check_result_unpacks_and_names_errors():
    assert check_result((FakeError.cudaSuccess,), "x") is None, "no values -> None"
    assert check_result((FakeError.cudaSuccess, 5), "x") == 5, "one value -> the value"
    assert check_result((FakeError.cudaSuccess, 5, 6), "x") == (5, 6), "several -> tuple"
    with pytest.raises(CudaError, match=r"cudaMalloc\(8\) failed: expected cudaSuccess, received "
                                        r"cudaErrorMemoryAllocation \(2\): out of memory"):
        check_result((FakeError.cudaErrorMemoryAllocation, None), "cudaMalloc(8)", lambda e: "out of memory")


def test_check_result_accepts_enum_like_errors_with_value_only():
    class Err:  # an enum-like error offering only .value (no int()): the layer must still read its code
        value = 2

        def __repr__(self):
            return "<cudaError_t.cudaErrorMemoryAllocation: 2>"

    class Ok:
        value = 0

    with pytest.raises(CudaError, match=r"cudaMalloc failed: expected cudaSuccess, received "
                                        r"<cudaError_t.cudaErrorMemoryAllocation: 2> \(2\)"):
        check_result((Err(), 0), "cudaMalloc")
    assert check_result((Ok(), 1234), "cudaMalloc") == 1234, "success returns the value"


def test_stream_handles_from_every_library_shape():
    class Torchish:
        cuda_stream = 11

    class Cupyish:
        ptr = 12

    class Pycudaish:
        handle = 13

    class CudaPythonish:
        def getPtr(self):
            return 14

    class CudaCoreish:
        def __cuda_stream__(self):
            return (0, 15)

    got = [stream_handle_of(s) for s in (10, Torchish(), Cupyish(), Pycudaish(), CudaPythonish(), CudaCoreish())]
    assert got == [10, 11, 12, 13, 14, 15], got
    with pytest.raises(Exception, match="expected a CUDA stream"):
        stream_handle_of("stream")


def test_bindings_are_tried_in_order_cuda_python_first():
    assert list(BINDINGS) == ["cuda-python", "pycuda"], f"cuda-python must be preferred: {list(BINDINGS)}"


@pytest.mark.skipif(GPU, reason="this machine has a GPU; the no-GPU message cannot be checked")
def test_no_gpu_gives_one_unavailable_error_listing_each_binding():
    with pytest.raises(CudaUnavailableError, match=r"no CUDA binding is usable: cuda-python: .*; pycuda: .*"):
        cuda_api()


def _without_bindings(monkeypatch):
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed, even where they are


def test_no_binding_installed_says_what_to_install(monkeypatch):
    _without_bindings(monkeypatch)
    with pytest.raises(CudaUnavailableError) as info:
        cuda_api()
    msg = str(info.value)
    for want in ("cuda-python: ", "pycuda: ", "pip install cuda-python", "pip install pycuda"):
        assert want in msg, f"{want!r} missing from: {msg}"


def test_local_device_none_without_any_binding(monkeypatch):
    _without_bindings(monkeypatch)
    assert local_device() is None, "no cuda-python and no pycuda: local_device() must be None"


@pytest.mark.skipif(GPU, reason="this machine has a GPU; covered by the GPU round trip instead")
def test_local_device_none_without_gpu():
    assert local_device() is None, "no GPU here (whatever bindings are installed): local_device() must be None"


def test_local_device_reads_the_first_usable_binding(monkeypatch):
    class Gpu(CudaApi):
        name = "fake"

        def __init__(self, device):
            self.device = device

        def device_name(self):
            return f"GPU {self.device}"

        def compute_capability(self):
            return (8, 7)

    def unusable(device):
        raise CudaUnavailableError("no GPU for this binding")

    monkeypatch.setattr(cuda_mod, "BINDINGS", {"first": unusable, "second": Gpu})
    assert local_device(1) == DeviceInfo("GPU 1", (8, 7)), "the first binding that sees a GPU answers"
    monkeypatch.setattr(cuda_mod, "BINDINGS", {"first": unusable})
    assert local_device() is None, "no binding sees a GPU: None"


@needs_cuda_python
def test_real_cuda_python_enums_through_check_result():
    from edgeres.runtime.cuda import import_cudart

    rt = import_cudart()
    assert check_result((rt.cudaError_t.cudaSuccess, 3), "x") == 3, "real success enum"
    with pytest.raises(CudaError, match=r"received cudaErrorNotReady \(600\)"):
        check_result((rt.cudaError_t.cudaErrorNotReady,), "cudaEventQuery")


@needs_cuda_python
@pytest.mark.skipif(GPU, reason="this machine has a GPU; covered by the GPU round trip instead")
def test_real_cuda_python_without_gpu_is_unavailable_not_a_crash():
    with pytest.raises(CudaUnavailableError, match=r"no usable CUDA GPU: cudaGetDeviceCount returned cudaError"):
        CudaPythonApi()


@needs_cuda_python
@pytest.mark.skipif(GPU, reason="this machine has a GPU; covered by the GPU round trip instead")
def test_every_call_is_accepted_by_the_real_binding_and_fails_clearly():
    from edgeres.runtime.cuda import import_cudart

    api = object.__new__(CudaPythonApi)  # skip the device probe: reach each call with driverless error tuples
    api.rt, api.device = import_cudart(), 0
    host = np.zeros(16, np.uint8)
    calls = {
        "activate": (), "device_count": (), "compute_capability": (), "device_name": (),
        "malloc": (16,), "free": (DeviceBuffer(4096, 16),), "malloc_host": (16,), "memcpy_htod": (4096, host),
        "memcpy_htod_async": (4096, host, 5), "memcpy_dtoh_async": (host, 4096, 5),
        "stream_create": (), "stream_synchronize": (5,), "stream_destroy": (5,),
        "event_create": (), "event_record": (7, 5), "event_query": (7,), "event_synchronize": (7,),
        "event_destroy": (7,), "stream_wait_event": (5, 7), "graph_capture": (5, lambda: None),
        "graph_launch": (9, 5), "graph_destroy": (9,),
    }
    for name, args in calls.items():
        with pytest.raises(CudaError, match=r"failed: expected cudaSuccess, received cudaError\w+ \(\d+\): \w") as info:
            getattr(api, name)(*args)
        assert "TypeError" not in str(info.value), f"{name}: the binding rejected our argument types"


@pytest.mark.skipif(importlib.util.find_spec("pycuda") is None, reason="pycuda not installed")
@pytest.mark.skipif(not GPU, reason=NOT_ON_GPU)
def test_pycuda_round_trip():  # pragma: no cover - needs a GPU
    api = PycudaApi()
    _round_trip(api)


@needs_cuda_python
@pytest.mark.skipif(not GPU, reason=NOT_ON_GPU)
def test_cuda_python_round_trip():  # pragma: no cover - needs a GPU
    _round_trip(CudaPythonApi())


def _round_trip(api) -> None:  # pragma: no cover - needs a GPU
    data = np.arange(256, dtype=np.float32)
    dev = api.malloc(data.nbytes)
    host = api.malloc_host(data.nbytes)
    stream = api.stream_create()
    event = api.event_create()
    try:
        src = host.view(np.float32, data.shape)
        src[:] = data
        api.memcpy_htod_async(dev.ptr, src, stream)
        out = np.zeros_like(data)
        src[:] = 0
        api.memcpy_dtoh_async(src, dev.ptr, stream)
        api.event_record(event, stream)
        api.event_synchronize(event)
        assert api.event_query(event), "event must be complete after synchronize"
        out[:] = src
        np.testing.assert_array_equal(out, data, err_msg="host->device->host round trip changed the data")
        api.memcpy_htod(dev.ptr, data[::-1].copy())  # blocking copy from pageable memory (the calibrator's)
        api.memcpy_dtoh_async(src, dev.ptr, stream)
        api.stream_synchronize(stream)
        np.testing.assert_array_equal(src, data[::-1], err_msg="blocking host->device copy changed the data")
        assert len(api.compute_capability()) == 2, "compute capability is (major, minor)"
        info = local_device(api.device)
        assert info is not None and info.compute_capability == api.compute_capability(), f"local_device: {info}"
        assert info.name == api.device_name() and info.name, f"device name {info.name!r}"
    finally:
        api.event_destroy(event)
        api.stream_destroy(stream)
        api.free_host(host)
        api.free(dev)


# --- call sites against the recorded signatures of cuda-python 11.8, 12.x and 13.x ------------------
# tests/data/cuda_python_signatures.json was read from the real wheels by tests/tools/cuda_python_signatures.py
# (see its "made_by"); no download happens here. A fake binding is built from one release's record: each
# function binds its arguments to that release's parameter list (a mismatch is a TypeError, as the real
# Cython functions raise) and returns (cudaSuccess, *values) shaped by its recorded returns.

import ctypes  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

SIGNATURES = json.loads((Path(__file__).resolve().parent / "data" / "cuda_python_signatures.json").read_text())
RELEASES = sorted(SIGNATURES["releases"])


class RecordedError(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorNotReady = 600
    cudaErrorStreamCaptureInvalidated = 901


def recorded_binding(release: str) -> types.SimpleNamespace:
    """A fake ``cuda.bindings.runtime`` with exactly ``release``'s recorded functions and enum members."""
    record = SIGNATURES["releases"][release]
    rt = types.SimpleNamespace(calls=[], keep=[], release=release)
    handles = iter(range(0x1000, 1 << 30, 0x10))
    values = {"count": lambda a: 1, "value": lambda a: 8, "bytes": lambda a: b"recorded binding",
              "prop": lambda a: types.SimpleNamespace(name=b"Recorded GPU\0\0"), "pErrorNode": lambda a: 0}

    def memory(args):
        buf = ctypes.create_string_buffer(max(int(args["size"]), 1))
        rt.keep.append(buf)
        return ctypes.addressof(buf)

    values.update(devPtr=memory, ptr=memory)

    def make(name, spec):
        signature = inspect.Signature([inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                       for p in spec["params"]])

        def call(*args, **kwargs):
            bound = signature.bind(*args, **kwargs).arguments  # TypeError where the release's signature differs
            rt.calls.append(name)
            return (RecordedError.cudaSuccess, *(values.get(r, lambda a: next(handles))(bound) for r in spec["returns"]))

        call.__name__ = name
        call.__signature__ = signature
        return call

    for name, spec in record["functions"].items():
        if spec is not None:
            setattr(rt, name, make(name, spec))
    for dotted, present in record["members"].items():
        owner, _, member = dotted.rpartition(".")
        if not present:
            continue
        if not owner:
            setattr(rt, member, 1)
        elif owner == "cudaError_t":
            rt.cudaError_t = RecordedError
        else:
            if not hasattr(rt, owner):
                setattr(rt, owner, types.SimpleNamespace())
            setattr(getattr(rt, owner), member, len(vars(getattr(rt, owner))))
    return rt


def names_cuda_py_uses() -> set[str]:
    """Every ``self.rt.<name>`` in edgeres/runtime/cuda.py (plus the attribute members read through a local)."""
    source = Path(cuda_mod.__file__).read_text()
    used = set(re.findall(r"self\.rt\.(\w+(?:\.\w+)?)", source))
    return used | {"cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor", "cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor"}


@pytest.mark.parametrize("release", RELEASES)
def test_every_name_cuda_py_uses_is_recorded_and_present(release):
    record = SIGNATURES["releases"][release]
    for name in names_cuda_py_uses():
        if name in record["members"]:
            assert record["members"][name], f"cuda-python {release} lacks {name}"
        elif any(m.startswith(name + ".") for m in record["members"]):
            continue  # an enum class read for its (recorded) members
        else:
            assert record["functions"].get(name), f"cuda-python {release}: {name} not recorded or absent"


@pytest.mark.parametrize("release", RELEASES)
def test_every_call_fits_the_recorded_signatures(release):
    """The whole buffer layer, CUDA graphs included, on each release's signatures (no GPU: a fake from the record)."""
    rt = recorded_binding(release)
    api = CudaPythonApi(0, cudart=rt)
    assert api.compute_capability() == (8, 8) and api.device_name() == "Recorded GPU", "queries"
    dev, host = api.malloc(64), api.malloc_host(64)
    stream, event = api.stream_create(), api.event_create()
    data = np.arange(16, dtype=np.float32)
    api.memcpy_htod(dev.ptr, data)
    api.memcpy_htod_async(dev.ptr, host.view(np.float32, (16,)), stream)
    api.memcpy_dtoh_async(host.view(np.float32, (16,)), dev.ptr, stream)
    api.event_record(event, stream)
    assert api.event_query(event), "event done"
    api.event_synchronize(event)
    api.stream_wait_event(stream, event)
    api.stream_synchronize(stream)
    graph = api.graph_capture(stream, lambda: api.memcpy_htod_async(dev.ptr, data, stream))
    api.graph_launch(graph, stream)
    api.graph_destroy(graph)
    for fn, arg in ((api.event_destroy, event), (api.stream_destroy, stream), (api.free_host, host), (api.free, dev)):
        fn(arg)
    functions = SIGNATURES["releases"][release]["functions"]
    used = {n for n in names_cuda_py_uses() if n in functions} - {"cudaGetErrorString", "cudaGetLastError"}
    assert used <= set(rt.calls), f"cuda-python {release}: not exercised: {sorted(used - set(rt.calls))}"
    assert "cudaGraphInstantiate" not in rt.calls, "cudaGraphInstantiate's signature differs between 11.x and 12+"


def test_cuda_python_11_instantiate_takes_a_log_buffer():
    """Why graphs use cudaGraphInstantiateWithFlags: (graph, 0) is a TypeError on 11.x (JetPack 5, CUDA 11.4)."""
    for release in RELEASES:
        rt = recorded_binding(release)
        old_call_fails = False
        try:
            rt.cudaGraphInstantiate(1, 0)
        except TypeError:
            old_call_fails = True
        assert old_call_fails == release.startswith("11."), f"cuda-python {release}: cudaGraphInstantiate(graph, 0)"
        assert rt.cudaGraphInstantiateWithFlags(1, 0)[0] == 0, f"cuda-python {release}: WithFlags(graph, 0)"


def test_graph_capture_turns_a_rejected_call_into_cuda_error(monkeypatch):
    rt = recorded_binding("11.8.3")
    rt.cudaGraphInstantiateWithFlags = rt.cudaGraphInstantiate  # as if the layer called the 11.x-incompatible form
    api = CudaPythonApi(0, cudart=rt)
    with pytest.raises(CudaError, match=r"cuda-python rejected the call"):
        api.graph_capture(api.stream_create(), lambda: None)


def test_failed_enqueue_ends_the_capture_and_clears_the_error():
    from edgeres.runtime import EngineError

    rt = recorded_binding("13.4.4")
    api = CudaPythonApi(0, cudart=rt)
    stream = api.stream_create()

    def enqueue():
        raise EngineError("TensorRT execute_async_v3 failed")

    with pytest.raises(CudaError, match="the enqueue failed under CUDA graph capture: TensorRT execute_async_v3"):
        api.graph_capture(stream, enqueue)
    after = rt.calls[rt.calls.index("cudaStreamBeginCapture"):]
    assert after == ["cudaStreamBeginCapture", "cudaStreamEndCapture", "cudaGraphDestroy", "cudaGetLastError"], (
        f"trtexec's endCaptureOnError order expected, got {after}")


@needs_cuda_python
def test_installed_binding_matches_the_recorded_signatures():
    """The real installed cuda-python (whatever CI installs) has the recorded signatures of its major release."""
    from importlib.metadata import PackageNotFoundError, version

    from edgeres.runtime.cuda import import_cudart

    try:
        installed = version("cuda-bindings")
    except PackageNotFoundError:
        installed = version("cuda-python")
    same_major = [r for r in RELEASES if r.split(".")[0] == installed.split(".")[0]]
    if not same_major:
        pytest.skip(f"cuda-python {installed}: no recorded release of its major version")
    record = SIGNATURES["releases"][installed if installed in same_major else same_major[-1]]
    rt = import_cudart()
    for name, spec in record["functions"].items():
        real = getattr(rt, name, None)
        assert (real is None) == (spec is None), f"{name}: presence differs in installed {installed}"
        if real is not None:
            params = [p.name for p in inspect.signature(real).parameters.values()]
            assert params == spec["params"], f"{name}: installed {installed} has {params}, recorded {spec['params']}"


def test_pyproject_cuda_extras_match_the_runtime_table():
    """pyproject's cuda11/12/13 extras and the runtime's install hint name the same ranges; [tensorrt] forces none."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    from edgeres.runtime.cuda import CUDA_PYTHON_FOR_CUDA, INSTALL_CUDA_PYTHON

    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for major, requirement in CUDA_PYTHON_FOR_CUDA.items():
        assert extras[f"cuda{major}"] == [requirement], f"extra cuda{major}: {extras.get(f'cuda{major}')}"
        assert requirement in INSTALL_CUDA_PYTHON, f"install hint lacks {requirement}"
    cuda_python = [r for r in extras["tensorrt"] if r.startswith("cuda-python")]
    assert cuda_python == ["cuda-python>=11.8"], f"[tensorrt] must accept cuda-python 11.8 (JetPack 5): {cuda_python}"
