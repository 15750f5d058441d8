"""Options shared by several commands, and small output helpers."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

import click


# Upper bounds of option values where a bigger one cannot be meant (issue 14): a huge value is
# one `error:` line and exit 2 (click's range check), not hours of running or a failed allocation.
MAX_BATCH = 4096  # the largest target profile allows 256; 4096 x 3x224x224 float32 is 2.4 GB already
MAX_INPUT_SIDE = 4096  # pixels (a 4096x4096 ResNet-50 activation set is ~40 GB per batch of 8)
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841
MAX_CALIB_SIZE = 1_000_000
MAX_ITERATIONS = 1_000_000
MAX_WARMUP_MS = 600_000.0  # 10 minutes
MAX_DURATION_S = 3600.0
MAX_ROUNDS = 1000
MAX_BUFFERS = 1024
MAX_AGREEMENT_SAMPLES = 100_000
MAX_THREADS = 1024
MAX_WORKSPACE_MIB = 1 << 24  # 16 TiB; edgeres.trtexec.MAX_WORKSPACE_MIB
# ONNX opsets `edgeres export` writes (edgeres.export.MIN_OPSET / DEFAULT_OPSET, repeated here so --help
# imports no torch; tests/test_cli.py checks they agree): at least 13 (what TensorRT 8.2's parser reads),
# 17 by default, at most what torch's TorchScript exporter (dynamo=False) emits:
# torch/onnx/_constants.py ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET = 20 in torch 2.13.
MIN_OPSET, DEFAULT_OPSET, MAX_OPSET = 13, 17, 20


class FiniteFloat(click.ParamType):
    """A finite float option of at most ``hi``: refuses ``nan``/``inf`` too, which click.FloatRange lets through.

    Lower bounds stay with the library, whose messages say what the value means.
    """

    name = "float"

    def __init__(self, hi: float, lo: float = float("-inf")) -> None:
        self.lo, self.hi = lo, hi

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        import math

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r:.40} is not a number", param, ctx)
        if not (math.isfinite(number) and self.lo <= number <= self.hi):
            self.fail(f"{value!r:.40} is not a finite number of at most {self.hi:g}", param, ctx)
        return number


ARCH_HELP = "Architecture name (see `edgeres info --list`)"
WEIGHTS_HELP = "Weights of the architecture: state dict or checkpoint (.pth/.pt, loaded weights-only) or .safetensors"
INPUT_SIZE_HELP = "Square input side"


def arch_option(default: str | None = None, *, omitted: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--arch`` (a registry name; validated by the library so errors suggest names).

    One help text for every command; ``omitted`` says what the command does without
    ``--arch`` where that is not ``default`` (e.g. "the shipped reference model").
    """
    tail = f"; {omitted} if omitted" if omitted else ""
    return click.option("--arch", default=default, show_default=default is not None, help=f"{ARCH_HELP}{tail}.")


def weights_option(omitted: str = "random initialization from --seed") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--weights`` (.pth/.pt state dict or checkpoint, or .safetensors)."""
    return click.option("--weights", type=click.Path(dir_okay=False), default=None, help=f"{WEIGHTS_HELP}; {omitted} if omitted.")


def seed_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--seed``: a non-negative integer that numpy and torch both take (see :data:`edgeres.pipeline.MAX_SEED`)."""
    from edgeres.pipeline import MAX_SEED

    return click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help=help_text)


def input_size_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--input-size`` (square side, at least 8; the architecture's default when omitted)."""
    return click.option("--input-size", type=click.IntRange(min=8, max=MAX_INPUT_SIDE), default=None,
                        help=f"{INPUT_SIZE_HELP}; the architecture's default if omitted.")


def log(message: str) -> None:
    """Progress text goes to stderr so stdout stays machine-readable."""
    click.echo(message, err=True)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Report a pipeline stage and its wall time on stderr."""
    start_s = time.perf_counter()
    log(f"- {name} ...")
    yield
    log(f"  {name} done in {time.perf_counter() - start_s:.2f} s")


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
