"""Target profiles: shipped facts, schema errors naming file and field, lookup, `edgeres targets`."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeres.cli import cli
from edgeres.errors import TargetError
from edgeres.resources import shipped_dir
from edgeres.targets import list_targets, load_target

SHIPPED = {
    # name: (compute capability, DLA cores, has fast INT8) as recorded from NVIDIA's pages
    "jetson-nano": ((5, 3), 0, False),
    "jetson-tx2": ((6, 2), 0, False),
    "jetson-xavier-nx": ((7, 2), 2, True),
    "jetson-agx-xavier": ((7, 2), 2, True),
    "jetson-orin-nano": ((8, 7), 0, True),
    "jetson-orin-nx": ((8, 7), 1, True),
    "jetson-orin": ((8, 7), 2, True),
    "jetson-thor": ((11, 0), 0, True),
    "t4": ((7, 5), 0, True),
    "a100": ((8, 0), 0, True),
    "rtx30": ((8, 6), 0, True),
    "rtx40": ((8, 9), 0, True),
    "h100": ((9, 0), 0, True),
    "rtx50": ((12, 0), 0, True),
}

GOOD = """
name = "{name}"
display_name = "My board"
kind = "desktop"
sources = ["https://developer.nvidia.com/cuda-gpus"]
compute_capability = [8, 6]
dla_cores = 0
precisions = ["fp32", "fp16", "int8"]
memory_gb = 12
workspace_mib = 2048
default_precision = "fp16"
int8_mode = "qdq"
default_batch = 1
max_batch = 16
tensorrt_versions = ["10.3.0"]
default_tensorrt = "10.3.0"
"""


def test_shipped_profiles_have_the_recorded_facts() -> None:
    targets = {t.name: t for t in list_targets()}
    assert set(SHIPPED) <= set(targets), f"missing profiles: {set(SHIPPED) - set(targets)}"
    for name, (cc, dla, int8) in SHIPPED.items():
        t = targets[name]
        assert t.compute_capability == cc, f"{name}: compute capability {t.compute_capability} != {cc}"
        assert t.dla_cores == dla, f"{name}: DLA cores {t.dla_cores} != {dla}"
        assert t.supports("int8") == int8, f"{name}: fast INT8 {t.supports('int8')} != {int8}"
        assert t.sources and all(u.startswith("https://") for u in t.sources), f"{name}: sources recorded"
    assert load_target("jetson-orin-nx:16gb").dla_cores == 2, "Orin NX 16 GB has two DLA cores"
    assert load_target("jetson-orin").jetpack["6.1"] == "10.3.0", "JetPack 6.1 ships TensorRT 10.3"
    assert load_target("jetson-orin").jetpack["6.0"] == "8.6.2", "JetPack 6.0 ships TensorRT 8.6.2"
    assert load_target("jetson-xavier-nx").jetpack["5.1"] == "8.5.2", "JetPack 5.1 ships TensorRT 8.5.2"
    assert load_target("jetson-nano").jetpack["4.6.1"] == "8.2.1", "JetPack 4.6.1 ships TensorRT 8.2.1"


def test_profiles_are_found_in_the_checkout() -> None:
    assert (shipped_dir("targets") / "jetson-orin.toml").is_file(), "targets/ found from an editable install"


def test_lookup_aliases_variants_and_suggestions() -> None:
    assert load_target("a10").name == "rtx30" and load_target("L4").name == "rtx40", "aliases resolve"
    with pytest.raises(TargetError, match="did you mean jetson-orin"):
        load_target("jetson-orn")
    with pytest.raises(TargetError, match="no variant '32gb'"):
        load_target("jetson-orin-nx:32gb")


def test_precision_dla_batch_checks() -> None:
    nano = load_target("jetson-nano")
    with pytest.raises(TargetError, match="no fast INT8.*--precision fp16"):
        nano.resolve_precision("int8")
    assert nano.resolve_precision("best") == "fp16", "best falls back to fp16 without fast INT8"
    assert load_target("jetson-orin").resolve_precision("best") == "int8", "best is int8 where fast"
    with pytest.raises(TargetError, match="has no DLA"):
        load_target("jetson-orin-nano").check_dla_core(0)
    with pytest.raises(TargetError, match="2 DLA core"):
        load_target("jetson-orin").check_dla_core(2)
    with pytest.raises(TargetError, match="jetson-orin-nx:16gb"):
        load_target("jetson-orin-nx").check_dla_core(1)
    with pytest.raises(TargetError, match="outside target"):
        nano.check_batch(1, nano.max_batch + 1)
    with pytest.raises(TargetError, match="larger than max batch"):
        nano.check_batch(4, 2)


@pytest.mark.parametrize(
    "edit, field",
    [
        (("dla_cores = 0", "dla_cores = -1"), "dla_cores"),
        (("compute_capability = [8, 6]", "compute_capability = [8]"), "compute_capability"),
        (('precisions = ["fp32", "fp16", "int8"]', 'precisions = ["fp16", "int4"]'), "precisions"),
        (('default_precision = "fp16"', 'default_precision = "bf16"'), "default_precision"),
        (('sources = ["https://developer.nvidia.com/cuda-gpus"]', "sources = []"), "sources"),
        (('default_tensorrt = "10.3.0"', 'default_tensorrt = "8.6.1"'), "default_tensorrt"),
        (("max_batch = 16", "max_batch = 16\nfavourite_colour = 3"), "favourite_colour"),
        (("max_batch = 16\n", ""), "max_batch"),
    ],
)
def test_bad_profile_names_file_and_field(tmp_path: Path, edit: tuple[str, str], field: str) -> None:
    text = GOOD.format(name="myboard").replace(*edit)
    assert text != GOOD.format(name="myboard"), "the edit applies"
    (tmp_path / "myboard.toml").write_text(text)
    with pytest.raises(TargetError) as info:
        load_target("myboard", tmp_path)
    message = str(info.value)
    assert "myboard.toml" in message and field in message, f"error names file and field {field}: {message}"


def test_user_profile_and_cli_table(tmp_path: Path) -> None:
    (tmp_path / "myboard.toml").write_text(GOOD.format(name="myboard"))
    assert load_target("myboard", tmp_path).compute_capability == (8, 6), "user profile loads"
    result = CliRunner().invoke(cli, ["targets", "--targets-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("jetson-orin", "jetson-nano", "rtx50", "myboard"):
        assert name in result.output, f"{name} listed: {result.output}"
    (tmp_path / "broken.toml").write_text("name = [")
    bad = CliRunner().invoke(cli, ["targets", "--targets-dir", str(tmp_path)])
    assert bad.exit_code == 2, f"bad profile exits 2: {bad.output}"
    assert bad.stderr.startswith("error: ") and "broken.toml" in bad.stderr, f"one line naming the file: {bad.stderr}"
    assert len(bad.stderr.strip().splitlines()) == 1, f"one line: {bad.stderr}"


def test_wheel_ships_the_profiles(tmp_path: Path) -> None:
    """Build the wheel from a copy of the checkout and look for edgeres/_shipped/targets inside."""
    import shutil
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        if (root / name).exists():
            shutil.copy(root / name, src / name)
    for name in ("edgeres", "targets", "calib"):
        if (root / name).is_dir():
            shutil.copytree(root / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src), "-w", str(tmp_path / "whl")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"pip wheel failed: {done.stderr[-2000:]}"
    (wheel,) = (tmp_path / "whl").glob("edgeres-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (root / "targets").glob("*.toml")}
    inside = {n.rsplit("/", 1)[-1] for n in names if n.startswith("edgeres/_shipped/targets/")}
    assert shipped and shipped == inside, f"wheel profiles {sorted(inside)} vs checkout {sorted(shipped)}"
    if (root / "calib").is_dir() and any((root / "calib").iterdir()):
        assert any(n.startswith("edgeres/_shipped/calib/") for n in names), "calib/ shipped too"


def test_compute_capability_mismatch_is_one_comparison_and_message() -> None:
    from edgeres.targets import compute_capability_mismatch

    assert compute_capability_mismatch((8, 7), (8, 7), target="jetson-orin") is None, "same GPU: no mismatch"
    assert compute_capability_mismatch((8, 7), None) is None, "no GPU known: the caller reports that, not a mismatch"
    assert compute_capability_mismatch(None, (8, 6)) is None, "no expected capability: nothing to compare"
    why = compute_capability_mismatch((8, 7), (8, 6), target="jetson-orin", device_name="RTX 3060")
    assert why is not None and why.startswith("target jetson-orin has compute capability 8.7, this GPU (RTX 3060) has 8.6"), why
    assert "--allow-mismatch" in why, f"names the way out: {why}"
    assert "this GPU has 8.6" in (compute_capability_mismatch([8, 7], [8, 6]) or ""), "lists compare like tuples; no name"


# ---- issue 14: nothing from a profile can reach a generated file unchecked ------------------------

def test_profile_file_named_with_a_newline_is_refused_at_load(tmp_path: Path) -> None:
    name = "evil\ntouch /tmp/pwned"
    (tmp_path / "evil\ntouch pwned.toml").write_text(GOOD.format(name=name.replace("/tmp/", "")))
    with pytest.raises(TargetError, match="profile names are lower-case"):
        load_target("jetson-orin", tmp_path)


@pytest.mark.parametrize("edit, field", [
    (('name = "myboard"', 'name = "myboard\\ntouch /tmp/pwned"'), "name"),
    (('default_tensorrt = "10.3.0"', 'default_tensorrt = "10.3.0"\n[variants."16gb\\ntouch /tmp/pwned"]\nmemory_gb = 16'),
     "variants"),
    (("max_batch = 16", 'max_batch = 16\naliases = ["ok", "Bad\\nalias"]'), "aliases"),
    (('display_name = "My board"', 'display_name = "My\\u001b[31m board"'), "display_name"),
    (('default_tensorrt = "10.3.0"', 'default_tensorrt = "10.3.0\\n"'), "default_tensorrt"),
    (('tensorrt_versions = ["10.3.0"]', 'tensorrt_versions = ["10.3.0", " 10.3.0"]'), "tensorrt_versions"),
    (("compute_capability = [8, 6]", "compute_capability = [8, 1000000]"), "compute_capability"),
    (("memory_gb = 12", "memory_gb = inf"), "inf"),
    (("workspace_mib = 2048", "workspace_mib = 99999999999999"), "workspace_mib"),
    (('sources = ["https://developer.nvidia.com/cuda-gpus"]', 'sources = ["https://x\\n"]'), "sources"),
])
def test_hostile_profile_fields_are_refused_at_load(tmp_path: Path, edit: tuple[str, str], field: str) -> None:
    text = GOOD.format(name="myboard").replace(*edit)
    assert text != GOOD.format(name="myboard"), "the edit applies"
    (tmp_path / "myboard.toml").write_text(text)
    with pytest.raises(TargetError) as info:
        load_target("myboard", tmp_path)
    assert field in str(info.value) and "\n" not in str(info.value), f"one line naming {field}: {info.value!r}"


def test_profile_names_are_lower_case_and_lookup_is_case_insensitive(tmp_path: Path) -> None:
    (tmp_path / "myboard.toml").write_text(GOOD.format(name="myboard"))
    assert load_target("MyBoard", tmp_path).name == "myboard", "--target is case-insensitive"
    (tmp_path / "MyDev.toml").write_text(GOOD.format(name="MyDev"))
    with pytest.raises(TargetError, match="rename it to mydev.toml"):
        load_target("MyDev", tmp_path)


@pytest.mark.parametrize("target", ["jetson-orin\ntouch x", "jetson-orin;id", "../jetson-orin", "jetson-orin:16gb:x", "x" * 500])
def test_hostile_target_option_is_refused(target: str) -> None:
    with pytest.raises(TargetError) as info:
        load_target(target)
    assert len(str(info.value)) < 400 and "\n" not in str(info.value), f"one short line: {info.value!r}"


@pytest.mark.parametrize("version", ["10.3.0\n", " 10.3.0", "10.3.0;id", "10.3", "1" * 5000])
def test_trt_version_is_canonical_or_refused(version: str) -> None:
    target = load_target("jetson-orin")
    if version == "10.3":
        assert target.check_tensorrt(version) == "10.3", "a canonical short version is kept"
        return
    with pytest.raises(TargetError, match="--trt-version"):
        target.check_tensorrt(version)


@pytest.mark.parametrize("content, needle", [
    (b"name = \"x\"\n\xff\xfe", "not UTF-8"),
    (b"a = " + b"[" * 4000 + b"]" * 4000, "nests"),
    (b"x" * (2 << 20), "bytes; expected at most"),
])
def test_unreadable_profiles_are_one_line(tmp_path: Path, content: bytes, needle: str) -> None:
    (tmp_path / "myboard.toml").write_bytes(content)
    with pytest.raises(TargetError, match=needle):
        load_target("myboard", tmp_path)


def test_fifo_profile_is_refused_not_waited_on(tmp_path: Path) -> None:
    import os

    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs")
    os.mkfifo(tmp_path / "myboard.toml")
    with pytest.raises(TargetError, match="FIFO"):
        load_target("myboard", tmp_path)
