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
