"""The CLI: thin commands, one-line errors with exit code 2, no torch at --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner, Result

from edgeres import __version__
from edgeres.cli import cli


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_version_and_help_do_not_import_torch() -> None:
    code = (
        "import sys; from edgeres.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'tensorrt') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out, f"--help imported heavy modules: {out[-200:]}"
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.output, f"--version: {result.output}"


def test_info_counts() -> None:
    result = run("info", "resnet50", "--stride-in", "v1")
    assert result.exit_code == 0, result.output
    assert "25,557,032" in result.output and "3.86 G" in result.output, f"params and MACs: {result.output}"
    data = json.loads(run("info", "resnet20", "--json").output)
    assert data["params"] == 269_722 and data["bn_layers"] == 19, f"json info: {data}"
    assert data["weights_bytes"]["int8"] == data["params"], "INT8 weights are one byte per parameter"


def test_export_writes_checked_onnx(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    result = run("export", "--arch", "resnet20", "-o", str(out))
    assert result.exit_code == 0, result.output
    proto = onnx.load(out)
    assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node), "folded by default"
    static = tmp_path / "s.onnx"
    assert run("export", "--arch", "resnet20", "--batch", "4", "-o", str(static)).exit_code == 0, "static export"
    dims = onnx.load(static).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 4, "--batch 4 gives a static batch of 4"


def _assert_one_line_error(result: Result, pattern: str) -> None:
    assert result.exit_code == 2, f"exit code {result.exit_code}, expected 2: {result.output}"
    err = result.stderr
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), f"one 'error:' line: {err!r}"
    assert pattern in lines[-1], f"{pattern!r} not in {lines[-1]!r}"
    assert "Traceback" not in err, "no traceback without --debug"


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["info", "resnet5"], "did you mean"),
        (["export", "--arch", "resnt18", "-o", "{tmp}/m.onnx"], "unknown architecture"),
        (["export", "--arch", "resnet20", "-o", "{tmp}/missing/m.onnx"], "does not exist"),
        (["export", "--arch", "resnet20", "--weights", "{tmp}/nope.pth", "-o", "{tmp}/m.onnx"], "does not exist"),
        (["export", "--arch", "resnet18", "--weights", "{tmp}/r20.pth", "-o", "{tmp}/m.onnx"], "look like resnet20"),
        (["export", "--arch", "resnet20", "--weights", "{tmp}/junk.pth", "-o", "{tmp}/m.onnx"], "not a readable"),
        (["export", "--arch", "resnet20", "--batch", "2", "--dynamic-batch", "-o", "{tmp}/m.onnx"], "exclude each other"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, args: list[str], pattern: str) -> None:
    import torch

    from edgeres.models import create_model

    torch.save(create_model("resnet20").state_dict(), tmp_path / "r20.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x80\x04junk")
    before = set(tmp_path.iterdir())
    result = run(*[a.format(tmp=tmp_path) for a in args])
    _assert_one_line_error(result, pattern)
    assert set(tmp_path.iterdir()) == before, "a failed command writes nothing"


def test_debug_shows_traceback() -> None:
    result = run("--debug", "info", "resnet5")
    assert result.exit_code != 0 and result.exception is not None, "--debug re-raises the library error"


def test_an_output_file_never_replaces_an_input(tmp_path: Path) -> None:
    """export -o naming the --weights, bench --json/--plot naming the model: refused before any work."""
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not read: refused first")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not read either")
    cases = [
        (["export", "--arch", "resnet20", "--weights", str(weights), "-o", str(weights)], weights),
        (["bench", str(model), "--no-reference", "--json", str(model)], model),
        (["bench", str(model), "--no-reference", "--plot", str(model)], model),
    ]
    for args, victim in cases:
        before = victim.read_bytes()
        result = run(*args)
        assert result.exit_code == 2 and "is an input of this command" in result.stderr, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1, f"one line: {result.stderr}"
        assert victim.read_bytes() == before, f"{victim.name} is untouched"


# ---- issue 14: one form for every error (click's usage errors included), bounded options ----------

USAGE_CASES = [
    (["--frob"], "No such option '--frob'"),
    (["nosuch"], "No such command 'nosuch'"),
    (["build"], "Missing option '--target'"),
    (["build", "-t", "jetson-orin", "--frob"], "No such option"),
    (["build", "-t", "jetson-orin", "--precision", "int3"], "'int3' is not one of"),
    (["build", "-t", "jetson-orin", "--batch", "many"], "'many' is not a valid integer"),
    (["build", "-t", "jetson-orin", "--batch", "100000"], "--batch"),
    (["build", "-t", "jetson-orin", "--max-batch", "99999999999"], "--max-batch"),
    (["build", "-t", "jetson-orin", "--dla-core", "99"], "--dla-core"),
    (["build", "-t", "jetson-orin", "--workspace", "999999999999"], "--workspace"),
    (["build", "-t", "jetson-orin", "--calib-size", "1000000000000"], "--calib-size"),
    (["calibrate", "--calib-size", "0"], "--calib-size"),
    (["calibrate", "--calib-size", "1e9"], "not a valid integer"),
    (["export", "--opset", "99", "-o", "x.onnx"], "--opset"),
    (["export", "--opset", "12", "-o", "x.onnx"], "--opset"),
    (["export", "--batch", "1000000", "-o", "x.onnx"], "--batch"),
    (["export", "--input-size", "1000000", "-o", "x.onnx"], "--input-size"),
    (["export"], "Missing option '-o'"),
    (["info", "resnet18", "--num-classes", "1000000000"], "--num-classes"),
    (["info", "resnet18", "--input-size", "99999999"], "--input-size"),
    (["bench", "--iterations", "1000000000000"], "--iterations"),
    (["bench", "--iterations", "1e12"], "not a valid integer"),
    (["bench", "--warmup", "1e308"], "--warmup"),
    (["bench", "--warmup", "inf"], "--warmup"),
    (["bench", "--duration", "1e308"], "--duration"),
    (["bench", "--duration", "nan"], "--duration"),
    (["bench", "--buffers", "1000000000"], "--buffers"),
    (["bench", "--agreement-samples", "1000000000000"], "--agreement-samples"),
    (["bench", "--rounds", "100000000"], "--rounds"),
    (["bench", "--warmup-iterations", "100000000000"], "--warmup-iterations"),
    (["bench", "--threads", "100000"], "--threads"),
    (["bench", "--batch", "1,2,100000"], "--batch takes at most"),
    (["compile"], "Missing argument 'BUNDLE'"),
    (["compile", ".", "--workspace", "0"], "--workspace"),
    (["targets", "--sources", "extra-arg"], "unexpected extra argument"),
    (["calibrate", "--seed", "-1"], "--seed"),
    (["export", "--arch", "resnet18", "--seed", str(2**64)], "--seed"),
]


@pytest.mark.parametrize("args, pattern", USAGE_CASES, ids=[" ".join(a)[:40] for a, _ in USAGE_CASES])
def test_usage_errors_are_one_error_line_exit_2(args: list[str], pattern: str) -> None:
    result = run(*args)  # CliRunner calls cli.main, as the console script does
    assert result.exit_code == 2, f"{args}: exit {result.exit_code}, {result.output!r}"
    err = result.stderr
    assert err.count("\n") == 1 and err.startswith("error: "), f"{args}: one 'error:' line, got {err!r}"
    assert pattern in err, f"{pattern!r} not in {err!r}"
    assert "Usage:" not in err and "Traceback" not in err, f"no usage block or traceback: {err!r}"


@pytest.mark.parametrize("args", [["--help"], ["build", "--help"], ["bench", "-h"], ["compile", "--help"]])
def test_help_still_works(args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 0 and result.output.startswith("Usage: "), f"{args}: {result.output[:200]!r}"


def test_bare_group_prints_help_not_an_error() -> None:
    result = run()
    assert "Usage: " in result.output and "Commands" in result.output, f"bare `edgeres` shows the help: {result.output!r}"


def test_console_script_usage_error_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-c", "from edgeres.cli import main; main()", "export", "--opset", "99"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, f"one line, exit 2: {done.returncode} {done.stderr!r}"
    assert done.stderr.startswith("error: Invalid value for '--opset'"), done.stderr


def test_cli_opset_bound_is_torchs(tmp_path: Path) -> None:
    from edgeres.cli._options import MAX_OPSET
    from edgeres.export import max_export_opset

    assert MAX_OPSET == max_export_opset(), f"--opset allows up to {MAX_OPSET}, torch's exporter writes {max_export_opset()}"
    from edgeres.cli._options import DEFAULT_OPSET, MIN_OPSET
    from edgeres import export

    assert (MIN_OPSET, DEFAULT_OPSET) == (export.MIN_OPSET, export.DEFAULT_OPSET), "the CLI repeats edgeres.export's opsets"


HOSTILE_FILE_CASES = [
    # (what to make in tmp, args, pattern)
    ("fifo:data.npy", ["calibrate", "--arch", "resnet20", "--calib-data", "{tmp}/data.npy", "-o", "{tmp}/out"], "FIFO"),
    ("fifo:targets/evil.toml", ["targets", "--targets-dir", "{tmp}/targets"], "FIFO"),
    ("text:targets/MyDev.toml=x = 1", ["build", "-t", "MyDev", "--targets-dir", "{tmp}/targets", "-o", "{tmp}/out"],
     "rename it to mydev.toml"),
    ("bytes:targets/deep.toml=" + "a = " + "[" * 3000, ["targets", "--targets-dir", "{tmp}/targets"], "nests"),
    ("bytes:targets/bin.toml=\xff\xfe", ["targets", "--targets-dir", "{tmp}/targets"], "not UTF-8"),
    ("text:empty.onnx=", ["calibrate", "--from-cache", "{tmp}/c.cache", "--onnx", "{tmp}/empty.onnx", "-o", "{tmp}/out"],
     "is empty (0 bytes)"),
    ("text:big.cache=TRT-" + "9" * 5000 + "-EntropyCalibration2\n",
     ["calibrate", "--from-cache", "{tmp}/big.cache", "--onnx", "{tmp}/m.onnx", "-o", "{tmp}/out"], "line 1"),
    ("none", ["calibrate", "--from-cache", "{tmp}/c.cache", "--onnx", "{tmp}/m.onnx", "-o", "/proc/edgeres-no-such/out"],
     "/proc/edgeres-no-such"),
    ("none", ["calibrate", "--from-cache", "{tmp}/c.cache", "--onnx", "{tmp}/m.onnx", "-o", "/proc/edgeres-test-out"],
     "/proc/edgeres-test-out"),
    ("bundle-symlink", ["compile", "{tmp}/bundle", "--verify-only"], "symbolic link"),
    ("bundle-extra", ["compile", "{tmp}/bundle", "--verify-only"], "does not list"),
    ("bundle-field", ["compile", "{tmp}/bundle", "--verify-only"], "min_batch"),
]


def _make_hostile(tmp: Path, spec: str) -> None:
    import os

    from tests.test_bundle import _bundle

    if spec.startswith("fifo:"):
        path = tmp / spec[5:]
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
    elif spec.startswith(("text:", "bytes:")):
        kind, rest = spec.split(":", 1)
        name, _, content = rest.partition("=")
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("latin1") if kind == "bytes" else content.encode())
    elif spec.startswith("bundle-"):
        out = _bundle(tmp)
        if spec == "bundle-symlink":
            (tmp / "elsewhere").write_bytes((out / "model.onnx").read_bytes())
            (out / "model.onnx").unlink()
            (out / "model.onnx").symlink_to(tmp / "elsewhere")
        elif spec == "bundle-extra":
            (out / "model.engine").write_bytes(b"handed to TensorRT")
        else:
            data = json.loads((out / "manifest.json").read_text())
            (out / "manifest.json").write_text(json.dumps({**data, "min_batch": "many"}))
    (tmp / "c.cache").write_text("TRT-100300-EntropyCalibration2\ninput: 3c010a14\n")
    x = onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["input"], ["y"])], "g", [x], [y])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(tmp / "m.onnx"))


@pytest.mark.parametrize("make, args, pattern", HOSTILE_FILE_CASES, ids=[m.split("=")[0][:30] for m, _, _ in HOSTILE_FILE_CASES])
def test_hostile_files_are_one_error_line(tmp_path: Path, make: str, args: list[str], pattern: str) -> None:
    import os

    if make.startswith("fifo:") and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs")
    _make_hostile(tmp_path, make)
    result = run(*[a.format(tmp=tmp_path) for a in args])
    _assert_one_line_error(result, pattern)
    assert result.exit_code == 2, f"exit 2: {result.exit_code}"
