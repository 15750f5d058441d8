"""SIGINT and SIGTERM at every phase of real ``edgeres build`` / ``edgeres calibrate`` processes.

Each case starts the CLI in a subprocess with ``EDGERES_TEST_PAUSE=<checkpoint>``
(:func:`edgeres._interrupt.checkpoint`), waits until it reports the pause,
sends the signal, and then checks what the issue asks: exit 128+signum with
one ``error: interrupted`` line that tells the truth, ``OUT`` either absent
(when there was none), the complete earlier result (hash for hash) or the
complete new one (hash for hash against an uninterrupted run), and nothing
else beside it (no ``.OUT.*.tmp``/``.old``). Cases run four at a time, each a
real process forked by ``tests/_forker.py`` (which holds torch imported, so
the cases fit the CI budget); one case runs as a fresh ``python -c`` process.
In-process tests of the same mechanism are in ``tests/test_io.py``.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

import edgeres

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only: the cases are forked processes")

CLI = [sys.executable, "-c", "from edgeres.cli import main; main()"]
ROOT = Path(edgeres.__file__).resolve().parent.parent
BUILD = ["build", "--target", "jetson-orin", "--precision", "fp16"]
BUILD_OLD = [*BUILD, "--batch", "1", "--max-batch", "2"]  # an earlier result that differs from the new one
SIGNALS = (signal.SIGINT, signal.SIGTERM)

# checkpoint -> the OUT state an interruption there must leave when an earlier result exists
BUILD_POINTS = {
    "stage:fold": "old", "stage:export": "old", "atomic_path:staged": "old", "stage:fp16 onnx": "old",
    "stage:bundle": "old", "atomic_dir:staged": "old", "atomic_dir:exchanged": "new",
}
CALIBRATE_POINTS = {
    "calibrate:front_end": "old", "atomic_path:staged": "old", "calibrate:model_onnx": "old",
    "calibrate:statistics": "old", "calibrate:write": "old", "atomic_files:staged": "old",
    "atomic_dir:staged": "old", "atomic_dir:exchanged": "new",
}


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


class Forker:
    """Client of ``tests/_forker.py``: real CLI processes without re-importing torch for each."""

    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "_forker.py")], cwd=cwd, env=_env(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lock = threading.Lock()
        self.logs = cwd / "logs"
        self.logs.mkdir()
        self.count = 0
        assert json.loads(self._readline()) == {"ready": True}, "the forker did not start"

    def _readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def ask(self, **request: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        with self.lock:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            return json.loads(self._readline())

    def run(self, args: list[str], cwd: Path, *, pause: str | None = None, signum: int | None = None,
            timeout_s: float = 180.0) -> tuple[int, str]:
        """(exit status, stderr) of ``edgeres ARGS``; with ``pause``, ``signum`` is sent once it pauses there."""
        with self.lock:
            self.count += 1
            log = self.logs / f"{self.count}.txt"
        env = _env(**({"EDGERES_TEST_PAUSE": pause, "EDGERES_TEST_PAUSE_S": "120"} if pause else {}))
        pid = self.ask(op="spawn", args=args, cwd=str(cwd), env=env, log=str(log))["pid"]
        deadline = time.monotonic() + timeout_s
        status = None
        signalled = pause is None
        while status is None and time.monotonic() < deadline:
            if not signalled and log.exists() and f"edgeres-test-pause: {pause}\n" in log.read_text():
                os.kill(pid, signum or signal.SIGTERM)
                signalled = True
            time.sleep(0.02)
            status = self.ask(op="poll", pid=pid)["status"]
        if status is None:
            os.kill(pid, signal.SIGKILL)
            while status is None:
                status = self.ask(op="poll", pid=pid)["status"]
        return int(status), log.read_text()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)


def snapshot(folder: Path) -> dict[str, str] | None:
    """name -> sha256 of every file in ``folder`` (hidden ones too); calib_report.json without its wall times."""
    if not folder.exists():
        return None
    files = {}
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        if path.name == "calib_report.json":
            report = json.loads(data)
            report.pop("timing", None)
            data = json.dumps(report, sort_keys=True).encode()
        files[path.name] = hashlib.sha256(data).hexdigest()
    return files


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("interrupt")


@pytest.fixture(scope="module")
def forker(work: Path) -> Iterator[Forker]:
    client = Forker(work)
    yield client
    client.close()


@pytest.fixture(scope="module")
def calibrate_args(work: Path) -> tuple[list[str], list[str]]:
    """(new, old) argument lists of a small reference-model calibration (16 calibration, 16 evaluation samples)."""
    from edgeres.reference import reference_data_path

    with np.load(reference_data_path()) as ref:
        np.savez(work / "eval.npz", images=ref["test_images"][:16], labels=ref["test_labels"][:16])
    new = ["calibrate", "--calib-size", "16", "--eval-data", str(work / "eval.npz"), "--quiet"]
    return new, [*new, "--method", "max"]


@pytest.fixture(scope="module")
def references(work: Path, forker: Forker, calibrate_args: tuple[list[str], list[str]]) -> dict[str, Path]:
    """Uninterrupted outputs: the earlier ('old') and the expected new result of each command, made in parallel."""
    jobs = {"build-new": BUILD, "build-old": BUILD_OLD, "calibrate-new": calibrate_args[0], "calibrate-old": calibrate_args[1]}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        done = {name: pool.submit(forker.run, [*args, "-o", str(work / name)], work) for name, args in jobs.items()}
    for name, future in done.items():
        status, stderr = future.result()
        assert status == 0, f"{name} failed: {stderr[-2000:]}"
    return {name: work / name for name in jobs}


def interrupt_at(forker: Forker | None, args: list[str], point: str, signum: int, case: Path,
                 old: Path | None) -> dict[str, object]:
    """Run ``edgeres ARGS -o case/OUT`` (OUT a copy of ``old``, or absent), signal it at ``point``; what it left.

    ``forker`` None: a fresh ``python -c`` process instead of a forked one.
    """
    case.mkdir()
    out = case / "OUT"
    if old is not None:
        shutil.copytree(old, out)
    if forker is not None:
        status, stderr = forker.run([*args, "-o", str(out)], case, pause=point, signum=signum)
    else:
        proc = subprocess.Popen([*CLI, *args, "-o", str(out)], cwd=case, stderr=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, text=True,
                                env=_env(EDGERES_TEST_PAUSE=point, EDGERES_TEST_PAUSE_S="120"))
        seen = []
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                seen.append(line)
                if line.strip() == f"edgeres-test-pause: {point}":
                    proc.send_signal(signum)
                    break
            seen.append(proc.communicate(timeout=120)[1] or "")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        status, stderr = int(proc.returncode), "".join(seen)
    return {"rc": status, "stderr": stderr, "out": snapshot(out),
            "beside": sorted(p.name for p in case.iterdir() if p.name != "OUT")}


def _cases(points: dict[str, str]) -> list[tuple[str, int, str]]:
    """(point, signal, state of OUT before): both signals at every point; earlier result present or absent in turn."""
    cases = []
    for i, (point, expected) in enumerate(points.items()):
        for j, signum in enumerate(SIGNALS):
            before = "old" if expected == "new" or (i + j) % 2 == 0 else "absent"  # an exchange needs an earlier result
            cases.append((point, signum, before))
    return cases


def _check(got: dict[str, object], signum: int, expect: str, expected: dict[str, str] | None) -> list[str]:
    """What is wrong with one interrupted run (empty: nothing)."""
    name = signal.Signals(signum).name
    lines = [line for line in str(got["stderr"]).splitlines() if line.startswith("error:")]
    problems = []
    if got["rc"] != 128 + signum:
        problems.append(f"exit {got['rc']}, expected {128 + signum}")
    if len(lines) != 1 or not lines[0].startswith(f"error: interrupted ({name})"):
        problems.append(f"error lines {lines}")
    elif ("after writing" in lines[0]) != (expect == "new"):
        problems.append(f"message does not say what is true: {lines[0]}")
    if "Traceback" in str(got["stderr"]):
        problems.append("a traceback")
    if got["out"] != expected:
        problems.append(f"OUT is {got['out']}, expected the {expect} result {expected}")
    if got["beside"]:
        problems.append(f"left beside OUT: {got['beside']}")
    return problems


def _check_all(forker: Forker, args: list[str], points: dict[str, str], old: Path, new: Path, work: Path, tag: str) -> int:
    cases = _cases(points)
    expected_files = {"old": snapshot(old), "new": snapshot(new), "absent": None}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = {
            (point, signum, before): pool.submit(
                interrupt_at, forker, args, point, signum, work / f"{tag}-{k}", old if before == "old" else None)
            for k, (point, signum, before) in enumerate(cases)
        }
    failures = []
    for (point, signum, before), future in futures.items():
        got = future.result()
        expect = points[point] if before == "old" else "absent"
        problems = _check(got, signum, expect, expected_files[expect])
        if problems:
            failures.append(f"{point} {signal.Signals(signum).name} (OUT {before} before): {'; '.join(problems)}\n"
                            f"{str(got['stderr'])[-1500:]}")
    assert not failures, f"{len(failures)} of {len(cases)} interrupted {tag} runs failed:\n" + "\n".join(failures)
    return len(cases)


def test_build_interrupted_at_every_stage(forker: Forker, references: dict[str, Path], work: Path) -> None:
    assert references["build-new"] != references["build-old"] and snapshot(references["build-new"]) != snapshot(
        references["build-old"]), "the earlier and the new build must differ, or the check proves nothing"
    count = _check_all(forker, BUILD, BUILD_POINTS, references["build-old"], references["build-new"], work, "build")
    assert count == 2 * len(BUILD_POINTS), "every stage under both signals"


def test_calibrate_interrupted_at_every_step(forker: Forker, references: dict[str, Path],
                                             calibrate_args: tuple[list[str], list[str]], work: Path) -> None:
    assert snapshot(references["calibrate-new"]) != snapshot(references["calibrate-old"]), "old and new must differ"
    count = _check_all(forker, calibrate_args[0], CALIBRATE_POINTS, references["calibrate-old"], references["calibrate-new"],
                       work, "calibrate")
    assert count == 2 * len(CALIBRATE_POINTS), "every step under both signals"


def test_fresh_process_sigterm_while_bundling(references: dict[str, Path], work: Path) -> None:
    """One case in a process of its own (``python -c``), as a user's shell or a job runner starts it."""
    got = interrupt_at(None, BUILD, "stage:bundle", signal.SIGTERM, work / "fresh", references["build-old"])
    problems = _check(got, signal.SIGTERM, "old", snapshot(references["build-old"]))
    assert not problems, f"{problems}\n{got['stderr']}"


def test_uninterrupted_rerun_replaces_own_output(forker: Forker, references: dict[str, Path], work: Path) -> None:
    """The same command replaces its earlier output (the marker says it made it); the result is complete."""
    out = work / "rerun"
    shutil.copytree(references["build-old"], out)
    status, stderr = forker.run([*BUILD, "-o", str(out)], work)
    assert status == 0, stderr
    assert snapshot(out) == snapshot(references["build-new"]), "the new build replaced the earlier one whole"
    assert not [p for p in work.iterdir() if p.name.startswith(".rerun.")], "no temporary folder left"
