"""``edgeres serve``: a real Triton Inference Server in front of :class:`edgeres.runtime.Engine`.

NVIDIA's PyTriton (``nvidia-pytriton``) ships the ``tritonserver`` binary and
a Python-backend stub; the stub forwards each (dynamically batched) request to
a Python callable in this process over a socket. That callable is
:meth:`ModelServer.infer_requests`: it concatenates the batched requests, runs
``Engine.infer`` once (a TensorRT plan where TensorRT is installed, else the
ONNX on onnxruntime) and splits the outputs back per request. Triton itself
checks every request against the model config it was given (names, dtypes,
dims, ``max_batch_size``) and answers a bad request with its own error, so a
bad request never reaches the engine and the server keeps serving.

Steps, one function each: ``engine_for_serving`` (open the engine) ->
``serving_spec_from_engine`` (the Triton model: tensors, batch limits,
preferred batch sizes, metadata) -> ``ModelServer.start`` (Triton up, model
bound, ready) -> ``ModelServer.stop``.

The Python-backend stub links the *system* ``libpython3.X.so``. Where the
interpreter is not the system one (pyenv, conda, a venv over either) the stub
would load a different libpython than the one PyTriton's modules were
imported with and fail (``'_thread.RLock' object has no attribute
'_recursion_count'``). :func:`server_environment` puts the running
interpreter's own ``sysconfig`` ``LIBDIR`` first on ``LD_LIBRARY_PATH`` for
the server process: PyTriton copies ``os.environ`` when it spawns
``tritonserver`` (``pytriton/server/triton_server.py``, ``TritonServer._get_env``,
0.7.0), and the stub inherits that environment, so setting it around
``Triton.run()`` is enough and this process needs no re-exec (its own loader
already has the right libpython).

Verified here: PyTriton 0.7.0 (Triton 2.51.0) on a CPU-only x86_64 machine,
onnxruntime backend. Not verified: a TensorRT plan behind the server (no GPU
was available), the aarch64 wheel on a Jetson.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
import signal
import socket
import sysconfig
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from edgeres.deploy.facts import preferred_batch_sizes
from edgeres.errors import ServeError

INSTALL_HINT = (
    "edgeres serve needs NVIDIA PyTriton and the Triton client: pip install 'edgeres[serve]' "
    "(or pip install nvidia-pytriton 'tritonclient[http,grpc]'); wheels exist for x86_64 and "
    "aarch64 Linux with glibc 2.35+ (Ubuntu 22.04+, JetPack 6+), see docs/serving.md"
)
DEFAULT_MODEL_NAME = "edgeres"
DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}  # Triton's own defaults
DEFAULT_QUEUE_DELAY_US = 100
METADATA_PREFIX = "edgeres_"
# Triton endpoints PyTriton can put behind an access token; edgeres protects those that change the
# server (model load/unload, shared memory, trace/log settings) and leaves read-only statistics open,
# as Prometheus metrics are (pytriton/triton.py VALID_TRITON_ENDPOINTS, 0.7.0).
PROTECTED_ENDPOINTS = ("model-repository", "shared-memory", "trace", "logging")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

LOG = logging.getLogger(__name__)


# ---- availability and environment ---------------------------------------------------------------

def pytriton_available() -> bool:
    """True where ``pytriton`` can be imported (says nothing about ports or the stub)."""
    try:
        return importlib.util.find_spec("pytriton") is not None
    except (ImportError, ValueError):
        return False


def require_pytriton() -> None:
    """Raise :class:`ServeError` with install instructions unless PyTriton imports."""
    if not pytriton_available():
        raise ServeError(INSTALL_HINT)


def interpreter_libdir() -> str | None:
    """The running interpreter's ``libpython`` folder (``sysconfig`` LIBDIR), or None if unknown."""
    libdir = sysconfig.get_config_var("LIBDIR")
    return str(libdir) if libdir and Path(libdir).is_dir() else None


def server_environment(environ: Mapping[str, str], libdir: str | None) -> dict[str, str]:
    """``environ`` with ``libdir`` first on ``LD_LIBRARY_PATH`` (once), for the tritonserver process."""
    env = dict(environ)
    if not libdir:
        return env
    parts = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != libdir]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *parts])
    return env


@contextlib.contextmanager
def server_process_environment() -> Iterator[None]:
    """Set :func:`server_environment` in ``os.environ`` while PyTriton spawns tritonserver, then restore."""
    before = os.environ.get("LD_LIBRARY_PATH")
    os.environ.update(server_environment(os.environ, interpreter_libdir()))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = before


# ---- what to serve ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """How to serve one engine.

    Attributes:
        model_name: Triton model name (URL ``/v2/models/<name>``).
        address: interface every endpoint binds to; ``0.0.0.0`` to serve other machines.
        http_port, grpc_port, metrics_port: Triton's HTTP/REST, gRPC and Prometheus ports.
        max_batch: Triton ``max_batch_size``; None: the engine's maximum batch.
        max_queue_delay_us: how long the dynamic batcher waits to fill a batch.
        instances: model instances (each runs ``Engine.infer`` on its own thread).
        prefer: bundle model choice (``auto``, ``plan``, ``onnx``, ``qdq``; see ``open_engine``).
        verbose: show tritonserver's own log.
    """

    model_name: str = DEFAULT_MODEL_NAME
    address: str = DEFAULT_ADDRESS
    http_port: int = DEFAULT_PORTS["http"]
    grpc_port: int = DEFAULT_PORTS["grpc"]
    metrics_port: int = DEFAULT_PORTS["metrics"]
    max_batch: int | None = None
    max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    instances: int = 1
    prefer: str = "auto"
    verbose: bool = False

    def check(self) -> None:
        """Refuse options Triton would refuse later, with the reason now."""
        ports = {"http": self.http_port, "grpc": self.grpc_port, "metrics": self.metrics_port}
        for name, port in ports.items():
            if not 1 <= int(port) <= 65535:
                raise ServeError(f"--{name}-port must be in 1..65535, received {port}")
        if len(set(ports.values())) != len(ports):
            raise ServeError(f"HTTP, gRPC and metrics ports must differ, received {ports}")
        if self.instances < 1:
            raise ServeError(f"--instances must be >= 1, received {self.instances}")
        if self.max_queue_delay_us < 0:
            raise ServeError(f"--max-queue-delay-us must be >= 0, received {self.max_queue_delay_us}")
        if self.max_batch is not None and self.max_batch < 1:
            raise ServeError(f"--max-batch must be >= 1, received {self.max_batch}")


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One Triton tensor: name, numpy dtype and the dims of one sample (no batch axis)."""

    name: str
    dtype: np.dtype
    dims: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ServingSpec:
    """The Triton model edgeres binds for an engine."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch: int
    preferred_batch_sizes: tuple[int, ...]
    metadata: Mapping[str, str]


def engine_for_serving(source: str | os.PathLike[str], prefer: str = "auto") -> Any:
    """Open the :class:`~edgeres.runtime.Engine` for a bundle folder or a model file."""
    from edgeres.runtime import open_engine

    path = Path(source)
    if not path.exists():
        raise ServeError(f"{path} does not exist; expected a bundle folder (edgeres build) or a .plan/.onnx file")
    return open_engine(path, prefer=prefer)


def serving_spec_from_engine(engine: Any, max_batch: int | None = None) -> ServingSpec:
    """The Triton model for ``engine``: its tensors, a batch limit inside its profile, its recipe.

    Raises:
        ServeError: the engine has a fixed batch, a minimum batch above 1 (Triton sends batches
            of one), no known maximum and no ``max_batch``, or ``max_batch`` beyond the engine's.
    """
    first = engine.inputs[0]
    if not first.shape or first.shape[0] >= 0:
        raise ServeError(
            f"{engine.path}: input {first.name!r} has a fixed batch {first.shape}; Triton batching needs a "
            "dynamic batch axis (export with --dynamic-batch, the default of edgeres build)"
        )
    if engine.min_batch > 1:
        raise ServeError(
            f"{engine.path}: the engine's smallest batch is {engine.min_batch}, but Triton sends single "
            "requests of batch 1; rebuild with a profile starting at 1"
        )
    limit = engine.max_batch
    if max_batch is None:
        if limit is None:
            raise ServeError(f"{engine.path} has no maximum batch (no bundle manifest beside it); pass --max-batch")
        max_batch = int(limit)
    elif limit is not None and max_batch > limit:
        raise ServeError(
            f"--max-batch {max_batch} is beyond the engine's profile ({engine.min_batch}..{limit}); "
            f"pass --max-batch {limit} or less, or rebuild with edgeres build --max-batch {max_batch}"
        )

    def specs(tensors: Sequence[Any], kind: str) -> tuple[TensorSpec, ...]:
        out = []
        for t in tensors:
            if any(d < 0 for d in t.shape[1:]):
                raise ServeError(f"{kind} {t.name!r} has dynamic non-batch dims {t.shape}; edgeres serves fixed sample shapes")
            out.append(TensorSpec(t.name, np.dtype(t.dtype), tuple(int(d) for d in t.shape[1:])))
        return tuple(out)

    metadata = {
        "backend": str(engine.backend),
        "model_file": Path(engine.path).name,
        "min_batch": str(engine.min_batch),
        "opt_batch": str(engine.opt_batch),
        "max_batch": str(max_batch),
        "recipe": json.dumps(engine.recipe.to_dict(), sort_keys=True) if engine.recipe is not None else "null",
    }
    return ServingSpec(
        inputs=specs(engine.inputs, "input"), outputs=specs(engine.outputs, "output"), max_batch=max_batch,
        preferred_batch_sizes=preferred_batch_sizes(min(engine.opt_batch, max_batch), max_batch),
        metadata={METADATA_PREFIX + k: v for k, v in metadata.items()},
    )


# ---- request handling (pure numpy, testable without a server) -----------------------------------

def infer_batched(engine: Any, requests: Sequence[Mapping[str, np.ndarray]], input_names: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """Run the requests Triton batched together as one ``Engine.infer`` and split the outputs back.

    Each request holds a batch of its own (axis 0); the outputs keep that order.
    """
    sizes = [int(r[input_names[0]].shape[0]) for r in requests]
    if len(requests) == 1:
        feeds = {name: np.asarray(requests[0][name]) for name in input_names}
    else:
        feeds = {name: np.concatenate([np.asarray(r[name]) for r in requests]) for name in input_names}
    outputs = engine.infer(feeds)
    bounds = np.cumsum([0, *sizes])
    return [{k: v[bounds[i]:bounds[i + 1]] for k, v in outputs.items()} for i in range(len(requests))]


# ---- the server ---------------------------------------------------------------------------------

class ModelServer:
    """A Triton Inference Server (through PyTriton) serving one engine.

        with ModelServer("bundle/", ServeOptions(http_port=8000)) as server:
            server.wait()        # until SIGINT/SIGTERM or server.stop()

    ``start()`` returns once the model is ready; ``stop()`` is idempotent.
    """

    def __init__(self, source: str | os.PathLike[str] | Any, options: ServeOptions | None = None) -> None:
        self.options = options or ServeOptions()
        self.options.check()
        require_pytriton()
        self._owns_engine = isinstance(source, (str, os.PathLike))
        self.engine = engine_for_serving(source, self.options.prefer) if self._owns_engine else source
        try:
            self.spec = serving_spec_from_engine(self.engine, self.options.max_batch)
        except BaseException:
            self._close_engine()
            raise
        self._triton: Any = None
        self._pending: Any = None
        self._workspace: tempfile.TemporaryDirectory[str] | None = None
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    # ---- endpoints
    @property
    def http_url(self) -> str:
        return f"{self._client_host()}:{self.options.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self._client_host()}:{self.options.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host()}:{self.options.metrics_port}/metrics"

    def _client_host(self) -> str:
        return "127.0.0.1" if self.options.address in ("0.0.0.0", "") else self.options.address

    @property
    def running(self) -> bool:
        return self._triton is not None and bool(self._triton.is_alive())

    # ---- lifecycle
    def start(self) -> "ModelServer":
        """Start tritonserver, bind the model with dynamic batching, return once it is ready."""
        with self._lock:
            if self._triton is not None:
                return self
            self._stop_event.clear()
            check_ports_free(self.options.address, self.options)
            try:
                self._triton = self._start_triton()
            except ServeError:
                self._cleanup()
                raise
            except Exception as exc:  # PyTriton and tritonserver raise their own types
                logs = self._server_log_tail()
                self._cleanup()
                raise ServeError(
                    f"Triton did not come up on {self.options.address} (ports http {self.options.http_port}, "
                    f"grpc {self.options.grpc_port}, metrics {self.options.metrics_port}): "
                    f"{type(exc).__name__}: {exc}{logs}"
                ) from exc
        return self

    def _start_triton(self) -> Any:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

        o, spec = self.options, self.spec
        self._workspace = tempfile.TemporaryDirectory(prefix="edgeres-serve-")
        config = TritonConfig(
            http_address=o.address, grpc_address=o.address, metrics_address=o.address,
            http_port=o.http_port, grpc_port=o.grpc_port, metrics_port=o.metrics_port,
            allow_metrics=True, exit_timeout_secs=5, log_verbose=1 if o.verbose else 0,
            # quiet by default: tritonserver's log goes to a file (its tail is shown if start-up fails)
            log_file=None if o.verbose else self._log_path(),
        )
        triton = Triton(
            config=config, workspace=Path(self._workspace.name) / "pytriton",
            security_config=TritonSecurityConfig(restricted_endpoints=list(PROTECTED_ENDPOINTS)),
        )
        self._pending = triton
        names = [t.name for t in spec.inputs]
        functions = [self._infer_function(names) for _ in range(o.instances)]
        triton.bind(
            model_name=o.model_name,
            infer_func=functions if o.instances > 1 else functions[0],
            inputs=[Tensor(name=t.name, dtype=t.dtype.type, shape=t.dims) for t in spec.inputs],
            outputs=[Tensor(name=t.name, dtype=t.dtype.type, shape=t.dims) for t in spec.outputs],
            config=ModelConfig(
                batching=True, max_batch_size=spec.max_batch,
                batcher=DynamicBatcher(max_queue_delay_microseconds=o.max_queue_delay_us,
                                       preferred_batch_size=list(spec.preferred_batch_sizes) or None),
            ),
            strict=False,
        )
        record_metadata(triton, o.model_name, spec.metadata)
        with server_process_environment():
            triton.run()
        if not triton.is_alive():
            raise ServeError(f"tritonserver exited during start-up{self._server_log_tail()}")
        return triton

    def _infer_function(self, input_names: Sequence[str]) -> Any:
        engine = self.engine

        def infer(requests: Sequence[Any]) -> list[dict[str, np.ndarray]]:
            return infer_batched(engine, [{n: r[n] for n in input_names} for r in requests], input_names)

        return infer

    def _log_path(self) -> Path:
        assert self._workspace is not None
        return Path(self._workspace.name) / "tritonserver.log"

    def _server_log_tail(self, lines: int = 15) -> str:
        triton = self._triton or self._pending
        server = getattr(triton, "_triton_server", None)
        try:
            text = server.logs() if server is not None else ""
            if self._workspace is not None and self._log_path().is_file():
                text += self._log_path().read_text(encoding="utf-8", errors="replace")
        except Exception:  # best effort: a log is a hint, never a second failure
            text = ""
        tail = [ln for ln in text.splitlines() if ln.strip()][-lines:]
        return ("\ntritonserver log (last lines):\n" + "\n".join(tail)) if tail else ""

    def stop(self) -> None:
        """Stop tritonserver and the model's handlers, close the engine this server opened; idempotent."""
        self._stop_event.set()
        with self._lock:
            self._cleanup()

    def _cleanup(self) -> None:
        triton, self._triton = self._triton or self._pending, None
        self._pending = None
        if triton is not None:
            try:
                self._unload_model(triton)
                triton.stop()
            except Exception as exc:  # stopping must not raise over the error that caused it
                LOG.warning("stopping Triton: %s: %s", type(exc).__name__, exc)
        if self._workspace is not None:
            self._workspace.cleanup()
            self._workspace = None
        self._close_engine()

    def _unload_model(self, triton: Any) -> None:
        """Unload the model before tritonserver gets SIGINT, so its Python stub ends while this process still answers.

        Without it tritonserver can run out of its exit timeout waiting for the stub and exit non-zero
        (seen with PyTriton 0.7.0: "Triton Inference Server exited with failure").
        """
        if not triton.is_alive():
            return
        import tritonclient.http as httpclient

        from pytriton.triton import TRITON_ACCESS_HEADER

        client = httpclient.InferenceServerClient(self.http_url, network_timeout=10.0)
        try:
            # asynchronous: the model stops taking requests now, tritonserver finishes unloading it on SIGINT
            client.unload_model(self.options.model_name, headers={TRITON_ACCESS_HEADER: triton.get_access_token()})
        except Exception as exc:  # the server may already be going; triton.stop() still runs
            LOG.debug("unloading %s before stop: %s", self.options.model_name, exc)
        finally:
            client.close()

    def _close_engine(self) -> None:
        if self._owns_engine and self.engine is not None:
            self.engine.close()

    def wait(self, timeout: float | None = None, poll_s: float = 0.5) -> bool:
        """Block until :meth:`stop` or a stop signal (see :meth:`serve_forever`), or the server dies.

        Returns True if it stopped on request, False on timeout or if tritonserver exited by itself.
        """
        waited = 0.0
        while not self._stop_event.wait(poll_s):
            waited += poll_s
            if not self.running:
                return False
            if timeout is not None and waited >= timeout:
                return False
        return True

    def serve_forever(self, on_ready: Callable[[], None] | None = None) -> bool:
        """Start, call ``on_ready``, serve until SIGINT or SIGTERM, stop. Returns True on a requested stop.

        Must run on the main thread (Python delivers signals there).
        """
        previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        for s in STOP_SIGNALS:
            signal.signal(s, lambda *_: self._stop_event.set())
        try:
            self.start()
            if on_ready is not None:
                on_ready()
            return self.wait()
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def check_ports_free(address: str, options: ServeOptions) -> None:
    """Refuse ports something already listens on, at once (tritonserver would exit and PyTriton wait)."""
    for name, port in (("http", options.http_port), ("grpc", options.grpc_port), ("metrics", options.metrics_port)):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # as servers bind: a port whose old connections linger in TIME_WAIT counts as free, a listener does not
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, int(port)))
            except OSError as exc:
                raise ServeError(
                    f"--{name}-port {port} on {address} is not free ({exc.strerror or exc}); "
                    f"stop what uses it or pass another --{name}-port"
                ) from exc


def record_metadata(triton: Any, model_name: str, metadata: Mapping[str, str]) -> None:
    """Put ``metadata`` into the model config's ``parameters`` (``GET /v2/models/<name>/config``).

    PyTriton 0.7.0 has no public field for config parameters; its own backend parameters live in
    the cached ``TritonModelConfig.backend_parameters`` of the bound model
    (``pytriton/models/model.py``, ``Model._get_triton_model_config``), which the generator writes
    as ``parameters``. Where that private shape differs (another PyTriton), the server still runs
    and a warning says the recipe is not in the config.
    """
    try:
        models = triton._model_manager.models
        model = next(m for m in models if m.model_name == model_name)
        model._get_triton_model_config().backend_parameters.update(dict(metadata))
    except (AttributeError, StopIteration, TypeError) as exc:
        LOG.warning("this PyTriton does not take config parameters (%s); model metadata not recorded", exc)


def serve(source: str | os.PathLike[str], options: ServeOptions | None = None) -> bool:
    """Serve a bundle or model file until SIGINT/SIGTERM (the ``edgeres serve`` command)."""
    return ModelServer(source, options).serve_forever()

