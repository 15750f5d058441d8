"""The ``edgeres`` command: a thin click layer over the library.

Subcommands live in their own modules and are imported only when invoked, so
``edgeres --help`` works without torch, onnx or TensorRT. Every
:class:`~edgeres.errors.EdgeresError` becomes one line on stderr and exit
code 2 (``--debug`` shows the traceback instead); so do click's own usage
errors (unknown option, bad value, missing argument), which click would print
as three lines starting ``Error:``: one form, ``error: ...``, for every error.
Running out of memory, and an operating-system error on a path the library did not
check first (a read-only file system, ``/proc``, a full disk), are one line too.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

import click

from edgeres import __version__
from edgeres.errors import EdgeresError

# name -> (module, attribute, one-line help shown by --help without importing the module)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "info": ("edgeres.cli.info", "info", "Print parameters, MACs, weight sizes and layer counts of an architecture."),
    "export": ("edgeres.cli.export", "export", "Fold BatchNorm and export a model to ONNX, checked against PyTorch."),
    "bench": ("edgeres.cli.bench", "bench", "Latency (and energy) against the FP32 reference on any backend, with output agreement."),
    "targets": ("edgeres.cli.targets", "targets", "List the device target profiles (Jetson and desktop GPUs)."),
    "build": ("edgeres.cli.build", "build", "Build a TensorRT engine for a target, or a deploy bundle where none can be built."),
    "compile": ("edgeres.cli.compile", "compile_", "Verify a deploy bundle and compile its engine on this device."),
    "calibrate": ("edgeres.cli.calibrate", "calibrate", "INT8 calibration: Q/DQ ONNX, TensorRT calibration cache and accuracy report."),
    "doctor": ("edgeres.cli.doctor", "doctor", "Check this device (L4T, TensorRT, GPU, DLA, clocks) against a bundle or plan, with fixes."),
    "serve": ("edgeres.cli.serve", "serve", "Serve a bundle or engine on a Triton Inference Server (PyTriton), dynamically batched."),
    "config": ("edgeres.cli.config", "config", "Write Triton, DeepStream or Isaac ROS configs from a bundle's own facts."),
}

EXIT_USAGE = 2


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when it runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if ctx.resilient_parsing or "--help" in sys.argv[1:2]:
            return click.Command(cmd_name, help=COMMANDS[cmd_name][2], short_help=COMMANDS[cmd_name][2])
        module_name, attr, _ = COMMANDS[cmd_name]
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        from edgeres._interrupt import Interrupted, command_over, handled_signals
        from edgeres._io import committed_outputs

        written_before = len(committed_outputs())
        try:
            with handled_signals():  # SIGTERM unwinds like Ctrl-C, so staged outputs are removed
                try:
                    return super().invoke(ctx)
                finally:
                    command_over()  # outputs are final now: a late signal must not cut the report short
        except EdgeresError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt as exc:
            signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
            click.echo(f"error: {interrupted_message(signum, committed_outputs()[written_before:])}", err=True)
            ctx.exit(128 + int(signum))
        except MemoryError:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo("error: out of memory; lower --batch, --input-size, --calib-size or the data size", err=True)
            ctx.exit(EXIT_USAGE)
        except OSError as exc:  # a path the library did not check (read-only file system, /proc, a full disk)
            if ctx.obj and ctx.obj.get("debug"):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc} (check the path and its file system; --debug shows where)",
                       err=True)
            ctx.exit(EXIT_USAGE)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """click's ``main``, with its usage errors printed as one ``error: ...`` line (exit 2)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # `edgeres build` alone: the help text is the answer
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:  # UsageError, BadParameter, NoSuchOption, FileError, ...
            click.echo(f"error: {usage_line(exc)}", err=True)
            sys.exit(EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
        except click.Abort:  # click's form of Ctrl-C (or SIGTERM) before or after the command ran
            click.echo("error: interrupted; no output was written", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


def usage_line(exc: click.ClickException) -> str:
    """One line for a click error: its message (newlines folded) and where to find the usage."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        message = message.rstrip(".") + f"; see `{ctx.command_path} --help`"
    return message


def interrupted_message(signum: int, committed: Sequence[Path]) -> str:
    """What an interruption left: nothing new, or the outputs renamed into place before it (those that remain)."""
    name = signal.Signals(signum).name
    kept = list(dict.fromkeys(str(p) for p in committed if p.exists()))
    if not kept:
        return f"interrupted ({name}); no output was written (earlier outputs are unchanged)"
    return f"interrupted ({name}) after writing {', '.join(kept)}; nothing else was written"


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="edgeres")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """edgeres: a ResNet from PyTorch to a TensorRT engine, proven against FP32."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point.

    The whole run, click's own start and end included, is inside
    :func:`edgeres._interrupt.handled_signals`; as a program (``argv`` None) a
    signal arriving once the command is over no longer changes the exit status
    (the outputs are final), also while the interpreter shuts down.
    """
    from edgeres._interrupt import handled_signals

    try:
        with handled_signals():
            cli.main(args=argv, prog_name="edgeres")
    finally:
        if argv is None and threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, signal.SIG_IGN)
