"""edgeres.trt._cuda on a machine without CUDA bindings (the GPU paths need a GPU and are not run here)."""

from __future__ import annotations

import importlib.util

import pytest

from edgeres.errors import TensorRTUnavailableError
from edgeres.trt import _cuda


def test_default_allocator_without_bindings_says_what_to_install(monkeypatch):
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda", "pycuda.autoinit", "pycuda.driver"):
        monkeypatch.setitem(__import__("sys").modules, name, None)  # as if not installed
    with pytest.raises(TensorRTUnavailableError) as info:
        _cuda.default_allocator()
    msg = str(info.value)
    assert "CudaPythonAllocator" in msg and "PyCudaAllocator" in msg and "pip install cuda-python" in msg, f"message: {msg}"


def test_check_reports_cuda_error():
    class Err:  # what cuda-python returns: an enum with .value
        value = 2

        def __repr__(self):
            return "<cudaError_t.cudaErrorMemoryAllocation: 2>"

    with pytest.raises(TensorRTUnavailableError, match="cudaMalloc failed with <cudaError_t.cudaErrorMemoryAllocation: 2>"):
        _cuda._check((Err(), 0), "cudaMalloc")
    assert _cuda._check((0, 1234), "cudaMalloc") == 1234, "success returns the value"


def test_local_device_none_without_gpu(monkeypatch):
    monkeypatch.setattr(_cuda, "_DEVICE_QUERIES", (_cuda._device_from_cuda_python,))
    if importlib.util.find_spec("cuda") is not None:
        pytest.skip("cuda-python is installed here; this checks the machine without it")
    assert _cuda.local_device() is None, "no cuda-python and no GPU: local_device() must be None"
