"""edgeres._readers: bounded reads refusing non-regular files, limits on JSON/TOML, typed fields."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from edgeres._readers import (
    MAX_DEPTH,
    Fields,
    json_from_bytes,
    nesting_depth,
    read_json_file,
    read_regular_file,
    text_from_bytes,
    toml_from_bytes,
)
from edgeres.errors import EdgeresError, TargetError


def _in_thread(fn, timeout_s: float = 10.0):
    """Run ``fn`` in a thread; fail (instead of hanging the suite) if it does not return in time."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"{fn} blocked for more than {timeout_s} s"
    return box


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_fifo_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "profile.toml"
    os.mkfifo(fifo)
    box = _in_thread(lambda: read_regular_file(fifo, 1024, "target profile", TargetError))
    error = box.get("error")
    assert isinstance(error, TargetError), f"a FIFO must be refused with the caller's error, got {box}"
    assert "FIFO" in str(error), f"the message says what the file is: {error}"


@pytest.mark.parametrize("make, kind", [
    (lambda p: p.mkdir(), "a folder"),
    (lambda p: None, "does not exist"),
])
def test_folders_and_missing_paths_are_one_error(tmp_path: Path, make, kind: str) -> None:
    path = tmp_path / "thing.json"
    make(path)
    with pytest.raises(EdgeresError, match=kind):
        read_regular_file(path, 1024, "manifest")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_device_is_refused_not_read_forever() -> None:
    box = _in_thread(lambda: read_regular_file("/dev/zero", 1024, "sidecar"))
    assert isinstance(box.get("error"), EdgeresError), f"/dev/zero must be refused: {box}"
    assert "character device" in str(box["error"]), f"names the kind: {box['error']}"


def test_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * 2048)
    with pytest.raises(EdgeresError, match="2048 bytes; expected at most 1024"):
        read_regular_file(path, 1024, "manifest")
    assert read_regular_file(path, 4096, "manifest") == b" " * 2048, "within the limit the bytes come back"


def test_utf8_error_names_the_byte() -> None:
    with pytest.raises(EdgeresError, match="byte 0xff at offset 3"):
        text_from_bytes(b"abc\xffdef", "profile")
    assert text_from_bytes("\ufeffok".encode(), "x") == "ok", "a BOM is dropped"


@pytest.mark.parametrize("text, needle", [
    ("[" * 5000 + "]" * 5000, "nests deeper"),
    ('{"a":' * 2000 + "1" + "}" * 2000, "nests deeper"),
    ("NaN", "only finite numbers"),
    ('{"x": Infinity}', "only finite numbers"),
    ('{"x": 1e999}', "outside float range"),
    ('{"x": ' + "9" * 5000 + "}", "integer of 5000 digits"),
    ('{"a": 1, "a": 2}', "twice"),
    ("{not json", "not readable JSON"),
    ("", "not readable JSON"),
])
def test_json_limits_are_one_error(text: str, needle: str) -> None:
    with pytest.raises(EdgeresError, match=needle):
        json_from_bytes(text.encode(), "manifest.json")


def test_json_depth_limit_counts_only_outside_strings() -> None:
    value = json_from_bytes(('{"s": "' + "[" * 500 + '"}').encode(), "x")
    assert value == {"s": "[" * 500}, "brackets inside strings are not nesting"
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert nesting_depth(json_from_bytes(deep.encode(), "x")) == MAX_DEPTH, "exactly the limit parses"


@pytest.mark.parametrize("text, needle", [
    ("a = " + "[" * 3000 + "]" * 3000, "nests"),
    ("a = " + "{b = " * 600 + "1" + "}" * 600, "nests"),
    ("a = 1979-05-27T07:32:00Z", "datetime"),
    ("a = " + "9" * 5000, "not valid TOML"),
    ("a = 99999999999999999999", "outside 64 bits"),
    ("a = nan", "the number nan"),
    ("a = = 1", "not valid TOML"),
])
def test_toml_limits_are_one_error(text: str, needle: str) -> None:
    with pytest.raises(EdgeresError, match=needle):
        toml_from_bytes(text.encode(), "profile.toml")


def test_toml_brackets_in_strings_and_comments_do_not_count() -> None:
    text = 's = "' + "[" * 100 + '"\n# ' + "{" * 100 + "\nt = '" + "[" * 100 + "'\n"
    assert toml_from_bytes(text.encode(), "x")["s"] == "[" * 100, "strings and comments are not nesting"


def test_read_json_file_requires_an_object(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text("[1, 2]")
    with pytest.raises(EdgeresError, match="must hold a JSON object, received a list of 2"):
        read_json_file(path, "manifest")


@pytest.mark.parametrize("field, call, needle", [
    ("n", lambda f: f.int("n", 1, 10), "missing field 'n'"),
    ("n", lambda f: f.int("n", 1, 10, optional=True), None),
])
def test_fields_missing(field: str, call, needle: str | None) -> None:
    f = Fields({}, "x.json")
    if needle is None:
        assert call(f) is None, "an optional missing field is None"
    else:
        with pytest.raises(EdgeresError, match=needle):
            call(f)


@pytest.mark.parametrize("value, needle", [
    ("many", "received the string 'many'"),
    (True, "received the boolean true"),
    (None, "received null"),
    ([1], "received a list of 1"),
    (11, "received the number 11"),
    (2.5, "received the number 2.5"),
])
def test_fields_int_names_what_was_received(value, needle: str) -> None:
    with pytest.raises(EdgeresError, match=needle):
        Fields({"min_batch": value}, "manifest.json").int("min_batch", 1, 10)


def test_fields_str_refuses_control_characters_and_patterns() -> None:
    import re

    f = Fields({"a": "ok\n", "b": "x y", "c": "fine"}, "w")
    with pytest.raises(EdgeresError, match="field 'a'"):
        f.str("a")
    with pytest.raises(EdgeresError, match="field 'b'"):
        f.str("b", pattern=re.compile(r"\w+"))
    assert f.str("c", choices=("fine",)) == "fine", "a good value comes back"
    nested = Fields({"o": {"k": 5}}, "w").object("o")
    with pytest.raises(EdgeresError, match="field 'o.k'"):
        nested.str("k")
