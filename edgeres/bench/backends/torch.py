"""PyTorch backend: the FP32 reference (eager), FP16, channels-last, ``torch.compile``, CUDA graphs.

On CPU one iteration is ``model(x)`` under ``torch.inference_mode``. On CUDA
one iteration is what an application does with a host batch: copy it into a
static device buffer (pinned or pageable host memory), run the model (or
replay a captured CUDA graph), copy the logits back to a host buffer; CUDA
events around each step give H2D, compute and D2H device times, and the
host wall clock around run+synchronize gives end-to-end latency. The CUDA
paths (events, pinned memory, graph capture, spin vs blocking sync) are NOT
verified on a GPU: this machine has none, and the tests skip them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgeres.bench.backends.base import BackendOptions, Phases, check_batches
from edgeres.errors import BenchError

WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors")


def import_torch() -> Any:
    """torch, or a BenchError naming the package to install."""
    try:
        import torch
    except ImportError as exc:
        raise BenchError(f"the torch backend needs PyTorch, which is not installed ({exc}); pip install torch") from None
    return torch


class TorchBackend:
    """A folded eval-mode ResNet on CPU or CUDA.

    Args:
        source: an architecture name (``resnet18``, random weights seeded 0),
            a weights file (``.pt``/``.pth``/``.safetensors``; ``options.arch``
            or the weights name the architecture), or a callable returning a module.
        options: device, precision, channels-last, compile, CUDA graphs, sync, pinned memory.
        input_shape: (C, H, W); taken from the architecture's recipe when omitted.
    """

    name = "torch"

    def __init__(
        self,
        source: str | os.PathLike[str] | Callable[[], Any],
        options: BackendOptions = BackendOptions(),
        input_shape: tuple[int, int, int] | None = None,
    ) -> None:
        if options.device not in ("cpu", "cuda"):
            raise BenchError(f"torch device must be cpu or cuda, received {options.device!r}")
        if options.precision not in ("fp32", "fp16"):
            raise BenchError(f"torch precision must be fp32 or fp16, received {options.precision!r}")
        if options.precision == "fp16" and options.device == "cpu":
            raise BenchError("torch fp16 needs --device cuda (CPU half-precision convolutions are not a deployment target)")
        if options.cuda_graphs and options.device != "cuda":
            raise BenchError("CUDA graphs need --device cuda")
        if options.sync not in ("blocking", "spin"):
            raise BenchError(f"sync must be blocking or spin, received {options.sync!r}")
        self.source = source
        self.options = options
        self._shape = input_shape
        self._model: Any = None
        self._out: Any = None

    @property
    def model_label(self) -> str:
        return self.source if isinstance(self.source, str) else getattr(self.source, "__name__", "module")

    def input_shape(self) -> tuple[int, int, int] | None:
        return self._shape

    def batch_range(self) -> tuple[int, int] | None:
        return None

    def _build(self) -> Any:
        torch = import_torch()
        from edgeres.fold import fold_batchnorm
        from edgeres.models import recipe_for
        from edgeres.weights import guess_architecture, model_from_weights, read_state_dict

        if callable(self.source):
            model = self.source()
        elif Path(self.source).suffix.lower() in WEIGHT_SUFFIXES:
            arch = self.options.arch or guess_architecture(read_state_dict(self.source))
            if arch is None:
                raise BenchError(f"cannot tell the architecture of {self.source}; pass --arch")
            model = model_from_weights(arch, self.source)
            self._arch = arch
        else:
            torch.manual_seed(0)
            model = model_from_weights(str(self.source))
            self._arch = str(self.source)
        model = model.eval()
        if self._shape is None:
            arch = getattr(self, "_arch", None)
            if arch is None:
                raise BenchError("a torch module given as a callable needs input_shape=(C, H, W)")
            recipe = recipe_for(arch, in_channels=model.conv1.in_channels)
            self._shape = recipe.input_shape
        example = torch.zeros(2, *self._shape).normal_()
        return fold_batchnorm(model, example)

    def load(self) -> None:
        torch = import_torch()
        if self.options.device == "cuda" and not torch.cuda.is_available():
            raise BenchError("torch --device cuda needs a CUDA GPU and a CUDA build of PyTorch; none is available here")
        if self.options.threads is not None:
            torch.set_num_threads(self.options.threads)
        model = self._build()
        self._device = torch.device(self.options.device)
        self._dtype = torch.float16 if self.options.precision == "fp16" else torch.float32
        self._memory_format = torch.channels_last if self.options.channels_last else torch.contiguous_format
        model = model.to(device=self._device, dtype=self._dtype, memory_format=self._memory_format)
        if self.options.compile:
            model = torch.compile(model)
        self._model = model
        if self.options.device == "cuda":
            blocking = self.options.sync == "blocking"
            self._events = [torch.cuda.Event(enable_timing=True, blocking=blocking) for _ in range(4)]

    def prepare(self, batches: Sequence[np.ndarray]) -> None:
        torch = import_torch()
        shape = check_batches(batches)
        cuda = self.options.device == "cuda"
        self._host = []
        for b in batches:
            t = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))
            if cuda:
                t = t.to(self._dtype)
                t = t.pin_memory() if self.options.pinned else t.clone()
            self._host.append(t)
        self._graph = None
        if not cuda:
            with torch.inference_mode():
                self._out = self._model(self._host[0].contiguous(memory_format=self._memory_format))
            return
        # Static device buffers: the copy into a channels-last buffer does the layout change.
        self._dev_in = torch.empty(shape, device=self._device, dtype=self._dtype).contiguous(memory_format=self._memory_format)
        with torch.inference_mode():
            self._dev_in.copy_(self._host[0])
            probe = self._model(self._dev_in)
        self._host_out = torch.empty(probe.shape, dtype=probe.dtype, pin_memory=self.options.pinned)
        if self.options.cuda_graphs:
            self._graph = self._capture_graph(torch)
        torch.cuda.synchronize()

    def _capture_graph(self, torch: Any) -> Any:
        """Warm up on a side stream, then capture one forward pass into a CUDA graph."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):
                self._model(self._dev_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            self._graph_out = self._model(self._dev_in)
        return graph

    def run(self, slot: int) -> None:
        torch = import_torch()
        if self.options.device == "cpu":
            with torch.inference_mode():
                self._out = self._model(self._host[slot].contiguous(memory_format=self._memory_format))
            return
        start, h2d, compute, end = self._events
        with torch.inference_mode():
            start.record()
            self._dev_in.copy_(self._host[slot], non_blocking=True)
            h2d.record()
            if self._graph is not None:
                self._graph.replay()
                out = self._graph_out
            else:
                out = self._model(self._dev_in)
            compute.record()
            self._host_out.copy_(out, non_blocking=True)
            end.record()
        self._out = self._host_out

    def synchronize(self) -> Phases | None:
        if self.options.device == "cpu":
            return None
        start, h2d, compute, end = self._events
        if self.options.sync == "spin":
            while not end.query():
                pass
        else:
            end.synchronize()
        return Phases(
            h2d_ms=start.elapsed_time(h2d),
            compute_ms=h2d.elapsed_time(compute),
            d2h_ms=compute.elapsed_time(end),
        )

    def output(self) -> np.ndarray:
        if self._out is None:
            raise BenchError("no output yet: run() the backend first")
        return self._out.detach().float().cpu().numpy()

    def settings(self) -> dict[str, Any]:
        cuda = self.options.device == "cuda"
        return {
            "backend": self.name,
            "model": str(self.model_label),
            "device": self.options.device,
            "precision": self.options.precision,
            "channels_last": self.options.channels_last,
            "mode": "torch.compile" if self.options.compile else "eager",
            "bn_folded": True,
            "threads": self.options.threads,
            "transfers_included": True if cuda else None,
            "phases_separated": cuda,
            "cuda_graphs": self.options.cuda_graphs,
            "sync": self.options.sync if cuda else None,
            "host_memory": ("pinned" if self.options.pinned else "pageable") if cuda else None,
        }

    def close(self) -> None:
        self._model = None
        self._graph = None
        self._host = []
