"""Property-based tests of every reader of a user-supplied file, and the hostile-input regression corpus.

Property: any input either parses or raises an :class:`~edgeres.errors.EdgeresError` (one line);
never another exception, never a hang (inputs are small and every reader is bounded).

Readers: bundle manifest, plan sidecar, timing-cache stamp, calibration cache, target profile
(TOML), recipe, ``.npy`` header (and the ``.npy``/``.npz`` dataset loaders on top). Each gets
structured inputs (valid documents with fields replaced by arbitrary JSON/TOML values) and raw
bytes. ``EDGERES_FUZZ_SCALE`` multiplies the example counts (``benchmarks/fuzz_readers.py`` runs
with a large scale); CI runs the defaults (:data:`EXAMPLES`), a few thousand per reader.

The corpus (``tests/data/hostile/<reader>/``) holds the minimal inputs that broke the readers
before issue 14 (found by these properties against the old code, and by the issue's report),
each named for what it is; :func:`test_corpus_file_is_refused_in_one_line` replays them all.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeres._readers import json_object_from_bytes, toml_from_bytes
from edgeres.bundle_manifest import BUNDLE_FORMAT, manifest_from_dict
from edgeres.errors import EdgeresError
from edgeres.recipe import Recipe

SCALE = float(os.environ.get("EDGERES_FUZZ_SCALE", "1"))
EXAMPLES = {"manifest": 2000, "sidecar": 2000, "stamp": 1000, "cache": 2000, "target": 1500, "recipe": 2000,
            "npy": 2000, "npz": 500}
CORPUS = Path(__file__).parent / "data" / "hostile"
_TMP = Path(tempfile.mkdtemp(prefix="edgeres-fuzz-"))


def fuzz(reader: str, share: float = 0.5) -> Callable[[Any], Any]:
    """settings for one property of ``reader``: its share of the reader's example budget, no deadline, no database."""
    return settings(max_examples=max(10, int(EXAMPLES[reader] * share * SCALE)), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def refuses_cleanly(call: Callable[[], Any]) -> None:
    """The property: ``call`` returns, or raises one EdgeresError line (anything else fails the test)."""
    try:
        call()
    except EdgeresError as exc:
        assert "\n" not in str(exc), f"error message is not one line: {str(exc)[:300]!r}"


# ---- shared value strategies ------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.sampled_from(["", "fp16", "int8", "qdq", "10.3.0", "10.3.0\n", "input", "../x", "a\nb", "0" * 64]),
)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=6)


def mutated(good: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``good`` with some fields replaced by arbitrary JSON values, some removed, some added."""
    keys = sorted(good)
    return st.tuples(
        st.dictionaries(st.sampled_from(keys), JSON_VALUES, max_size=3),
        st.sets(st.sampled_from(keys), max_size=2),
        st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=2),
    ).map(lambda t: {**{k: v for k, v in good.items() if k not in t[1]}, **t[2], **t[0]})


def json_bytes(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return values.map(lambda v: json.dumps(v, allow_nan=True).encode())


def raw_json_like() -> st.SearchStrategy[bytes]:
    """Bytes that look like JSON: brackets, quotes, digits, escapes, invalid UTF-8."""
    pieces = st.sampled_from([b"{", b"}", b"[", b"]", b'"', b":", b",", b"1", b"-", b"e999", b"NaN", b"Infinity",
                              b"null", b"true", b"\\u0000", b"\\", b"\xff", b"\xc3", b" ", b'"a"', b"9" * 30])
    return st.lists(pieces, max_size=60).map(b"".join) | st.binary(max_size=200)


# ---- bundle manifest --------------------------------------------------------------------------------

GOOD_MANIFEST = {
    "format": BUNDLE_FORMAT, "target": "jetson-orin", "compute_capability": [8, 7], "precision": "int8",
    "int8_mode": "qdq", "input_name": "input", "output_name": "logits", "input_shape": [3, 224, 224],
    "min_batch": 1, "opt_batch": 4, "max_batch": 8, "workspace_mib": 1024, "dla_core": None, "gpu_fallback": True,
    "tensorrt_version": "10.3.0", "tensorrt_versions": ["10.3.0"],
    "files": {"model.onnx": {"sha256": "ab" * 32, "bytes": 10, "role": "FP32 ONNX"}},
    "recipe": {"input_size": [224, 224]}, "source": {"arch": "resnet50"}, "edgeres_version": "0.1.0",
}


def read_manifest_bytes(data: bytes) -> Any:
    return manifest_from_dict(json_object_from_bytes(data, "manifest.json"), "manifest.json")


@fuzz("manifest")
@given(mutated(GOOD_MANIFEST))
def test_manifest_fields_typed(doc: dict[str, Any]) -> None:
    refuses_cleanly(lambda: read_manifest_bytes(json.dumps(doc, allow_nan=True).encode()))


@fuzz("manifest", 0.3)
@given(raw_json_like())
def test_manifest_raw_bytes(data: bytes) -> None:
    refuses_cleanly(lambda: read_manifest_bytes(data))


@fuzz("manifest", 0.2)
@given(st.dictionaries(st.sampled_from(sorted(GOOD_MANIFEST["files"]["model.onnx"]) + ["x"]), JSON_VALUES, max_size=4),
       st.text(max_size=10))
def test_manifest_file_entries_typed(entry: dict[str, Any], name: str) -> None:
    doc = {**GOOD_MANIFEST, "files": {name: entry}}
    refuses_cleanly(lambda: read_manifest_bytes(json.dumps(doc).encode()))


# ---- plan sidecar and timing-cache stamp -----------------------------------------------------------

GOOD_SIDECAR = {
    "format": "edgeres-plan/1", "tensorrt_version": "10.3.0.30", "compute_capability": [8, 7], "device_name": "Orin",
    "precision": "int8", "inputs": [{"name": "input", "shape": [-1, 3, 224, 224], "dtype": "float32"}],
    "outputs": [{"name": "logits", "shape": [-1, 1000], "dtype": "float32"}], "min_batch": 1, "opt_batch": 4,
    "max_batch": 8, "plan_sha256": "ab" * 32, "onnx_sha256": "cd" * 32, "edgeres_version": "0.1.0",
    "dla_core": None, "target": "jetson-orin", "recipe": None, "extra": {},
}


def _read_sidecar_bytes(data: bytes) -> Any:
    from edgeres.sidecar import read_sidecar

    plan = _TMP / "model.plan"
    (_TMP / "model.plan.json").write_bytes(data)
    return read_sidecar(plan)


@fuzz("sidecar")
@given(mutated(GOOD_SIDECAR))
def test_sidecar_fields_typed(doc: dict[str, Any]) -> None:
    refuses_cleanly(lambda: _read_sidecar_bytes(json.dumps(doc, allow_nan=True).encode()))


@fuzz("sidecar", 0.25)
@given(st.lists(JSON_VALUES, max_size=3), st.booleans())
def test_sidecar_tensor_lists_typed(tensors: list[Any], inputs: bool) -> None:
    doc = {**GOOD_SIDECAR, ("inputs" if inputs else "outputs"): tensors}
    refuses_cleanly(lambda: _read_sidecar_bytes(json.dumps(doc).encode()))


@fuzz("sidecar", 0.25)
@given(raw_json_like())
def test_sidecar_raw_bytes(data: bytes) -> None:
    refuses_cleanly(lambda: _read_sidecar_bytes(data))


@fuzz("stamp", 1.0)
@given(mutated({"format": "edgeres-timing-cache/1", "tensorrt_version": "10.3.0.30"}) .map(json.dumps).map(str.encode)
       | raw_json_like())
def test_timing_cache_stamp(data: bytes) -> None:
    from edgeres.trt.loaders import read_timing_cache_stamp, timing_cache_version

    (_TMP / "timing.cache.json").write_bytes(data)
    refuses_cleanly(lambda: read_timing_cache_stamp(_TMP / "timing.cache", EdgeresError))
    version = timing_cache_version(_TMP / "timing.cache")
    assert version is None or isinstance(version, str), f"the lenient reader answers a version or None: {version!r}"


# ---- calibration cache -----------------------------------------------------------------------------

CACHE_HEADERS = st.one_of(
    st.builds(lambda code, name: f"TRT-{code}-{name}", st.integers(0, 10**12) | st.sampled_from([8502, 100300, 110400]),
              st.sampled_from(["EntropyCalibration2", "MinMaxCalibration", "X", ""])),
    st.text(max_size=30),
)
CACHE_LINES = st.one_of(
    st.builds(lambda name, bits: f"{name}: {bits}", st.text(max_size=12),
              st.integers(0, 2**32 - 1).map(lambda i: f"{i:08x}") | st.text(max_size=9)),
    st.text(max_size=20),
)


@fuzz("cache", 0.7)
@given(CACHE_HEADERS, st.lists(CACHE_LINES, max_size=8), st.sampled_from(["\n", "\r\n"]))
def test_calibration_cache_structured(header: str, lines: list[str], newline: str) -> None:
    from edgeres.calibrate.cache import parse_calibration_cache

    refuses_cleanly(lambda: parse_calibration_cache(newline.join([header, *lines]), "calib.cache"))


@fuzz("cache", 0.3)
@given(st.binary(max_size=300))
def test_calibration_cache_raw_bytes(data: bytes) -> None:
    from edgeres.calibrate.cache import read_calibration_cache

    path = _TMP / "calib.cache"
    path.write_bytes(data)
    refuses_cleanly(lambda: read_calibration_cache(path))


# ---- target profile (TOML) -------------------------------------------------------------------------

GOOD_PROFILE = {
    "name": "myboard", "display_name": "My board", "kind": "desktop",
    "sources": ["https://developer.nvidia.com/cuda-gpus"], "compute_capability": [8, 6], "dla_cores": 0,
    "precisions": ["fp32", "fp16", "int8"], "memory_gb": 12, "workspace_mib": 2048, "default_precision": "fp16",
    "int8_mode": "qdq", "default_batch": 1, "max_batch": 16, "tensorrt_versions": ["10.3.0"],
    "default_tensorrt": "10.3.0",
}
TOML_SCALARS = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True),
                         st.text(max_size=10), st.sampled_from(["myboard\ntouch /tmp/pwned", "10.3.0\n", "Bad"]))
TOML_VALUES = st.recursive(TOML_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3)), max_leaves=8)


def toml_text(value: Any) -> str:
    """A minimal TOML writer for the fuzzed documents (inline tables and arrays only)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value == float("inf") else "-inf" if value == float("-inf") else repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_text(v)}" for k, v in value.items()) + "}"


def _load_profile_bytes(data: bytes) -> Any:
    from edgeres.targets import target_from_file

    folder = _TMP / "targets"
    folder.mkdir(exist_ok=True)
    path = folder / "myboard.toml"
    path.write_bytes(data)
    return target_from_file(path)


@fuzz("target", 0.6)
@given(st.dictionaries(st.sampled_from(sorted(GOOD_PROFILE) + ["variants", "jetpack", "aliases"]), TOML_VALUES, max_size=3),
       st.sets(st.sampled_from(sorted(GOOD_PROFILE)), max_size=2))
def test_target_profile_fields_typed(replace: dict[str, Any], drop: set[str]) -> None:
    doc = {**{k: v for k, v in GOOD_PROFILE.items() if k not in drop}, **replace}
    text = "\n".join(f"{key} = {toml_text(value)}" for key, value in doc.items()) + "\n"
    refuses_cleanly(lambda: _load_profile_bytes(text.encode()))


@fuzz("target", 0.4)
@given(st.lists(st.sampled_from([b"a = ", b"[", b"]", b"{", b"}", b'"', b"'", b"\n", b"[[x]]", b"[t]", b"=", b"1",
                                 b"1979-05-27", b"nan", b"\xff", b"# ", b"\\", b"9" * 25, b"x.y.z = 1\n"]),
                max_size=50).map(b"".join) | st.binary(max_size=200))
def test_target_profile_raw_bytes(data: bytes) -> None:
    refuses_cleanly(lambda: _load_profile_bytes(data))
    refuses_cleanly(lambda: toml_from_bytes(data, "profile.toml"))


# ---- recipe ----------------------------------------------------------------------------------------

@fuzz("recipe", 0.8)
@given(mutated(Recipe().to_dict()))
def test_recipe_fields_typed(doc: dict[str, Any]) -> None:
    refuses_cleanly(lambda: Recipe.from_dict(doc))


@fuzz("recipe", 0.2)
@given(JSON_VALUES)
def test_recipe_any_value(value: Any) -> None:
    refuses_cleanly(lambda: Recipe.from_dict(value))


# ---- .npy headers and the array loaders ------------------------------------------------------------

def npy_bytes(header: str, data: bytes, version: tuple[int, int] = (1, 0)) -> bytes:
    body = header.encode("latin1", "replace")
    fmt = "<H" if version == (1, 0) else "<I"
    pad = (-(8 + struct.calcsize(fmt) + len(body) + 1)) % 64
    body = body + b" " * pad + b"\n"
    if fmt == "<H" and len(body) > 0xFFFF:
        body = body[:0xFFFF]
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, len(body)) + body + data


DESCRS = st.sampled_from(["<f4", ">f4", "|u1", "<i8", "|O", "<U4", "|V8", "<c8", "|b1", "<f2", "<M8[s]", "xx", "<f4,<f4"])
SHAPES = st.lists(st.integers(-(2**65), 2**65) | st.integers(0, 40), max_size=5).map(tuple) | st.text(max_size=6)
HEADERS = st.one_of(
    st.builds(lambda d, f, s: repr({"descr": d, "fortran_order": f, "shape": s}), DESCRS, st.booleans(), SHAPES),
    st.builds(lambda d: repr(d), st.dictionaries(st.sampled_from(["descr", "fortran_order", "shape", "x"]), SCALARS,
                                                 max_size=4)),
    st.text(max_size=40),
)
RECIPE_8 = Recipe(input_size=(8, 8), in_channels=3, resize=None, mean=(0.5,) * 3, std=(0.25,) * 3, num_classes=10)


@fuzz("npy", 0.5)
@given(HEADERS, st.binary(max_size=64), st.sampled_from([(1, 0), (2, 0), (3, 0), (9, 9)]))
def test_npy_header_structured(header: str, data: bytes, version: tuple[int, int]) -> None:
    from edgeres.data import array_header

    raw = npy_bytes(header, data, version)
    refuses_cleanly(lambda: array_header(io.BytesIO(raw), "x.npy", len(raw)))


@fuzz("npy", 0.3)
@given(st.binary(max_size=200).map(lambda b: b"\x93NUMPY" + b) | st.binary(max_size=200))
def test_npy_header_raw_bytes(raw: bytes) -> None:
    from edgeres.data import array_header

    refuses_cleanly(lambda: array_header(io.BytesIO(raw), "x.npy", len(raw)))


@fuzz("npy", 0.2)
@given(st.builds(lambda d, f, s: repr({"descr": d, "fortran_order": f, "shape": s}),
                 st.sampled_from(["<f4", "|u1", ">f4", "<f8", "|b1"]), st.booleans(),
                 st.lists(st.integers(0, 9), min_size=1, max_size=4).map(tuple) | st.just((2, 3, 8, 8))),
       st.binary(max_size=1600))
def test_npy_dataset_loader(header: str, data: bytes) -> None:
    from edgeres.data import load_dataset

    path = _TMP / "x.npy"
    path.write_bytes(npy_bytes(header, data))
    refuses_cleanly(lambda: load_dataset(path, RECIPE_8))


@fuzz("npz", 1.0)
@given(st.dictionaries(st.sampled_from(["images.npy", "labels.npy", "x.npy", "y", "images"]),
                       st.builds(npy_bytes, HEADERS, st.binary(max_size=800)) | st.binary(max_size=100), max_size=3))
def test_npz_dataset_loader(members: dict[str, bytes]) -> None:
    from edgeres.data import load_dataset

    path = _TMP / "x.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    refuses_cleanly(lambda: load_dataset(path, RECIPE_8))


# ---- the regression corpus -------------------------------------------------------------------------

def _read_corpus_file(reader: str, path: Path) -> Any:
    """Feed one corpus file to its reader (the folder names the reader)."""
    from edgeres.calibrate.cache import read_calibration_cache
    from edgeres.data import load_dataset
    from edgeres.targets import load_target

    if reader == "manifest":
        from edgeres.bundle_manifest import load_manifest_file

        return load_manifest_file(path)
    if reader == "sidecar":
        return _read_sidecar_bytes(path.read_bytes())
    if reader == "cache":
        return read_calibration_cache(path)
    if reader == "target":
        folder = _TMP / f"corpus-{path.stem}"
        folder.mkdir(exist_ok=True)
        data = path.read_bytes()
        name = data.split(b"\n", 1)[0][len(b"# file: "):].decode() if data.startswith(b"# file: ") else "myboard.toml"
        (folder / name).write_bytes(data)
        return load_target(Path(name).stem, folder)
    if reader == "recipe":
        return Recipe.from_dict(json_object_from_bytes(path.read_bytes(), str(path)))
    if reader in ("npy", "npz"):
        return load_dataset(path, RECIPE_8)
    raise AssertionError(f"corpus folder {reader!r} has no reader")


CORPUS_FILES = sorted(p for p in CORPUS.glob("*/*") if p.is_file() and p.name != "README.md")


def test_corpus_is_there() -> None:
    readers = {p.parent.name for p in CORPUS_FILES}
    assert {"manifest", "sidecar", "cache", "target", "recipe", "npy", "npz"} <= readers, f"corpus readers: {readers}"


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[f"{p.parent.name}/{p.name}" for p in CORPUS_FILES])
def test_corpus_file_is_refused_in_one_line(path: Path) -> None:
    with pytest.raises(EdgeresError) as info:
        _read_corpus_file(path.parent.name, path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 1000, f"one short line: {str(info.value)[:1200]!r}"
