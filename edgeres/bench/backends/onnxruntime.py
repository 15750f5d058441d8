"""onnxruntime backend: any edgeres ONNX model (FP32, FP16, Q/DQ INT8) on CPU, CUDA or TensorRT EP.

``session.run`` is timed as an application calls it: host numpy in, host
numpy out, so on the CUDA and TensorRT execution providers the copies happen
inside onnxruntime and are part of end-to-end latency; they cannot be timed
separately there (H2D/compute/D2H are reported as n/a). The CUDA and
TensorRT execution-provider paths are not verified on a GPU.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from edgeres.bench.backends.base import BackendOptions, Phases, check_batches
from edgeres.errors import BenchError

# option value -> (execution providers in priority order, pip package that provides them)
PROVIDERS: dict[str, tuple[tuple[str, ...], str]] = {
    "cpu": (("CPUExecutionProvider",), "onnxruntime"),
    "cuda": (("CUDAExecutionProvider", "CPUExecutionProvider"), "onnxruntime-gpu"),
    "tensorrt": (("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"), "onnxruntime-gpu"),
}

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def import_onnxruntime() -> Any:
    """onnxruntime, or a BenchError naming the package to install."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise BenchError(
            f"the onnxruntime backend needs onnxruntime, which is not installed ({exc}); "
            "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA/TensorRT)"
        ) from None
    return onnxruntime


class OnnxRuntimeBackend:
    """One ``InferenceSession`` on the chosen execution provider."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str], options: BackendOptions = BackendOptions()) -> None:
        if options.provider not in PROVIDERS:
            raise BenchError(f"onnxruntime provider must be one of {sorted(PROVIDERS)}, received {options.provider!r}")
        self.path = os.fspath(path)
        self.options = options
        self._session: Any = None
        self._host: list[np.ndarray] = []
        self._out: np.ndarray | None = None
        self._static_batch: int | None = None
        self._shape: tuple[int, int, int] | None = None
        self._read_io()

    def _read_io(self) -> None:
        """Input shape and batch axis from the ONNX graph, without loading the weights."""
        import onnx

        try:
            proto = onnx.load(self.path, load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - onnx raises several unrelated types
            raise BenchError(f"{self.path} is not a readable ONNX model: {exc}") from None
        inits = {i.name for i in proto.graph.initializer}
        inputs = [i for i in proto.graph.input if i.name not in inits]
        if len(inputs) != 1:
            raise BenchError(f"expected an ONNX model with one input (NCHW image batch), {self.path} has {len(inputs)}")
        dims = inputs[0].type.tensor_type.shape.dim
        if len(dims) != 4:
            raise BenchError(f"expected a 4-D NCHW input, {self.path} has {len(dims)} dimensions")
        self._static_batch = dims[0].dim_value or None
        ops = {n.op_type for n in proto.graph.node}
        half = onnx.TensorProto.FLOAT16
        if ops & {"QuantizeLinear", "DequantizeLinear"}:
            self._precision = "int8-qdq"
        elif inputs[0].type.tensor_type.elem_type == half or any(t.data_type == half for t in proto.graph.initializer):
            self._precision = "fp16"
        else:
            self._precision = "fp32"
        if all(d.dim_value for d in dims[1:]):
            self._shape = (dims[1].dim_value, dims[2].dim_value, dims[3].dim_value)

    def input_shape(self) -> tuple[int, int, int] | None:
        return self._shape

    def batch_range(self) -> tuple[int, int] | None:
        return None if self._static_batch is None else (self._static_batch, self._static_batch)

    def load(self) -> None:
        ort = import_onnxruntime()
        wanted, package = PROVIDERS[self.options.provider]
        available = ort.get_available_providers()
        if wanted[0] not in available:
            raise BenchError(
                f"onnxruntime has no {wanted[0]} here (available: {', '.join(available)}); "
                f"pip install {package} (and a matching CUDA/TensorRT) or use --provider cpu"
            )
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.options.threads is not None:
            opts.intra_op_num_threads = self.options.threads
        # A spinning pool keeps its cores busy after run() returns, slowing whichever side of an
        # alternated A/B pair runs next (measured: torch 14.6 -> 20.9 ms after an onnxruntime round).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [p for p in wanted if p in available]
        try:
            self._session = ort.InferenceSession(self.path, opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise BenchError(f"onnxruntime cannot load {self.path}: {exc}") from None
        inp = self._session.get_inputs()[0]
        if inp.type not in _ORT_DTYPES:
            raise BenchError(f"expected a float32 or float16 model input, {self.path} takes {inp.type}")
        self._input_name = inp.name
        self._dtype = _ORT_DTYPES[inp.type]
        self._output_name = self._session.get_outputs()[0].name

    def prepare(self, batches: Sequence[np.ndarray]) -> None:
        check_batches(batches)
        self._host = [np.ascontiguousarray(b, dtype=self._dtype) for b in batches]

    def run(self, slot: int) -> None:
        (self._out,) = self._session.run([self._output_name], {self._input_name: self._host[slot]})

    def synchronize(self) -> Phases | None:
        return None  # session.run returns when the outputs are on the host

    def output(self) -> np.ndarray:
        if self._out is None:
            raise BenchError("no output yet: run() the backend first")
        return np.asarray(self._out, dtype=np.float32)

    def settings(self) -> dict[str, Any]:
        on_gpu = self.options.provider != "cpu"
        providers = self._session.get_providers() if self._session is not None else list(PROVIDERS[self.options.provider][0])
        return {
            "backend": self.name,
            "model": self.path,
            "device": "cuda" if on_gpu else "cpu",
            "precision": self._precision,
            "execution_providers": providers,
            "input_dtype": np.dtype(getattr(self, "_dtype", np.float32)).name,
            "threads": self.options.threads,
            "thread_pool_spinning": False,
            "transfers_included": True if on_gpu else None,
            "phases_separated": False,
            "cuda_graphs": False,
            "sync": "session.run (blocking)",
            "host_memory": "pageable (numpy)" if on_gpu else None,
        }

    def close(self) -> None:
        self._session = None
        self._host = []
