"""Seeing inputs without importing their libraries: numpy, ``__cuda_array_interface__``, DLPack.

torch and CuPy tensors are recognised by the protocols they implement, so the
runtime never imports either. A host tensor becomes a numpy array (zero-copy
through DLPack where possible); a GPU tensor becomes a :class:`DeviceArray`
(pointer, shape, dtype) that the TensorRT backend binds without copying.
"""

from __future__ import annotations

import ctypes
import dataclasses
from typing import Any

import numpy as np

from edgeres.runtime._errors import EngineInputError

# DLPack device types (dlpack.h, DLDeviceType)
DL_CPU = 1
DL_CUDA = 2
DL_CUDA_HOST = 3
DL_CUDA_MANAGED = 13
_DL_GPU = {DL_CUDA: "cuda", DL_CUDA_MANAGED: "cuda_managed"}

# DLPack dtype codes (DLDataTypeCode) -> numpy kind letter, and the bit widths numpy has for each
_DL_KIND = {0: "i", 1: "u", 2: "f", 6: "b"}
_DL_BITS = {0: (8, 16, 32, 64), 1: (8, 16, 32, 64), 2: (16, 32, 64), 6: (8,)}
MAX_NDIM = 32  # numpy's limit (NPY_MAXDIMS) before 2.0


@dataclasses.dataclass(frozen=True)
class DeviceArray:
    """A GPU tensor seen through a protocol; not owned (``owner`` keeps it alive).

    Attributes:
        ptr: device address of element 0 (byte offset already applied).
        shape: tensor shape.
        dtype: numpy dtype of the elements.
        contiguous: C-contiguous (strides absent or equal to the packed strides).
        device_id: CUDA device ordinal (-1: not stated, as with ``__cuda_array_interface__``).
        stream: producer stream handle from ``__cuda_array_interface__`` v3 (None: none given).
        owner: the object (and DLPack capsule) that must outlive any use of ``ptr``.
        protocol: ``"cuda_array_interface"`` or ``"dlpack"``.
    """

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    contiguous: bool
    device_id: int
    stream: int | None
    owner: Any
    protocol: str

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def packed_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Byte strides of a C-contiguous array of ``shape``."""
    strides = []
    step = itemsize
    for dim in reversed(shape):
        strides.append(step)
        step *= max(int(dim), 1)
    return tuple(reversed(strides))


def _is_packed(shape: tuple[int, ...], strides: tuple[int, ...] | None, itemsize: int) -> bool:
    if strides is None:
        return True
    # size-1 axes may carry any stride without breaking contiguity
    expected = packed_strides(shape, itemsize)
    return all(d == 1 or s == e for d, s, e in zip(shape, strides, expected))


def device_array_from_cai(obj: Any) -> DeviceArray:
    """A :class:`DeviceArray` from an object's ``__cuda_array_interface__`` (v2 or v3)."""
    cai = obj.__cuda_array_interface__
    try:
        ptr = int(cai["data"][0])
        shape = tuple(int(d) for d in cai["shape"])
        dtype = np.dtype(cai["typestr"])
        strides = cai.get("strides")
        strides = None if strides is None else tuple(int(s) for s in strides)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        raise EngineInputError(f"malformed __cuda_array_interface__ on {type(obj).__name__}: {exc}") from exc
    if not isinstance(cai, dict):
        raise EngineInputError(f"malformed __cuda_array_interface__ on {type(obj).__name__}: expected a dict")
    if cai.get("mask") is not None:
        raise EngineInputError("masked __cuda_array_interface__ arrays are not supported; received a mask")
    stream = cai.get("stream")
    return DeviceArray(
        ptr=ptr,
        shape=shape,
        dtype=dtype,
        contiguous=_is_packed(shape, strides, dtype.itemsize),
        device_id=-1,  # the interface does not name the device
        stream=None if stream is None else int(stream),
        owner=obj,
        protocol="cuda_array_interface",
    )


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


def _capsule_pointer(capsule: Any, name: bytes) -> int:
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    valid = ctypes.pythonapi.PyCapsule_IsValid
    valid.restype = ctypes.c_int
    valid.argtypes = [ctypes.py_object, ctypes.c_char_p]
    if not valid(capsule, name):
        raise EngineInputError(f"expected a DLPack capsule named {name.decode()!r}; received an unusable capsule")
    return int(get(capsule, name))


def dlpack_view(capsule: Any, owner: Any) -> DeviceArray:
    """Read a legacy ``"dltensor"`` capsule without consuming it.

    The capsule is not renamed, so its own destructor releases the tensor once
    ``owner``/the capsule are dropped; keep the returned object alive while
    the pointer is in use.
    """
    pointer = _capsule_pointer(capsule, b"dltensor")
    if not pointer:
        raise EngineInputError("expected a DLPack capsule holding a tensor; received a NULL DLManagedTensor")
    managed = _DLManagedTensor.from_address(pointer)
    t = managed.dl_tensor
    if not 0 <= t.ndim <= MAX_NDIM or (t.ndim and not t.shape):
        raise EngineInputError(f"expected a DLPack tensor of 0..{MAX_NDIM} dimensions with a shape, received ndim "
                               f"{t.ndim}{' and no shape' if t.ndim > 0 and not t.shape else ''}")
    if t.dtype.bits not in _DL_BITS.get(t.dtype.code, ()):
        raise EngineInputError(f"expected a DLPack dtype of 8/16/32/64 bits (bool: 8), received code {t.dtype.code} "
                               f"with {t.dtype.bits} bits")
    if t.dtype.lanes != 1 or t.dtype.code not in _DL_KIND:
        raise EngineInputError(
            f"expected a DLPack tensor of int/uint/float/bool scalars, received dtype code {t.dtype.code} "
            f"with {t.dtype.lanes} lanes"
        )
    dtype = np.dtype(f"{_DL_KIND[t.dtype.code]}{t.dtype.bits // 8}") if t.dtype.code != 6 else np.dtype(bool)
    shape = tuple(int(t.shape[i]) for i in range(t.ndim))
    if any(d < 0 for d in shape):
        raise EngineInputError(f"expected a DLPack tensor of non-negative dimensions, received shape {shape}")
    strides = None if not t.strides else tuple(int(t.strides[i]) * dtype.itemsize for i in range(t.ndim))
    return DeviceArray(
        ptr=int(t.data or 0) + int(t.byte_offset),
        shape=shape,
        dtype=dtype,
        contiguous=_is_packed(shape, strides, dtype.itemsize),
        device_id=int(t.device.device_id),
        stream=None,
        owner=(owner, capsule),
        protocol="dlpack",
    )


def dlpack_device(obj: Any) -> tuple[int, int] | None:
    """``obj.__dlpack_device__()`` as ints, or None if ``obj`` speaks no DLPack.

    Raises:
        EngineInputError: the method does not return a (device type, device id) pair of integers.
    """
    if not hasattr(obj, "__dlpack__") or not hasattr(obj, "__dlpack_device__"):
        return None
    device = obj.__dlpack_device__()
    if not (isinstance(device, tuple) and len(device) == 2
            and all(isinstance(x, int) or type(x).__name__.startswith(("int", "uint")) for x in device)):
        shown = repr(device)[:60]
        raise EngineInputError(f"{type(obj).__name__}.__dlpack_device__() returned {shown}; expected a "
                               "(device type, device id) pair of integers")
    dev_type, dev_id = (int(x) for x in device)
    return dev_type, dev_id


def classify_input(name: str, value: Any, *, consumer_stream: int | None = None) -> np.ndarray | DeviceArray:
    """A numpy array (host data) or a :class:`DeviceArray` (GPU data) for ``value``.

    Order: numpy arrays; ``__cuda_array_interface__`` (GPU); DLPack (CPU tensors
    become numpy without copying, GPU tensors a :class:`DeviceArray`); anything
    with ``__array__``. ``consumer_stream`` is passed to ``__dlpack__(stream=)``
    so the producer orders its work before ours.
    """
    if isinstance(value, np.ndarray):
        return value
    try:
        return _classify_foreign(name, value, consumer_stream)
    except EngineInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a foreign object's protocol methods may raise anything
        raise EngineInputError(f"input {name!r}: reading the {type(value).__name__} failed "
                               f"({type(exc).__name__}: {str(exc)[:120]}); expected a numpy array or a CPU/CUDA "
                               "tensor") from exc


def _classify_foreign(name: str, value: Any, consumer_stream: int | None) -> np.ndarray | DeviceArray:
    if hasattr(value, "__cuda_array_interface__"):
        return device_array_from_cai(value)
    device = dlpack_device(value)
    if device is not None:
        dev_type, _ = device
        if dev_type in (DL_CPU, DL_CUDA_HOST):
            try:
                return np.from_dlpack(value)
            except (BufferError, TypeError, RuntimeError) as exc:
                raise EngineInputError(f"input {name!r}: cannot read the host DLPack tensor: {exc}") from exc
        if dev_type in _DL_GPU:
            kwargs = {} if consumer_stream is None else {"stream": consumer_stream}
            return dlpack_view(value.__dlpack__(**kwargs), value)
        raise EngineInputError(
            f"input {name!r}: expected a CPU or CUDA tensor, received a DLPack tensor on device type {dev_type}"
        )
    if hasattr(value, "__array__"):
        return np.asarray(value)
    raise EngineInputError(
        f"input {name!r}: expected a numpy array, a CUDA tensor (__cuda_array_interface__ or DLPack) "
        f"or a dict of them, received {type(value).__name__}"
    )
