"""A process that imports torch, onnx and onnxruntime once and forks one real ``edgeres`` CLI process per request.

Used by ``tests/test_interrupt.py`` so that dozens of interrupted builds do not
each pay the ~1.5 s CPU of importing torch on the 2-core CI machine. Every
child is a real process (its own pid, its own signal handlers installed by
:func:`edgeres.cli.main`, real SIGINT/SIGTERM delivery); only the imports are
shared. The forker starts no thread before forking, and children write to
fresh file objects, so no lock is inherited held.

Protocol: one JSON object per line on stdin, one reply per line on stdout.

* ``{"op": "spawn", "args": [...], "cwd": ..., "env": {...}, "log": PATH}`` -> ``{"pid": N}``
  (the child's stderr goes to ``log``, its stdout to ``log + ".out"``);
* ``{"op": "poll", "pid": N}`` -> ``{"status": None}`` while it runs, else its exit
  status (``-signum`` when a signal killed it);
* ``{"op": "quit"}``.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def _child(request: dict) -> None:
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["log"] + ".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            new = os.open(path, flags, 0o644)
            os.dup2(new, fd)
            os.close(new)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from edgeres.cli import main

        try:
            main(list(request["args"]))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve() -> None:
    import numpy  # noqa: F401
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import torch  # noqa: F401
    import torch.onnx  # noqa: F401

    import edgeres.build  # noqa: F401
    import edgeres.calibrate.api  # noqa: F401
    import edgeres.cli.build  # noqa: F401
    import edgeres.cli.calibrate  # noqa: F401
    import edgeres.data  # noqa: F401
    import edgeres.fold  # noqa: F401
    import edgeres.models  # noqa: F401
    import edgeres.pipeline  # noqa: F401
    import edgeres.precision  # noqa: F401

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "spawn":
            pid = os.fork()
            if pid == 0:
                _child(request)
            reply: dict = {"pid": pid}
        elif request["op"] == "poll":
            done, status = os.waitpid(request["pid"], os.WNOHANG)
            reply = {"status": None if done == 0 else os.waitstatus_to_exitcode(status)}
        else:
            break
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    serve()
