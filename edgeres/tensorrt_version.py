"""TensorRT versions: the one place that parses, compares and ranges them, and names the default.

Pure module (standard library and :mod:`edgeres.errors` only), so the runtime,
the adapter, calibration, targets and ``trtexec`` all read versions the same way.

* :class:`TensorRTVersion`: ``major.minor[.patch[.build]]`` plus an optional
  pre-release tag (``10.0.0b6``, the early-access wheels). ``trt.__version__`` is
  ``"10.3.0.30"`` from JetPack's packages and ``"10.3.0"`` from the 8.6/10.x pip
  wheels (their ``tensorrt_bindings/__init__.py`` hard-codes three parts); the
  11.x wheels say ``"11.4.0.106"``.
* :func:`same_build`: NVIDIA's rule for plans and timing caches. "Semantic
  versioning does not extend to serialized objects by default. To reuse plan
  files and timing caches, a version compatible engine must be used, otherwise
  version numbers must match across major, minor, patch, and build versions"
  (TensorRT documentation, Support Policies, "API Versioning":
  https://docs.nvidia.com/deeplearning/tensorrt/latest/reference/support-policies.html).
* :func:`calibration_cache_code`: ``NV_TENSORRT_VERSION`` as the calibration
  cache header writes it, ``major*1000 + minor*100 + patch`` before 10 and
  ``major*10000 + minor*100 + patch`` from 10 on (NvInfer headers of each release).
* :data:`SUPPORTED`: which versions each part of edgeres handles, with the reason.
* :data:`DEFAULT_TENSORRT`: the version bundles and caches are written for unless told otherwise.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Union

from edgeres.errors import EdgeresError, TensorRTVersionError

DEFAULT_TENSORRT = "10.3.0"  # JetPack 6.1/6.2 and the desktop targets' default (targets/*.toml default_tensorrt)

# digits are bounded so a pasted junk string cannot become a huge number; builds reach 3 digits (11.4.0.106)
_PATTERN = re.compile(r"(\d{1,3})\.(\d{1,3})(?:\.(\d{1,3})(?:\.(\d{1,6}))?)?(?:(a|b|rc)(\d{1,3}))?", re.ASCII)
_PRE_RANK = {"a": 0, "b": 1, "rc": 2, "": 3}  # PEP 440 order: alpha < beta < release candidate < final
_MAX_SHOWN = 40

VersionLike = Union["TensorRTVersion", str]


@dataclasses.dataclass(frozen=True, eq=True)
class TensorRTVersion:
    """One TensorRT version; ``build`` is None where the version string had three parts.

    Compares with another version (all parts; a missing build sorts before any build)
    or with a tuple of ints as a prefix: ``v >= (8, 5)`` means "8.5 or later", whatever
    the patch and build.
    """

    major: int
    minor: int
    patch: int = 0
    build: int | None = None
    pre: str = ""  # "b6" for 10.0.0b6; "" for a final release

    @classmethod
    def parse(cls, text: VersionLike, *, error: type[EdgeresError] = TensorRTVersionError) -> "TensorRTVersion":
        """``"10.3.0.30"`` -> TensorRTVersion(10, 3, 0, 30); junk raises ``error`` (default TensorRTVersionError).

        ``error`` lets a stage raise its own type (CalibrationError for caches, TargetError for
        profiles, EngineError in the runtime) so the hierarchy stays one per stage.
        """
        if isinstance(text, TensorRTVersion):
            return text
        if not isinstance(text, str):
            raise error(f"TensorRT version must be a string like 10.3.0, received {type(text).__name__} {text!r:.{_MAX_SHOWN}}")
        match = _PATTERN.fullmatch(text.strip(" "))
        if match is None:
            shown = repr(text[:_MAX_SHOWN]) + ("..." if len(text) > _MAX_SHOWN else "")
            raise error(f"TensorRT version must look like 10.3.0 or 10.3.0.30, received {shown}")
        major, minor, patch, build, tag, tag_number = match.groups()
        return cls(int(major), int(minor), int(patch or 0), None if build is None else int(build),
                   f"{tag}{int(tag_number)}" if tag else "")

    @property
    def major_minor(self) -> tuple[int, int]:
        return (self.major, self.minor)

    @property
    def release(self) -> tuple[int, int, int]:
        """``(major, minor, patch)``: what ``NV_TENSORRT_VERSION`` encodes."""
        return (self.major, self.minor, self.patch)

    def _key(self) -> tuple[int, ...]:
        rank = _PRE_RANK[re.sub(r"\d", "", self.pre)]
        number = int(re.sub(r"\D", "", self.pre) or 0)
        return (self.major, self.minor, self.patch, -1 if self.build is None else self.build, rank, number)

    def __lt__(self, other: object) -> bool:
        if isinstance(other, TensorRTVersion):
            return self._key() < other._key()
        if isinstance(other, tuple):
            return self._key()[: len(other)] < other
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        result = self.__lt__(other)
        return result if result is NotImplemented else not result

    def __gt__(self, other: object) -> bool:
        if isinstance(other, tuple):
            return self._key()[: len(other)] > other
        result = self.__le__(other)
        return result if result is NotImplemented else not result

    def __le__(self, other: object) -> bool:
        if isinstance(other, tuple):
            return self._key()[: len(other)] <= other
        if isinstance(other, TensorRTVersion):
            return self._key() <= other._key()
        return NotImplemented

    def __str__(self) -> str:
        build = "" if self.build is None else f".{self.build}"
        return f"{self.major}.{self.minor}.{self.patch}{build}{self.pre}"


def parse_version(text: VersionLike, *, error: type[EdgeresError] = TensorRTVersionError) -> TensorRTVersion:
    """:meth:`TensorRTVersion.parse` as a function (sort keys, ``map``)."""
    return TensorRTVersion.parse(text, error=error)


def is_version(text: object) -> bool:
    """True where :func:`parse_version` accepts ``text`` (schema checks)."""
    try:
        TensorRTVersion.parse(text)  # type: ignore[arg-type]
    except TensorRTVersionError:
        return False
    return True


def same_build(a: VersionLike, b: VersionLike) -> bool | None:
    """Whether a plan or timing cache made by TensorRT ``a`` may be used by TensorRT ``b``.

    True: major, minor, patch, pre-release tag and build all match (or both strings lack the
    build, i.e. both are pip wheels of one release, which report the same three parts).
    False: any known part differs. None: the release matches but only one side names a build,
    so the build cannot be compared; callers warn (plans: TensorRT's own deserializer still
    refuses a foreign plan) or rebuild (timing caches) rather than guess.
    """
    va, vb = parse_version(a), parse_version(b)
    if (va.release, va.pre) != (vb.release, vb.pre):
        return False
    if va.build is None and vb.build is None:
        return True
    if va.build is None or vb.build is None:
        return None
    return va.build == vb.build


# ---- the calibration cache's version code (NV_TENSORRT_VERSION) ---------------------------------

def calibration_cache_code(version: VersionLike, *, error: type[EdgeresError] = TensorRTVersionError) -> int:
    """``"8.5.2"`` -> 8502, ``"10.3.0"`` -> 100300 (``NV_TENSORRT_VERSION``; the build is not encoded)."""
    v = parse_version(version, error=error)
    max_minor = 99 if v.major >= 10 else 9  # major*1000 + minor*100 leaves one digit for the minor before 10
    if v.minor > max_minor or v.patch > 99:
        raise error(f"TensorRT version must look like 8.5.2 or 10.3.0, received {version!r} "
                    f"(the version code holds minor 0..{max_minor} and patch 0..99)")
    return v.major * (10000 if v.major >= 10 else 1000) + v.minor * 100 + v.patch


def version_from_calibration_cache_code(code: int) -> TensorRTVersion:
    """Inverse of :func:`calibration_cache_code`: 8502 -> 8.5.2, 100300 -> 10.3.0."""
    major, rest = (code // 10000, code % 10000) if code >= 100000 else (code // 1000, code % 1000)
    return TensorRTVersion(major, rest // 100, rest % 100)


# ---- what each part of edgeres supports -----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SupportedRange:
    """Half-open ``[since, until)`` range of major.minor versions one part of edgeres handles, and why."""

    what: str
    since: tuple[int, int]
    until: tuple[int, int] | None
    reason: str

    def contains(self, version: VersionLike) -> bool:
        v = parse_version(version)
        return v >= self.since and (self.until is None or v < self.until)

    def describe(self) -> str:
        lo = f"{self.since[0]}.{self.since[1]}"
        return f"{lo} or later" if self.until is None else f"{lo} to before {self.until[0]}.{self.until[1]}"


SUPPORTED: dict[str, SupportedRange] = {
    # edgeres.trt (the builder) and edgeres.runtime call the name-based tensor API
    # (ICudaEngine.get_tensor_name, IExecutionContext.set_tensor_address / execute_async_v3), new in 8.5.
    "adapter": SupportedRange("the edgeres TensorRT adapter and runtime", (8, 5), None,
                              "they use the name-based tensor API (get_tensor_name, set_tensor_address, "
                              "execute_async_v3) that TensorRT 8.5 introduced"),
    # build.sh only: TRTEXEC_FLAGS in edgeres.trtexec is read off sampleOptions.cpp from release/8.2 on,
    # and JetPack 4.6.1 (Jetson Nano, TX2, Xavier on JetPack 4) ships TensorRT 8.2.1.
    "trtexec": SupportedRange("trtexec command lines (build.sh)", (8, 2), None,
                              "the trtexec flag table is read from release/8.2 on; Jetson Nano and TX2 stop at "
                              "JetPack 4.6.x with TensorRT 8.2.1"),
    # implicit INT8 calibration (IInt8Calibrator) was removed in 11.0 (Support Policies page);
    # edgeres writes caches only for versions its adapter supports.
    "calibration_cache": SupportedRange("TensorRT calibration caches", (8, 5), (11, 0),
                                        "TensorRT 11 removed implicit INT8 calibration; older than 8.5 is not "
                                        "supported by the edgeres adapter"),
}
MIN_ADAPTER: tuple[int, int] = SUPPORTED["adapter"].since
MIN_TRTEXEC: tuple[int, int] = SUPPORTED["trtexec"].since
STRONGLY_TYPED_SINCE: tuple[int, int] = (11, 0)  # 11.0 removed the FP16/INT8 builder flags (release notes)


def strongly_typed(version: VersionLike) -> bool:
    """TensorRT 11+: no precision builder flags; precision comes from the ONNX."""
    return parse_version(version) >= STRONGLY_TYPED_SINCE


# ---- execution contexts and optimization profiles ---------------------------------------------------
# How concurrent execution contexts of one engine get an optimization profile, per release, as the
# headers say (NVIDIA/TensorRT include/NvInferRuntime.h and NvInfer.h on each release branch; line numbers
# at release/8.5 68b5072f, release/8.6 a0215c1a, release/10.0 ccf11997). It
# matters only for engines with dynamic input shapes: "If the associated CUDA engine does not have
# inputs with dynamic shapes, this method need not be called, in which case the default profile index
# of 0 will be used" (setOptimizationProfileAsync, every release).

@dataclasses.dataclass(frozen=True)
class ContextRule:
    """Profile assignment for the execution contexts of one range of releases.

    ``sharing``: ``"never"`` (each context in concurrent use needs its own profile),
    ``"preview"`` (contexts may share a profile only if the engine was built with
    ``PreviewFeature.PROFILE_SHARING_0806``), ``"always"`` (every context gets profile 0).
    """

    since: tuple[int, int]
    until: tuple[int, int] | None
    sharing: str
    source: str

    def contains(self, version: VersionLike) -> bool:
        v = parse_version(version)
        return v >= self.since and (self.until is None or v < self.until)


CONTEXT_RULES: tuple[ContextRule, ...] = (
    ContextRule((8, 5), (8, 6), "never",
                "NvInferRuntime.h release/8.5 l.1589-1591 (ICudaEngine::createExecutionContext): 'each execution "
                "context in concurrent use must use a separate optimization profile. The first execution context "
                "created will call setOptimizationProfile(0) implicitly. For other execution contexts, "
                "setOptimizationProfile() must be called with unique profile index'; l.2508-2510 "
                "(getOptimizationProfile): -1 until set, 'all calls to enqueueV2()/enqueueV3()/executeV2() will fail'"),
    ContextRule((8, 6), (9, 0), "preview",
                "NvInferRuntime.h release/8.6 l.1754-1757: 'The execution context created will call "
                "setOptimizationProfile(0) implicitly if there are no other execution contexts assigned to "
                "optimization profile 0'; l.2798-2802: -1 otherwise; NvInfer.h release/8.6 l.9038-9042: "
                "kPROFILE_SHARING_0806 'Allows optimization profiles to be shared across execution contexts. "
                "This flag defaults to false'"),
    ContextRule((9, 0), None, "always",
                "NvInferRuntime.h release/10.0 l.2532-2535 (createExecutionContext): 'The newly created execution "
                "context will be assigned optimization profile 0'; NvInfer.h release/10.0 l.8429-8433: "
                "kPROFILE_SHARING_0806 'The default value for this flag is on and can not be changed' "
                "(8.6's header l.1757: 'default all optimization profiles to 0 starting in TensorRT 9.0')"),
)


def context_rule(version: VersionLike) -> ContextRule:
    """The :data:`CONTEXT_RULES` entry of ``version`` (TensorRTVersionError before 8.5)."""
    for rule in CONTEXT_RULES:
        if rule.contains(version):
            return rule
    raise TensorRTVersionError(f"TensorRT {version}: expected 8.5 or later for execution contexts by tensor name")


def needs_profile_sharing_feature(version: VersionLike) -> bool:
    """Whether a build must enable ``PreviewFeature.PROFILE_SHARING_0806`` for contexts to share profile 0 (8.6)."""
    return context_rule(version).sharing == "preview"


def contexts_share_profiles(version: VersionLike, built_with_sharing: bool | None) -> bool:
    """Whether concurrent contexts of a dynamic-shape engine may all use profile 0 on ``version``.

    ``built_with_sharing``: the sidecar's ``profile_sharing`` (None: not recorded, treated as False).
    """
    sharing = context_rule(version).sharing
    return sharing == "always" or (sharing == "preview" and bool(built_with_sharing))
