"""Small models and fake backends shared by the bench tests (not a test module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeres.bench.backends.base import Phases


def linear_onnx(path: Path, *, qdq: bool = False, fp16: bool = False, batch: int | str = "batch", seed: int = 0) -> Path:
    """A tiny (N,1,28,28) -> (N,10) classifier; ``qdq`` inserts a QuantizeLinear/DequantizeLinear pair on the input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = rng.normal(0, 0.05, size=(784, 10)).astype(np.float16 if fp16 else np.float32)
    elem = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    nodes, inits = [], [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.array([1, 784], np.int64), "flat")]
    x = "input"
    if qdq:
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        x = "dq"
    nodes += [helper.make_node("Flatten", [x], ["f"], axis=1), helper.make_node("MatMul", ["f", "W"], ["logits"])]
    graph = helper.make_graph(
        nodes, "linear",
        [helper.make_tensor_value_info("input", elem, [batch, 1, 28, 28])],
        [helper.make_tensor_value_info("logits", elem, [batch, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


class FakeBackend:
    """A backend that does no work: records calls, returns fixed phases and a deterministic output."""

    name = "fake"

    def __init__(self, label: str = "fake", *, shape: tuple[int, int, int] = (1, 28, 28), phases: Phases | None = None,
                 batch_range: tuple[int, int] | None = None, log: list[str] | None = None, scale: float = 1.0) -> None:
        self.label = label
        self._shape = shape
        self._phases = phases
        self._range = batch_range
        self.log = log if log is not None else []
        self.slots: list[int] = []
        self.scale = scale
        self.loaded = self.closed = False
        self.batches: list[np.ndarray] = []

    def load(self) -> None:
        self.loaded = True

    def input_shape(self) -> tuple[int, int, int] | None:
        return self._shape

    def batch_range(self) -> tuple[int, int] | None:
        return self._range

    def prepare(self, batches: Sequence[np.ndarray]) -> None:
        self.batches = [b.copy() for b in batches]

    def run(self, slot: int) -> None:
        self.log.append(self.label)
        self.slots.append(slot)
        self._last = slot

    def synchronize(self) -> Phases | None:
        return self._phases

    def output(self) -> np.ndarray:
        b = self.batches[self._last]
        return (b.reshape(len(b), -1)[:, :10] * self.scale).astype(np.float32)

    def settings(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.label, "device": "cpu", "transfers_included": None,
                "phases_separated": self._phases is not None, "cuda_graphs": False, "sync": None, "host_memory": None}

    def close(self) -> None:
        self.closed = True
