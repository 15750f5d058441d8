"""edgeres serve: a real Triton server (PyTriton) answering tritonclient with Engine.infer's results.

Every server binds 127.0.0.1 on free ports, every request loop is bounded, every server is stopped
in its fixture's teardown. The server tests skip only where PyTriton or tritonclient cannot be
imported (``pip install 'edgeres[serve]'``); the pure parts run everywhere.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from click.testing import CliRunner

from edgeres.cli import cli
from edgeres.errors import ServeError
from edgeres.serve import server as srv
from tests.deploy_fixtures import Bundles, deploy_bundles  # noqa: F401  (fixture)

HAVE_SERVE = srv.pytriton_available() and all(
    __import__("importlib").util.find_spec(m) is not None for m in ("tritonclient.http", "tritonclient.grpc")
)
needs_server = pytest.mark.skipif(
    not HAVE_SERVE, reason="PyTriton/tritonclient not installed (pip install 'edgeres[serve]'); server not started"
)
MAX_BATCH = 8
START_TIMEOUT_S = 90.0
REPO = Path(__file__).resolve().parents[1]


def free_ports(n: int = 3) -> list[int]:
    """``n`` distinct free loopback ports (held open together so they differ)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def bundle(deploy_bundles: Bundles) -> Path:
    """The reference model as an FP32 bundle with batch range 1..8 (opt 4)."""
    return deploy_bundles["ref_fp32"]


@pytest.fixture(scope="module")
def engine(bundle: Path) -> Iterator[Any]:
    from edgeres.runtime import open_engine

    with open_engine(bundle) as e:
        yield e


def random_batch(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 28, 28)).astype(np.float32)


# ---- pure parts (no server) ---------------------------------------------------------------------

def test_server_environment_puts_libdir_first_once() -> None:
    env = srv.server_environment({"LD_LIBRARY_PATH": "/a:/lib/py:/b", "X": "1"}, "/lib/py")
    assert env["LD_LIBRARY_PATH"] == "/lib/py:/a:/b", f"LIBDIR first, not repeated: {env['LD_LIBRARY_PATH']}"
    assert env["X"] == "1", "other variables are kept"
    assert srv.server_environment({}, "/lib/py")["LD_LIBRARY_PATH"] == "/lib/py", "set when absent"
    assert "LD_LIBRARY_PATH" not in srv.server_environment({}, None), "unknown LIBDIR changes nothing"


def test_server_process_environment_is_restored() -> None:
    before = os.environ.get("LD_LIBRARY_PATH")
    with srv.server_process_environment():
        inside = os.environ.get("LD_LIBRARY_PATH", "")
    libdir = srv.interpreter_libdir()
    assert libdir is None or inside.split(os.pathsep)[0] == libdir, f"LIBDIR {libdir} first inside: {inside}"
    assert os.environ.get("LD_LIBRARY_PATH") == before, "os.environ restored after the server is spawned"


class _Doubler:
    def __init__(self) -> None:
        self.batches: list[int] = []

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.batches.append(len(feeds["x"]))
        return {"y": feeds["x"] * 2, "n": np.arange(len(feeds["x"]))}


def test_infer_batched_runs_once_and_splits_in_order() -> None:
    fake = _Doubler()
    reqs = [{"x": np.full((k, 2), k, np.float32)} for k in (1, 3, 2)]
    out = srv.infer_batched(fake, reqs, ["x"])
    assert fake.batches == [6], f"one engine call for all requests: {fake.batches}"
    assert [o["y"].shape[0] for o in out] == [1, 3, 2], "each request gets its own rows back"
    assert all(np.array_equal(o["y"], r["x"] * 2) for o, r in zip(out, reqs)), "rows stay with their request"
    assert out[1]["n"].tolist() == [1, 2, 3], "second request's rows follow the first's"


def test_serving_spec_from_engine(engine: Any, bundle: Path) -> None:
    spec = srv.serving_spec_from_engine(engine)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert spec.max_batch == manifest["max_batch"] == MAX_BATCH, f"max batch from the engine's profile: {spec.max_batch}"
    assert spec.preferred_batch_sizes == (4, 8), f"opt and max batch preferred: {spec.preferred_batch_sizes}"
    assert [t.dims for t in spec.inputs] == [tuple(manifest["input_shape"])], f"input dims {spec.inputs}"
    assert json.loads(spec.metadata["edgeres_recipe"]) == manifest["recipe"], "recipe recorded as metadata"
    assert srv.serving_spec_from_engine(engine, 2).max_batch == 2, "a smaller --max-batch is taken"
    with pytest.raises(ServeError, match="beyond the engine's profile"):
        srv.serving_spec_from_engine(engine, MAX_BATCH + 1)


def test_a_model_file_without_manifest_needs_max_batch(bundle: Path, tmp_path: Path) -> None:
    import shutil

    from edgeres.runtime import Engine

    shutil.copyfile(bundle / "model.onnx", tmp_path / "model.onnx")
    with Engine(tmp_path / "model.onnx") as lone:
        with pytest.raises(ServeError, match="pass --max-batch"):
            srv.serving_spec_from_engine(lone)
        spec = srv.serving_spec_from_engine(lone, 16)
    assert spec.max_batch == 16 and json.loads(spec.metadata["edgeres_recipe"]) is None, f"no manifest, no recipe: {spec}"


def test_a_busy_port_is_refused_at_once(engine: Any) -> None:
    if not HAVE_SERVE:
        pytest.skip("needs PyTriton to create a server")
    http, grpc, metrics = free_ports()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", grpc))
        busy.listen()
        server = srv.ModelServer(engine, srv.ServeOptions(http_port=http, grpc_port=grpc, metrics_port=metrics))
        with pytest.raises(ServeError, match=f"--grpc-port {grpc} on 127.0.0.1 is not free"):
            server.start()
    assert not server.running and not engine.closed, "nothing started, the caller's engine still open"


def test_record_metadata_survives_another_pytriton(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        srv.record_metadata(object(), "m", {"edgeres_recipe": "{}"})
    assert "not recorded" in caplog.text, f"a warning, not a crash: {caplog.text}"


def test_options_are_checked() -> None:
    for bad, pattern in [(dict(http_port=0), "1..65535"), (dict(http_port=9000, grpc_port=9000), "must differ"),
                         (dict(instances=0), "instances"), (dict(max_queue_delay_us=-1), "queue-delay")]:
        with pytest.raises(ServeError, match=pattern):
            srv.ServeOptions(**bad).check()


def test_cli_without_pytriton_says_how_to_install(monkeypatch: pytest.MonkeyPatch, bundle: Path) -> None:
    monkeypatch.setattr(srv, "pytriton_available", lambda: False)
    result = CliRunner().invoke(cli, ["serve", str(bundle)])
    assert result.exit_code == 2, f"exit 2 without PyTriton: {result.output}"
    assert "pip install 'edgeres[serve]'" in result.stderr, f"install hint: {result.stderr}"
    assert "Traceback" not in result.stderr, "one line, no traceback"


def test_cli_refuses_a_missing_source(tmp_path: Path) -> None:
    if not HAVE_SERVE:
        pytest.skip("needs PyTriton to get past the install check")
    result = CliRunner().invoke(cli, ["serve", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "does not exist" in result.stderr, f"missing bundle: {result.stderr}"


# ---- the CLI server (a subprocess, as a user runs it) -------------------------------------------

class Served:
    def __init__(self, proc: subprocess.Popen[str], http: int, grpc: int, metrics: int) -> None:
        self.proc, self.http, self.grpc, self.metrics = proc, http, grpc, metrics

    def http_client(self, **kw: Any) -> Any:
        import tritonclient.http as httpclient

        return httpclient.InferenceServerClient(f"127.0.0.1:{self.http}", **kw)

    def grpc_client(self) -> Any:
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(f"127.0.0.1:{self.grpc}")


def wait_ready(http_port: int, proc: subprocess.Popen[str] | None, model: str = "edgeres") -> None:
    import tritonclient.http as httpclient

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"edgeres serve exited with {proc.returncode}: {proc.stderr.read()[-3000:] if proc.stderr else ''}")
        try:
            client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
            try:
                if client.is_server_ready() and client.is_model_ready(model):
                    return
            finally:
                client.close()
        except Exception:
            pass
        time.sleep(0.25)
    raise AssertionError(f"server on port {http_port} not ready within {START_TIMEOUT_S} s")


@pytest.fixture(scope="module")
def served(bundle: Path) -> Iterator[Served]:
    if not HAVE_SERVE:
        pytest.skip("PyTriton/tritonclient not installed (pip install 'edgeres[serve]')")
    http, grpc, metrics = free_ports()
    cmd = [sys.executable, "-c", "from edgeres.cli import main; main()", "serve", str(bundle),
           "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
           "--max-queue-delay-us", "50000"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_ready(http, proc)
        yield Served(proc, http, grpc, metrics)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def _http_infer(client: Any, x: np.ndarray, dtype: str = "FP32", name: str = "input") -> np.ndarray:
    import tritonclient.http as httpclient

    inp = httpclient.InferInput(name, list(x.shape), dtype)
    inp.set_data_from_numpy(x)
    return client.infer("edgeres", [inp]).as_numpy("logits")


@needs_server
def test_http_and_grpc_answer_with_engine_results(served: Served, engine: Any) -> None:
    import tritonclient.grpc as grpcclient

    http, grpc = served.http_client(), served.grpc_client()
    try:
        for seed, n in enumerate((1, 3, MAX_BATCH)):
            x = random_batch(n, seed)
            expected = engine.infer(x)
            got_http = _http_infer(http, x)
            inp = grpcclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            got_grpc = grpc.infer("edgeres", [inp]).as_numpy("logits")
            for proto, got in (("HTTP", got_http), ("gRPC", got_grpc)):
                assert got.shape == expected.shape, f"{proto} batch {n}: shape {got.shape} vs {expected.shape}"
                np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5,
                                           err_msg=f"{proto} batch {n} differs from Engine.infer")
    finally:
        http.close()
        grpc.close()


@needs_server
def test_model_config_carries_limits_and_recipe(served: Served, bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    client = served.http_client()
    try:
        config = client.get_model_config("edgeres")
        meta = client.get_model_metadata("edgeres")
    finally:
        client.close()
    assert config["max_batch_size"] == manifest["max_batch"], f"max_batch_size {config['max_batch_size']}"
    assert sorted(config["dynamic_batching"]["preferred_batch_size"]) == [4, 8], f"preferred: {config['dynamic_batching']}"
    recipe = json.loads(config["parameters"]["edgeres_recipe"]["string_value"])
    assert recipe == manifest["recipe"], f"recipe in the model config: {recipe}"
    assert config["parameters"]["edgeres_backend"]["string_value"] == "onnxruntime", "backend recorded"
    assert [(t["name"], [int(d) for d in t["shape"]]) for t in meta["inputs"]] == [("input", [-1, 1, 28, 28])], \
        f"input metadata: {meta['inputs']}"
    assert [t["name"] for t in meta["outputs"]] == ["logits"], f"output metadata: {meta['outputs']}"


@needs_server
def test_concurrent_requests_are_batched(served: Served, engine: Any) -> None:
    n_requests = 32
    xs = [random_batch(1, 100 + i) for i in range(n_requests)]
    import tritonclient.http as httpclient

    client = served.http_client(concurrency=n_requests, network_timeout=60.0)
    try:
        pending = []
        for x in xs:  # all sent before any answer is read: the batcher sees them together
            inp = httpclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            pending.append(client.async_infer("edgeres", [inp]))
        results = [p.get_result(timeout=120).as_numpy("logits") for p in pending]
        stats = client.get_inference_statistics("edgeres")
    finally:
        client.close()
    for i, (x, got) in enumerate(zip(xs, results)):
        np.testing.assert_allclose(got, engine.infer(x), rtol=1e-4, atol=1e-4, err_msg=f"request {i} in a batch")
    batch_stats = stats["model_stats"][0]["batch_stats"]
    sizes = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in batch_stats}
    assert any(size > 1 for size in sizes), f"some executions had batch > 1: {sizes}"
    assert max(sizes) <= MAX_BATCH, f"no execution beyond max_batch_size: {sizes}"


@needs_server
def test_bad_requests_are_refused_and_the_server_keeps_serving(served: Served, engine: Any) -> None:
    from tritonclient.utils import InferenceServerException

    client = served.http_client()
    bad = {
        "wrong shape": (np.zeros((1, 1, 27, 28), np.float32), "FP32", "input"),
        "wrong dtype": (np.zeros((1, 1, 28, 28), np.float64), "FP64", "input"),
        "batch beyond max": (np.zeros((MAX_BATCH + 1, 1, 28, 28), np.float32), "FP32", "input"),
        "unknown input": (np.zeros((1, 1, 28, 28), np.float32), "FP32", "image"),
    }
    try:
        for what, (x, dtype, name) in bad.items():
            with pytest.raises(InferenceServerException) as err:
                _http_infer(client, x, dtype, name)
            assert str(err.value), f"{what}: Triton's error says why"
        assert client.is_server_live() and client.is_model_ready("edgeres"), "still serving after bad requests"
        x = random_batch(2, 7)
        np.testing.assert_allclose(_http_infer(client, x), engine.infer(x), rtol=1e-5, atol=1e-5,
                                   err_msg="a good request after the bad ones")
    finally:
        client.close()


@needs_server
def test_health_and_prometheus_metrics(served: Served) -> None:
    client = served.http_client()
    try:
        assert client.is_server_live() and client.is_server_ready(), "health endpoints"
        _http_infer(client, random_batch(1, 3))
    finally:
        client.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{served.metrics}/metrics", timeout=10) as r:
        text = r.read().decode()
    lines = [ln for ln in text.splitlines() if ln.startswith("nv_inference_request_success") and 'model="edgeres"' in ln]
    assert lines and float(lines[0].rsplit(" ", 1)[1]) >= 1, f"Prometheus counts successful requests: {lines}"


@needs_server
def test_sigterm_stops_the_server_cleanly(served: Served) -> None:
    served.proc.send_signal(signal.SIGTERM)
    _out, err = served.proc.communicate(timeout=60)
    assert served.proc.returncode == 0, f"exit 0 on SIGTERM, received {served.proc.returncode}: {err[-2000:]}"
    assert "stopped" in err and "Traceback" not in err, f"clean stop message: {err[-1000:]}"
    assert not any(port_open(p) for p in (served.http, served.grpc, served.metrics)), "every port released"


# ---- the Python API in this process ------------------------------------------------------------

@needs_server
def test_model_server_api_with_two_instances(engine: Any) -> None:
    http, grpc, metrics = free_ports()
    options = srv.ServeOptions(model_name="ref", http_port=http, grpc_port=grpc, metrics_port=metrics,
                               instances=2, max_batch=4)
    before = os.environ.get("LD_LIBRARY_PATH")
    server = srv.ModelServer(engine, options)
    try:
        server.start()
        assert os.environ.get("LD_LIBRARY_PATH") == before, "this process's environment is left as it was"
        client = __import__("tritonclient.http", fromlist=["x"]).InferenceServerClient(server.http_url)
        try:
            config = client.get_model_config("ref")
            x = random_batch(4, 11)
            import tritonclient.http as httpclient

            inp = httpclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            got = client.infer("ref", [inp]).as_numpy("logits")
        finally:
            client.close()
        assert config["max_batch_size"] == 4 and config["instance_group"][0]["count"] == 2, f"config: {config}"
        np.testing.assert_allclose(got, engine.infer(x), rtol=1e-5, atol=1e-5, err_msg="API server result")
    finally:
        server.stop()
    assert not server.running and not port_open(http), "stopped and port released"
    assert not engine.closed, "an engine passed in is the caller's: the server does not close it"
