"""``edgeres serve BUNDLE_OR_MODEL``: a Triton Inference Server (NVIDIA PyTriton) in front of the engine."""

from __future__ import annotations

import click

from edgeres.cli._options import log


@click.command("serve")
@click.argument("source", metavar="BUNDLE_OR_MODEL", type=click.Path())
@click.option("--http-port", type=int, default=8000, show_default=True, help="Triton HTTP/REST (KServe v2) port.")
@click.option("--grpc-port", type=int, default=8001, show_default=True, help="Triton gRPC port.")
@click.option("--metrics-port", type=int, default=8002, show_default=True, help="Prometheus metrics port (/metrics).")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Interface to bind; 0.0.0.0 serves other machines.")
@click.option("--model-name", default="edgeres", show_default=True, help="Triton model name (/v2/models/NAME).")
@click.option("--max-batch", type=int, default=None, help="Triton max_batch_size (default: the engine's maximum batch).")
@click.option("--max-queue-delay-us", type=int, default=100, show_default=True,
              help="How long the dynamic batcher waits to fill a batch, in microseconds.")
@click.option("--instances", type=int, default=1, show_default=True, help="Model instances (threads running the engine).")
@click.option("--prefer", type=click.Choice(["auto", "plan", "onnx", "qdq"]), default="auto", show_default=True,
              help="Bundle model: auto = model.plan where TensorRT imports, else model.onnx.")
@click.option("--verbose", is_flag=True, help="Show tritonserver's own log.")
def serve(source: str, http_port: int, grpc_port: int, metrics_port: int, address: str, model_name: str,
          max_batch: int | None, max_queue_delay_us: int, instances: int, prefer: str, verbose: bool) -> None:
    """Serve BUNDLE_OR_MODEL (a bundle folder, .plan or .onnx) until SIGINT or SIGTERM.

    Needs the serve extra: pip install 'edgeres[serve]'.
    """
    from edgeres.errors import ServeError
    from edgeres.serve.server import ModelServer, ServeOptions, require_pytriton

    require_pytriton()
    options = ServeOptions(
        model_name=model_name, address=address, http_port=http_port, grpc_port=grpc_port,
        metrics_port=metrics_port, max_batch=max_batch, max_queue_delay_us=max_queue_delay_us,
        instances=instances, prefer=prefer, verbose=verbose,
    )
    server = ModelServer(source, options)
    spec, engine = server.spec, server.engine
    if spec.max_batch == 1:
        log(f"note: {engine.path} takes batch 1 only, so requests are not batched; "
            "rebuild with edgeres build --max-batch N to batch them")

    def announce() -> None:
        log(f"serving {engine.path} [{engine.backend}] as model {model_name!r}: batch 1..{spec.max_batch}, "
            f"preferred {list(spec.preferred_batch_sizes) or 'none'}, queue delay {max_queue_delay_us} us, "
            f"{instances} instance(s)")
        log(f"  HTTP    http://{server.http_url}/v2/models/{model_name}  (health: /v2/health/ready)")
        log(f"  gRPC    {server.grpc_url}")
        log(f"  metrics {server.metrics_url}")
        log("stop with Ctrl+C or SIGTERM")

    stopped_on_request = server.serve_forever(on_ready=announce)
    if not stopped_on_request:
        raise ServeError("tritonserver exited by itself; run again with --verbose to see its log")
    log("stopped")
