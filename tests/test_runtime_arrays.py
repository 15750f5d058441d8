"""Recognising torch/CuPy-style tensors by protocol, without importing either library.

GPU tensors are imitated by small objects exposing the same protocols over host
memory: the parsing is what is tested here, not a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeres.runtime._arrays import DL_CPU, DL_CUDA, DeviceArray, classify_input, dlpack_view
from edgeres.runtime import EngineInputError


class CaiTensor:
    """Exposes ``__cuda_array_interface__`` v3 like CuPy/torch (over host memory here)."""

    def __init__(self, array: np.ndarray, stream: int | None = None) -> None:
        self.array = array
        self.__cuda_array_interface__ = {
            "shape": array.shape,
            "typestr": array.dtype.str,
            "data": (array.ctypes.data, False),
            "strides": None if array.flags.c_contiguous else array.strides,
            "version": 3,
            "stream": stream,
        }


class DlpackTensor:
    """Exposes only DLPack (like a torch tensor seen through the protocol), claiming ``device_type``."""

    def __init__(self, array: np.ndarray, device_type: int) -> None:
        self.array = array
        self.device_type = device_type
        self.stream_seen = "unset"

    def __dlpack_device__(self):
        return (self.device_type, 0)

    def __dlpack__(self, stream=None, **kwargs):
        self.stream_seen = stream
        return self.array.__dlpack__()


def test_numpy_passes_through_unchanged():
    x = np.zeros((2, 3), np.float32)
    assert classify_input("x", x) is x, "numpy arrays must not be copied"


def test_cuda_array_interface_becomes_device_array():
    x = np.arange(12, dtype=np.float16).reshape(3, 4)
    t = CaiTensor(x, stream=7)
    d = classify_input("x", t)
    assert isinstance(d, DeviceArray), f"expected DeviceArray, got {type(d)}"
    assert (d.ptr, d.shape, d.dtype, d.contiguous, d.stream) == (x.ctypes.data, (3, 4), np.float16, True, 7), d
    assert d.owner is t and d.nbytes == x.nbytes, "owner keeps the tensor alive; nbytes from shape x itemsize"
    strided = classify_input("x", CaiTensor(np.asfortranarray(x)))
    assert not strided.contiguous, "Fortran-ordered strides must be seen as non-contiguous"


def test_cpu_dlpack_tensor_becomes_numpy_without_copy():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = classify_input("x", DlpackTensor(x, DL_CPU))
    assert isinstance(out, np.ndarray) and np.shares_memory(out, x), "CPU DLPack must be zero-copy numpy"


def test_gpu_dlpack_capsule_is_parsed_and_gets_our_stream():
    x = np.arange(24, dtype=np.int32).reshape(2, 3, 4)[:, :, :2]  # strided view
    t = DlpackTensor(x, DL_CUDA)
    d = classify_input("x", t, consumer_stream=1234)
    assert t.stream_seen == 1234, f"the consumer stream must reach __dlpack__, got {t.stream_seen}"
    assert isinstance(d, DeviceArray) and d.protocol == "dlpack", d
    assert (d.ptr, d.shape, d.dtype) == (x.ctypes.data, (2, 3, 2), np.int32), d
    assert not d.contiguous, "strided DLPack tensor must be flagged non-contiguous"
    c = dlpack_view(np.ones((4, 5), np.float64).__dlpack__(), None)
    assert c.contiguous and c.shape == (4, 5) and c.dtype == np.float64, c


def test_unknown_objects_are_refused_clearly():
    with pytest.raises(EngineInputError, match=r"expected a numpy array, a CUDA tensor .* received object"):
        classify_input("x", object())
    with pytest.raises(EngineInputError, match="received list"):
        classify_input("x", [[1.0, 2.0]])  # lists would silently become float64: refused


def test_onnxruntime_engine_refuses_gpu_tensors(tmp_path):
    from tests._runtime_helpers import reference_onnx
    from edgeres.runtime import Engine

    with Engine(reference_onnx()) as e:
        x = np.zeros((1, 1, 28, 28), np.float32)
        for tensor, protocol in ((CaiTensor(x), "cuda_array_interface"), (DlpackTensor(x, DL_CUDA), "dlpack")):
            with pytest.raises(EngineInputError, match=f"GPU tensor but the onnxruntime backend.*{protocol}.*cpu"):
                e.infer(tensor)
        out = e.infer(DlpackTensor(x, DL_CPU))
        assert out.shape == (1, 10), "CPU DLPack tensors run on onnxruntime"


# ---- issue 14: junk from foreign objects is one EngineInputError ----------------------------------

class JunkDevice:
    """DLPack methods that return or raise junk."""

    def __init__(self, device, capsule=None, raises=None):
        self.device, self.capsule, self.raises = device, capsule, raises

    def __dlpack_device__(self):
        if self.raises is not None:
            raise self.raises
        return self.device

    def __dlpack__(self, stream=None, **kwargs):
        return self.capsule


class BadCai:
    @property
    def __cuda_array_interface__(self):
        raise RuntimeError("driver exploded")


@pytest.mark.parametrize("value", [
    JunkDevice("cuda"), JunkDevice((2,)), JunkDevice((2, 0, 0)), JunkDevice(("x", "y")), JunkDevice(None),
    JunkDevice((99, 0)), JunkDevice((2, 0), capsule="not a capsule"), JunkDevice((1, 0), capsule=object()),
    JunkDevice((2, 0), raises=ValueError("boom")), BadCai(),
])
def test_junk_devices_are_one_input_error(value):
    with pytest.raises(EngineInputError):
        classify_input("input", value)


def _capsule_for(tensor_struct):
    import ctypes

    from edgeres.runtime._arrays import _DLManagedTensor

    managed = _DLManagedTensor()
    managed.dl_tensor = tensor_struct
    new = ctypes.pythonapi.PyCapsule_New
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    return new(ctypes.addressof(managed), b"dltensor", None), managed


@pytest.mark.parametrize("ndim, bits, code, with_shape, pattern", [
    (-3, 32, 2, True, "dimensions"),
    (1000, 32, 2, True, "dimensions"),
    (2, 32, 2, False, "no shape"),
    (1, 0, 2, True, "bits"),
    (1, 12, 2, True, "bits"),
    (1, 32, 9, True, "dtype"),
])
def test_junk_dlpack_capsules_are_refused_before_they_are_read(ndim, bits, code, with_shape, pattern):
    import ctypes

    from edgeres.runtime._arrays import _DLDataType, _DLDevice, _DLTensor

    shape = (ctypes.c_int64 * 4)(2, 2, 2, 2)
    t = _DLTensor()
    t.data = None
    t.device = _DLDevice(DL_CUDA, 0)
    t.ndim = ndim
    t.dtype = _DLDataType(code, bits, 1)
    t.shape = ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64)) if with_shape else None
    capsule, keep = _capsule_for(t)
    with pytest.raises(EngineInputError, match=pattern):
        dlpack_view(capsule, None)
    assert keep is not None and shape is not None, "the structs outlive the call"
