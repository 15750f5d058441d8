"""Strict patterns for every name edgeres writes into a generated file (``build.sh``, ``manifest.json``).

Target names, variants, bundle file names, tensor names and version strings are
checked against these where they are read (profiles, ``--target``,
``--trt-version``, bundle manifests), so no input can put a control character,
a quote, a ``$`` or a path separator into a script or a manifest. One place for
the patterns; standard library and :mod:`edgeres.errors` only (the runtime uses it).

Decisions:
* Target and variant names are lower-case ASCII (``jetson-orin-nx:16gb``); ``--target``
  is case-insensitive (it is lower-cased), and a profile file whose name is not
  lower-case is refused with the name to rename it to, rather than being unreachable.
* Bundle file names are plain ASCII names without ``/``, ``\\`` or a leading ``.`` (so
  never ``..`` or a hidden file), except the output-ownership marker
  :data:`edgeres.bundle_manifest.OUTPUT_MARKER`.
"""

from __future__ import annotations

import re
from typing import Any

from edgeres.errors import EdgeresError

TARGET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}", re.ASCII)
VARIANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}", re.ASCII)
TARGET_REF = re.compile(rf"{TARGET_NAME.pattern}(?::{VARIANT_NAME.pattern})?", re.ASCII)  # name or name:variant
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}", re.ASCII)
TENSOR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]{0,127}", re.ASCII)
EDGERES_VERSION = re.compile(r"[0-9][0-9A-Za-z.+_-]{0,63}", re.ASCII)  # PEP 440 (local versions included)
SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
# TensorRT versions: edgeres.tensorrt_version._PATTERN (major.minor[.patch[.build]][pre]); canonical text only
TENSORRT_VERSION = re.compile(r"\d{1,3}\.\d{1,3}(?:\.\d{1,3}(?:\.\d{1,6})?)?(?:(?:a|b|rc)\d{1,3})?", re.ASCII)

EXPECTED = {
    "target": "a lower-case name of letters, digits, '-' and '_' (e.g. jetson-orin), optionally ':variant'",
    "variant": "a lower-case name of letters, digits, '-' and '_' (e.g. 16gb)",
    "file": "a plain file name of letters, digits, '.', '_', '+' and '-' (no folders, not starting with '.')",
    "tensor": "a tensor name of letters, digits, '_', '.', ':', '/' and '-'",
    "edgeres_version": "a version like 0.1.0",
    "sha256": "64 lower-case hex digits",
    "tensorrt_version": "a version like 10.3.0 or 10.3.0.30",
}
PATTERNS = {"target": TARGET_REF, "variant": VARIANT_NAME, "file": FILE_NAME, "tensor": TENSOR_NAME,
            "edgeres_version": EDGERES_VERSION, "sha256": SHA256, "tensorrt_version": TENSORRT_VERSION}


def is_name(kind: str, value: Any) -> bool:
    """True if ``value`` is a string matching the ``kind`` pattern (see :data:`PATTERNS`)."""
    return isinstance(value, str) and PATTERNS[kind].fullmatch(value) is not None


def check_name(kind: str, value: Any, what: str, error: type[EdgeresError] = EdgeresError) -> str:
    """``value`` if it is a valid ``kind`` name, else ``error`` saying what was expected."""
    if not is_name(kind, value):
        text = repr(value)
        text = text if len(text) <= 60 else text[:60] + "..."
        raise error(f"{what} must be {EXPECTED[kind]}, received {text}")
    return value
