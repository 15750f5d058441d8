"""edgeres.tensorrt_version: parsing, ordering, NVIDIA's four-part plan rule, cache codes, ranges, the default."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeres.errors import CalibrationError, EdgeresError, TensorRTVersionError
from edgeres.tensorrt_version import (
    DEFAULT_TENSORRT,
    MIN_ADAPTER,
    MIN_TRTEXEC,
    SUPPORTED,
    TensorRTVersion,
    calibration_cache_code,
    is_version,
    parse_version,
    same_build,
    strongly_typed,
    version_from_calibration_cache_code,
)


@pytest.mark.parametrize("text, parts", [
    ("10.3.0", (10, 3, 0, None, "")),
    ("8.6.1.6", (8, 6, 1, 6, "")),
    ("10.3.0.30", (10, 3, 0, 30, "")),
    ("11.4.0.106", (11, 4, 0, 106, "")),  # what the 11.4 wheel's tensorrt_bindings/__init__.py says
    ("8.2", (8, 2, 0, None, "")),  # trtexec release branches
    ("10.0.0b6", (10, 0, 0, None, "b6")),  # the 10.0 early-access wheel
    (" 8.5.2 ", (8, 5, 2, None, "")),
])
def test_parse(text, parts):
    v = parse_version(text)
    assert (v.major, v.minor, v.patch, v.build, v.pre) == parts, f"{text!r} parsed as {v!r}"
    assert parse_version(str(v)) == v, f"{v} must round-trip through str()"


@pytest.mark.parametrize("junk", ["", "10", "abc", "8.x", "10.3.0.30.1", "10.3.0\n", "10.3\x00.0", "1" * 30 + ".0",
                                  "10.3.0-rc1", "v10.3.0", "１０.3.0", "10.3.0.1234567"])
def test_junk_is_refused_in_one_line(junk):
    with pytest.raises(TensorRTVersionError) as info:
        parse_version(junk)
    msg = str(info.value)
    assert "must look like 10.3.0" in msg and "\n" not in msg and "\x00" not in msg, f"message: {msg!r}"
    assert len(msg) < 120, f"a long junk string must be cut in the message: {msg!r}"
    assert not is_version(junk), f"is_version({junk!r}) must agree with parse_version"


def test_non_string_and_caller_error_type():
    with pytest.raises(TensorRTVersionError, match="must be a string"):
        parse_version(10.3)  # type: ignore[arg-type]
    with pytest.raises(CalibrationError, match="must look like"):
        parse_version("x", error=CalibrationError)
    assert issubclass(TensorRTVersionError, EdgeresError), "one hierarchy: the CLI maps it to exit 2"


def test_ordering_and_tuple_prefixes():
    order = ["8.2.1", "8.5.2", "8.5.2.2", "8.6.1", "10.0.0b6", "10.0.0", "10.3.0", "10.3.0.26", "10.3.0.30", "11.4.0.106"]
    versions = [parse_version(v) for v in order]
    assert sorted(reversed(versions)) == versions, f"sorted order wrong: {sorted(reversed(versions))}"
    v = parse_version("10.3.0.30")
    assert v >= (10, 3) and v >= (10, 3, 0) and not v < (10, 3) and v < (10, 4) and v > (10, 2), "prefix comparison"
    assert (8, 5) <= parse_version("8.5.2") < (11, 0), "tuples compare on either side"


@pytest.mark.parametrize("a, b, expected", [
    ("10.3.0.30", "10.3.0.30", True),
    ("10.3.0", "10.3.0", True),  # both pip wheels of one release: the same three parts
    ("10.3.0.26", "10.3.0.30", False),  # NVIDIA: the build must match too
    ("10.3.0", "8.6.1", False),
    ("10.3.0", "10.3.1", False),
    ("10.0.0b6", "10.0.0", False),
    ("10.3.0", "10.3.0.30", None),  # one side has no build number: unknown
    ("10.3.0.30", "10.3.0", None),
])
def test_same_build(a, b, expected):
    assert same_build(a, b) is expected, f"same_build({a}, {b}) must be {expected}"


@pytest.mark.parametrize("version, code", [("8.5.2", 8502), ("8.6.1", 8601), ("10.3.0", 100300), ("10.0.1", 100001),
                                           ("10.13.2", 101302), ("10.3.0.30", 100300)])
def test_calibration_cache_codes(version, code):
    assert calibration_cache_code(version) == code, f"{version} must encode as NV_TENSORRT_VERSION {code}"
    assert version_from_calibration_cache_code(code).release == parse_version(version).release, f"{code} decodes back"


def test_calibration_cache_code_bounds():
    with pytest.raises(TensorRTVersionError, match="minor 0..99"):
        calibration_cache_code("10.100.0")
    with pytest.raises(TensorRTVersionError, match="minor 0..9 "):
        calibration_cache_code("8.10.0")  # would encode as 9000, i.e. 9.0.0


@given(st.integers(1, 12), st.integers(0, 99), st.integers(0, 99))
def test_calibration_cache_code_round_trips(major, minor, patch):
    v = TensorRTVersion(major, minor if major >= 10 else minor % 10, patch)
    assert version_from_calibration_cache_code(calibration_cache_code(v)) == v, f"{v} must round-trip"


def test_supported_ranges_and_default():
    assert MIN_ADAPTER == (8, 5) and MIN_TRTEXEC == (8, 2), "adapter 8.5+ (name-based API); build.sh 8.2+ (Nano/TX2)"
    assert SUPPORTED["trtexec"].contains("8.2.1") and not SUPPORTED["adapter"].contains("8.2.1"), "8.2 via build.sh only"
    assert SUPPORTED["calibration_cache"].contains("10.3.0") and not SUPPORTED["calibration_cache"].contains("11.0.0"), (
        "calibration caches stop at 10.x"
    )
    assert all(r.reason for r in SUPPORTED.values()), "every range says why"
    assert strongly_typed("11.4.1") and not strongly_typed("10.3.0.30"), "11.0 is strongly typed"
    assert is_version(DEFAULT_TENSORRT) and SUPPORTED["adapter"].contains(DEFAULT_TENSORRT), "the default is supported"


def test_default_is_the_targets_default():
    from edgeres.targets import load_target

    assert load_target("jetson-orin").default_tensorrt == DEFAULT_TENSORRT, "the shipped Orin profile defaults to it"


def test_module_is_pure():
    code = "import sys, edgeres.tensorrt_version, edgeres._tensorrt; print(sorted(m for m in ('tensorrt', 'torch', 'onnx', 'numpy', 'click') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"the version module and the shims must import nothing heavy: {out}"


@pytest.mark.parametrize(("version", "sharing", "preview", "shared_unbuilt", "shared_built"), [
    ("8.5.2.2", "never", False, False, False),     # JetPack 5.1: separate profile per concurrent context
    ("8.6.2.3", "preview", True, False, True),     # JetPack 6.0: PROFILE_SHARING_0806 opt-in
    ("8.6.1", "preview", True, False, True),       # the 8.6 pip wheel reports three parts
    ("10.3.0.30", "always", False, True, True),    # JetPack 6.1/6.2: every context gets profile 0
    ("11.4.0.106", "always", False, True, True),
])
def test_context_rules_per_release(version, sharing, preview, shared_unbuilt, shared_built):
    from edgeres.tensorrt_version import context_rule, contexts_share_profiles, needs_profile_sharing_feature

    assert context_rule(version).sharing == sharing, f"TensorRT {version}: {context_rule(version)}"
    assert needs_profile_sharing_feature(version) is preview, f"TensorRT {version}: preview feature"
    assert contexts_share_profiles(version, None) is shared_unbuilt, f"TensorRT {version}: unrecorded sidecar"
    assert contexts_share_profiles(version, False) is shared_unbuilt, f"TensorRT {version}: built without sharing"
    assert contexts_share_profiles(version, True) is shared_built, f"TensorRT {version}: built with sharing"
    assert "NvInfer" in context_rule(version).source, "each rule cites the header it follows"


def test_context_rules_cover_every_supported_release_without_gaps():
    from edgeres.tensorrt_version import CONTEXT_RULES, MIN_ADAPTER, TensorRTVersionError, context_rule

    assert CONTEXT_RULES[0].since == MIN_ADAPTER, "rules start where the adapter's support starts"
    for before, after in zip(CONTEXT_RULES, CONTEXT_RULES[1:]):
        assert before.until == after.since, f"gap or overlap between {before.since} and {after.since}"
    assert CONTEXT_RULES[-1].until is None, "the last rule is open-ended"
    with pytest.raises(TensorRTVersionError, match="expected 8.5 or later"):
        context_rule("8.4.3")
