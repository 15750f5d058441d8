"""``edgeres config triton|deepstream|isaac-ros BUNDLE -o DIR``: deployment configs from a bundle's own facts."""

from __future__ import annotations

import click

from edgeres.cli._options import log

LABELS_HELP = "Class names, one per line (the reference model's digits need none)."


@click.group("config")
def config() -> None:
    """Write Triton, DeepStream or Isaac ROS configs whose names, dims and batch limits come from BUNDLE."""


@config.command("triton")
@click.argument("bundle", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Output folder (gpu/ and cpu/ repositories).")
@click.option("--name", default="edgeres", show_default=True, help="Triton model name.")
@click.option("--kind", "kinds", type=click.Choice(["gpu", "cpu"]), multiple=True,
              help="Node kinds to write (repeatable; default both): gpu = tensorrt_plan, cpu = onnxruntime_onnx.")
@click.option("--instances", type=int, default=1, show_default=True, help="instance_group count.")
@click.option("--max-queue-delay-us", type=int, default=100, show_default=True, help="dynamic_batching queue delay.")
@click.option("--labels", type=click.Path(dir_okay=False), default=None, help=LABELS_HELP)
@click.option("--force", is_flag=True, help="Replace an output folder that is not an earlier output of this command.")
def triton(bundle: str, output: str, name: str, kinds: tuple[str, ...], instances: int,
           max_queue_delay_us: int, labels: str | None, force: bool) -> None:
    """A Triton model repository for BUNDLE (TensorRT plan for GPU nodes, onnxruntime for CPU nodes)."""
    from edgeres.deploy.facts import facts_from_bundle
    from edgeres.deploy.triton import KINDS, write_triton_repository

    facts = facts_from_bundle(bundle, labels)
    repo = write_triton_repository(facts, output, name=name, kinds=kinds or KINDS, instances=instances,
                                   max_queue_delay_us=max_queue_delay_us, force=force)
    for kind, path in repo.configs.items():
        click.echo(f"wrote {path}")
    click.echo(f"max_batch_size {facts.max_batch} (profile {facts.min_batch}..{facts.max_batch}), "
               f"input {facts.input.name} {list(facts.input.dims)}, output {facts.output.name} {list(facts.output.dims)}")
    if "gpu" in repo.configs and not repo.plan_included:
        log(f"note: build model.plan on each GPU node (edgeres compile {bundle}) and copy it into "
            f"{output}/gpu/{name}/1/ (see {output}/README.md)")


@config.command("deepstream")
@click.argument("bundle", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Output folder.")
@click.option("--batch", type=int, default=None, help="nvinfer batch-size (default: the engine's maximum batch).")
@click.option("--gpu-id", type=int, default=0, show_default=True, help="GPU nvinfer runs on (part of the engine name).")
@click.option("--trt-version", default=None, help="TensorRT of the DeepStream node (default: the bundle's).")
@click.option("--threshold", type=float, default=0.0, show_default=True, help="classifier-threshold.")
@click.option("--labels", type=click.Path(dir_okay=False), default=None, help=LABELS_HELP)
@click.option("--force", is_flag=True, help="Replace an output folder that is not an earlier output of this command.")
def deepstream(bundle: str, output: str, batch: int | None, gpu_id: int, trt_version: str | None,
               threshold: float, labels: str | None, force: bool) -> None:
    """An nvinfer config_infer_primary.txt with exact per-channel normalization (1/std folded into the ONNX)."""
    from edgeres.deploy.deepstream import write_deepstream_config
    from edgeres.deploy.facts import facts_from_bundle

    result = write_deepstream_config(facts_from_bundle(bundle, labels), output, batch=batch, gpu_id=gpu_id,
                                     trt_version=trt_version, threshold=threshold, force=force)
    click.echo(f"wrote {result.config} and {result.onnx.name} ({result.source_onnx}, 1/std folded: {result.fold_mode})")
    click.echo(f"nvinfer builds and then reuses {result.engine_name}")


@config.command("isaac-ros")
@click.argument("bundle", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Output folder.")
@click.option("--bundle-dir", default=None, help="Where the bundle lives on the robot (default: its path here).")
@click.option("--batch", type=int, default=None, help="TensorRT node max_batch_size (default: the engine's maximum).")
@click.option("--trt-version", default=None, help="TensorRT on the robot (default: the bundle's).")
@click.option("--camera-size", nargs=2, type=int, default=None, metavar="W H",
              help="Camera image size (default: images already at the network size).")
@click.option("--force", is_flag=True, help="Replace an output folder that is not an earlier output of this command.")
def isaac_ros(bundle: str, output: str, bundle_dir: str | None, batch: int | None, trt_version: str | None,
              camera_size: tuple[int, int] | None, force: bool) -> None:
    """ROS 2 parameters and a launch file for isaac_ros_dnn_image_encoder + isaac_ros_tensor_rt."""
    from edgeres.deploy.facts import facts_from_bundle
    from edgeres.deploy.isaac_ros import write_isaac_ros_config

    result = write_isaac_ros_config(facts_from_bundle(bundle), output, bundle_dir=bundle_dir, batch=batch,
                                    trt_version=trt_version, camera_size=camera_size, force=force)
    click.echo(f"wrote {result.params} and {result.launch}")
    click.echo(f"on the robot: edgeres compile BUNDLE, then ros2 launch {result.launch.name} bundle_dir:=BUNDLE")
