"""Options shared by several commands, and small output helpers."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

import click


def arch_option(default: str | None = "resnet50") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--arch`` (a registry name; validated by the library so errors suggest names)."""
    return click.option("--arch", default=default, show_default=True, help="Architecture name (see `edgeres info --list`).")


def weights_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--weights`` (.pth/.pt state dict or checkpoint, or .safetensors)."""
    return click.option(
        "--weights",
        type=click.Path(dir_okay=False),
        default=None,
        help="State dict, checkpoint (.pth/.pt, loaded weights-only) or .safetensors; random init if omitted.",
    )


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
