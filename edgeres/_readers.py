"""Bounded, typed reading of the files edgeres is pointed at: one primitive per concern.

Every reader of a user-supplied file (bundle manifest, plan sidecar, timing-cache
stamp, calibration cache, target profile, recipe) goes through these, so a
malformed, hostile or merely unexpected file is one :class:`~edgeres.errors.EdgeresError`
line, never a traceback, a hang or an unbounded allocation:

* :func:`read_regular_file`: refuses FIFOs, devices, sockets and folders *before*
  opening (``os.stat`` + ``stat.S_ISREG``; a FIFO would block ``open`` forever),
  opens with ``O_NONBLOCK`` as belt and braces, and reads at most ``max_bytes``.
* :func:`text_from_bytes`: strict UTF-8 with the byte offset of the first bad byte.
* :func:`json_from_bytes` / :func:`toml_from_bytes`: size and nesting limits
  (deep nesting is refused instead of raising RecursionError), no NaN/Infinity,
  no integers of more than :data:`MAX_INT_DIGITS` digits, no duplicate JSON keys.
* :class:`Fields`: field-by-field type checks with expected-vs-received messages.

Standard library and :mod:`edgeres.errors` only: the runtime uses it too.
"""

from __future__ import annotations

import math
import os
import re
import stat
from typing import Any, Callable, Iterable, Mapping, NoReturn, Sequence

from edgeres.errors import EdgeresError

MAX_DEPTH = 32  # nesting of JSON/TOML containers; edgeres' own files nest at most 4 deep
MAX_INT_DIGITS = 20  # a 64-bit integer has at most 20 digits
MAX_SHOWN = 60  # characters of a bad value quoted in a message

# sizes: each well above what edgeres writes (a manifest is ~3 KiB, a sidecar ~1 KiB, a profile ~4 KiB)
MAX_JSON_BYTES = 4 << 20
MAX_TOML_BYTES = 1 << 20
MAX_CACHE_BYTES = 16 << 20  # a calibration cache: one ~40-byte line per tensor


def shown(value: Any, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` cut to ``limit`` characters (a hostile value can be megabytes long)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a repr that raises must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


# ---- files ----------------------------------------------------------------------------------------

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """``"a FIFO (named pipe)"``, ``"a folder"``, ...: what a non-regular file is, for messages."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_regular_file(path: str | os.PathLike[str], what: str, error: type[EdgeresError] = EdgeresError) -> os.stat_result:
    """``os.stat`` of ``path``, refusing a missing or non-regular file (before anything opens it)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {os.fspath(path)} does not exist") from None
    except (OSError, ValueError) as exc:  # ValueError: embedded NUL in the path
        raise error(f"{what} {os.fspath(path)} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {os.fspath(path)} is {file_kind(st.st_mode)}; expected a regular file")
    return st


def read_regular_file(path: str | os.PathLike[str], max_bytes: int, what: str,
                      error: type[EdgeresError] = EdgeresError) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; ``error`` for anything else.

    Refused before opening: a missing path, a folder, a FIFO, a device, a socket,
    a file larger than ``max_bytes``. Opened with ``O_NONBLOCK`` (a FIFO swapped in
    after the check still cannot block) and read with a bound, so a file growing
    while it is read cannot exhaust memory.
    """
    st = check_regular_file(path, what, error)
    if st.st_size > max_bytes:
        raise error(f"{what} {os.fspath(path)} is {st.st_size} bytes; expected at most {max_bytes} "
                    "(is it the right file?)")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise error(f"{what} {os.fspath(path)} cannot be opened: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between stat and open
            raise error(f"{what} {os.fspath(path)} changed while being opened; expected a regular file")
        chunks = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise error(f"{what} {os.fspath(path)} cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise error(f"{what} {os.fspath(path)} is larger than {max_bytes} bytes (it grew while being read)")
    return data


def text_from_bytes(data: bytes, what: str, error: type[EdgeresError] = EdgeresError) -> str:
    """Strict UTF-8 text (a leading BOM is dropped); ``error`` naming the first bad byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                    "(a binary file, or another encoding?)") from None
    return text[1:] if text.startswith("\ufeff") else text


# ---- JSON / TOML -----------------------------------------------------------------------------------

def nesting_depth(value: Any) -> int:
    """Container depth of parsed JSON/TOML data (a scalar is 0), computed without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest


def _bracket_depth(text: str, limit: int) -> int:
    """Deepest ``[``/``{`` nesting outside JSON strings (0 when there are at most ``limit`` openers at all).

    Refuses deep input before the parser recurses; the scan runs only where depth could exceed ``limit``.
    """
    if text.count("[") + text.count("{") <= limit:
        return 0
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        elif ch in "]}":
            depth -= 1
    return deepest


class _Refused(Exception):
    """Raised inside the JSON parser's hooks; becomes the caller's error."""


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {len(text)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _json_float(text: str) -> float:
    if len(text) > 400:
        raise _Refused(f"a number of {len(text)} characters")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} (outside float range)")
    return value


def _json_constant(text: str) -> NoReturn:
    raise _Refused(f"{text} (not JSON: only finite numbers are allowed)")


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"the key {shown(key)} twice in one object")
        out[key] = value
    return out


def json_from_bytes(data: bytes, what: str, error: type[EdgeresError] = EdgeresError, *,
                    max_depth: int = MAX_DEPTH, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parsed JSON with size, nesting, number and duplicate-key limits; ``error`` for anything else."""
    import json

    if len(data) > max_bytes:
        raise error(f"{what} is {len(data)} bytes; expected at most {max_bytes}")
    text = text_from_bytes(data, what, error)
    if _bracket_depth(text, max_depth) > max_depth:
        raise error(f"{what} nests deeper than {max_depth} levels; expected an edgeres JSON file")
    try:
        value = json.loads(text, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant,
                           object_pairs_hook=_json_object)
    except _Refused as exc:
        raise error(f"{what} holds {exc}") from None
    except RecursionError:
        raise error(f"{what} nests too deeply; expected an edgeres JSON file") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise error(f"{what} is not readable JSON: {str(exc)[:200]}") from None
    return value


def json_object_from_bytes(data: bytes, what: str, error: type[EdgeresError] = EdgeresError, **limits: int) -> dict[str, Any]:
    """:func:`json_from_bytes` that must give a JSON object."""
    value = json_from_bytes(data, what, error, **limits)
    if not isinstance(value, dict):
        raise error(f"{what} must hold a JSON object, received {json_type(value)}")
    return value


def toml_from_bytes(data: bytes, what: str, error: type[EdgeresError] = EdgeresError, *,
                    max_depth: int = MAX_DEPTH, max_bytes: int = MAX_TOML_BYTES) -> dict[str, Any]:
    """Parsed TOML with size and nesting limits; dates/times are refused (edgeres files hold none)."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib

    if len(data) > max_bytes:
        raise error(f"{what} is {len(data)} bytes; expected at most {max_bytes}")
    text = text_from_bytes(data, what, error)
    # inline arrays/tables nest through brackets; a deep one would exhaust tomllib's recursion
    if _bracket_depth(_toml_without_strings(text), max_depth + 1) > max_depth + 1:
        raise error(f"{what} nests deeper than {max_depth} levels; expected an edgeres TOML file")
    try:
        value = tomllib.loads(text)
    except RecursionError:
        raise error(f"{what} nests too deeply; expected an edgeres TOML file") from None
    except ValueError as exc:  # TOMLDecodeError, and int() of a huge literal
        raise error(f"{what} is not valid TOML: {str(exc)[:200]}") from None
    if nesting_depth(value) > max_depth:
        raise error(f"{what} nests deeper than {max_depth} levels; expected an edgeres TOML file")
    bad = _first_non_json_value(value)
    if bad is not None:
        raise error(f"{what} holds {bad}; expected only strings, numbers, booleans, arrays and tables")
    return value


def _toml_without_strings(text: str) -> str:
    """TOML text with quoted strings and comments blanked, so brackets inside them are not counted."""
    return re.sub(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*', '""', text)


def _first_non_json_value(value: Any) -> str | None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            return f"the number {item}"
        elif not isinstance(item, (str, int, float, bool)):
            return f"a {type(item).__name__} value ({shown(item)})"
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) >= 1 << 63:
            return f"the integer {shown(item)} (outside 64 bits)"
    return None


def read_json_file(path: str | os.PathLike[str], what: str, error: type[EdgeresError] = EdgeresError, *,
                   max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """A JSON object from a regular file, bounded (see :func:`read_regular_file`, :func:`json_from_bytes`)."""
    data = read_regular_file(path, max_bytes, what, error)
    return json_object_from_bytes(data, f"{what} {os.fspath(path)}", error, max_depth=max_depth, max_bytes=max_bytes)


def read_toml_file(path: str | os.PathLike[str], what: str, error: type[EdgeresError] = EdgeresError, *,
                   max_bytes: int = MAX_TOML_BYTES, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """A TOML document from a regular file, bounded."""
    data = read_regular_file(path, max_bytes, what, error)
    return toml_from_bytes(data, f"{what} {os.fspath(path)}", error, max_depth=max_depth, max_bytes=max_bytes)


# ---- field-by-field checks ---------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type (``"null"``, ``"a list"``, ``"a string"``), for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {shown(value)}"
    if isinstance(value, str):
        return f"the string {shown(value)}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def has_control_characters(text: str) -> bool:
    """True if ``text`` holds a control character (newline, NUL, ESC, U+2028, ...)."""
    return _CONTROL.search(text) is not None


_MISSING = object()


class Fields:
    """Typed access to one parsed object: each getter checks one field or raises ``error``.

    ``Fields(data, "manifest.json", BundleError).int("min_batch", 1, 4096)``: the message
    names the file, the field, what was expected and what was received.
    """

    def __init__(self, data: Any, what: str, error: type[EdgeresError] = EdgeresError, prefix: str = "") -> None:
        if not isinstance(data, dict):
            raise error(f"{what}: {prefix.rstrip('.') or 'the document'} must be an object, received {json_type(data)}")
        self.data: Mapping[str, Any] = data
        self.what = what
        self.error = error
        self.prefix = prefix

    def fail(self, name: str, expected: str, value: Any) -> EdgeresError:
        if value is _MISSING:
            return self.error(f"{self.what}: missing field {self.prefix + name!r} (expected {expected})")
        return self.error(f"{self.what}: field {self.prefix + name!r} must be {expected}, received {json_type(value)}")

    def _get(self, name: str, optional: bool) -> Any:
        if name not in self.data:
            return None if optional else _MISSING
        return self.data[name]

    def check(self, name: str, test: Callable[[Any], bool], expected: str, *, optional: bool = False) -> Any:
        """The value if ``test`` accepts it (None where ``optional`` and missing or null)."""
        value = self._get(name, optional)
        if optional and value is None:
            return None
        if value is _MISSING or not test(value):
            raise self.fail(name, expected, value)
        return value

    def str(self, name: str, *, pattern: re.Pattern[str] | None = None, expected: str | None = None,
            optional: bool = False, max_len: int = 4096, choices: Sequence[str] | None = None) -> Any:
        """A string without control characters (and matching ``pattern`` / one of ``choices``)."""
        if choices is not None:
            expected = expected or "one of " + ", ".join(map(repr, choices))
        want = expected or (f"a string matching {pattern.pattern}" if pattern else f"a string of at most {max_len} characters")

        def test(v: Any) -> bool:
            return (isinstance(v, str) and len(v) <= max_len and not has_control_characters(v)
                    and (pattern is None or pattern.fullmatch(v) is not None)
                    and (choices is None or v in choices))

        return self.check(name, test, want, optional=optional)

    def int(self, name: str, lo: int, hi: int, *, optional: bool = False) -> Any:
        """An integer (not a boolean) in ``lo..hi``."""
        return self.check(name, lambda v: is_int(v) and lo <= v <= hi, f"an integer in {lo}..{hi}", optional=optional)

    def number(self, name: str, lo: float, hi: float, *, optional: bool = False) -> Any:
        """A finite number (not a boolean) in ``lo..hi``, as a float."""
        value = self.check(name, lambda v: is_number(v) and lo <= v <= hi, f"a number in {lo:g}..{hi:g}", optional=optional)
        return None if value is None else float(value)

    def bool(self, name: str, *, optional: bool = False) -> Any:
        return self.check(name, lambda v: isinstance(v, bool), "true or false", optional=optional)

    def int_list(self, name: str, length: int, lo: int, hi: int, *, optional: bool = False) -> tuple[int, ...] | None:
        """A list of exactly ``length`` integers in ``lo..hi``, as a tuple."""
        value = self.check(name, lambda v: isinstance(v, list) and len(v) == length and all(is_int(x) and lo <= x <= hi for x in v),
                           f"a list of {length} integers in {lo}..{hi}", optional=optional)
        return None if value is None else tuple(value)

    def str_list(self, name: str, *, pattern: re.Pattern[str] | None = None, expected: str | None = None,
                 min_len: int = 0, max_len: int = 256, optional: bool = False) -> tuple[str, ...] | None:
        """A list of ``min_len..max_len`` strings (each as :meth:`str` checks them), as a tuple."""
        want = expected or (f"a list of strings matching {pattern.pattern}" if pattern else "a list of strings")

        def test(v: Any) -> bool:
            return (isinstance(v, list) and min_len <= len(v) <= max_len and all(
                isinstance(x, str) and len(x) <= 4096 and not has_control_characters(x)
                and (pattern is None or pattern.fullmatch(x) is not None) for x in v))

        value = self.check(name, test, want, optional=optional)
        return None if value is None else tuple(value)

    def object(self, name: str, *, optional: bool = False) -> "Fields | None":
        """A nested object, as :class:`Fields` (its messages name ``name.field``)."""
        value = self.check(name, lambda v: isinstance(v, dict), "an object", optional=optional)
        return None if value is None else Fields(value, self.what, self.error, f"{self.prefix}{name}.")

    def unknown(self, allowed: Iterable[str]) -> None:
        """Refuse fields not in ``allowed``."""
        extra = sorted(set(self.data) - set(allowed))
        if extra:
            raise self.error(f"{self.what}: unknown field {self.prefix + shown(extra[0])}; "
                             f"expected some of {', '.join(sorted(allowed))}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
