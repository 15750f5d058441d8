"""Options shared by several commands, and small output helpers."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

import click


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


def input_size_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--input-size`` (square side, at least 8; the architecture's default when omitted)."""
    return click.option("--input-size", type=click.IntRange(min=8), default=None,
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
