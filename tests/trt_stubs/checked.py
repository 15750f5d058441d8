"""Stand-ins for TensorRT objects that a CPU cannot create (Builder, network, config),
whose every method call and attribute write is checked against the REAL pybind11
class of the imported TensorRT: the method or property must exist, and each
argument must fit the type in the real signature (parsed from pybind11's
docstring, overloads included). Return values are scripted or are further
checked stand-ins of the class named by the real return annotation.

Used only by the API-conformance tests; it proves edgeres calls TensorRT with
names, arities and argument types that version accepts, not that a build works.
"""

from __future__ import annotations

import re
from typing import Any, Callable

_PREFIXES = ("tensorrt_bindings.tensorrt.", "tensorrt.")
_SIG = re.compile(r"^(?:\d+\.\s+)?(?:[A-Za-z_]\w*)?\((.*)\)\s*->\s*(.+)$")


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def signatures(doc: str | None) -> list[tuple[list[tuple[str, str, bool]], str]]:
    """[(params [(name, type, has_default)], return type)] from a pybind11 docstring (self dropped)."""
    out = []
    for line in (doc or "").splitlines():
        m = _SIG.match(line.strip())
        if not m:
            continue
        params = []
        for i, p in enumerate(_split_top(m.group(1))):
            name, _, rest = p.partition(":")
            typ, eq, _default = rest.partition("=")
            if i == 0 and (name.strip() in ("self", "arg0")):
                continue
            params.append((name.strip(), typ.strip(), bool(eq)))
        out.append((params, m.group(2).strip()))
    return out


def _strip(typ: str) -> str:
    for p in _PREFIXES:
        typ = typ.replace(p, "")
    return typ.strip()


def resolve(trt: Any, typ: str) -> Any:
    """The class named by an annotation (``ILogger.Severity``), or None."""
    obj = trt
    for part in _strip(typ).split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, type) else None


def accepts(trt: Any, typ: str, value: Any) -> bool:
    """Whether pybind11 would accept ``value`` for a parameter annotated ``typ``."""
    t = _strip(typ)
    if t.startswith(("typing.Optional[", "Optional[")):
        return value is None or accepts(trt, t[t.index("[") + 1 : -1], value)
    if t in ("int", "typing.SupportsInt"):
        return isinstance(value, int)
    if t in ("float", "typing.SupportsFloat"):
        return isinstance(value, (int, float))
    if t == "bool":
        return isinstance(value, bool)
    if t == "str":
        return isinstance(value, str)
    if t in ("buffer", "typing_extensions.Buffer", "collections.abc.Buffer"):
        return isinstance(value, (bytes, bytearray, memoryview))
    if t in ("object", "typing.Any", "Any"):
        return True
    if t in ("List[str]", "list[str]"):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if "::" in t:  # a C++ type pybind11 had not registered yet when it wrote the docstring
        return type(value).__name__ == t.split("::")[-1]
    cls = resolve(trt, t)
    if cls is None:
        raise AssertionError(f"unknown annotation {typ!r}: teach checked.accepts about it")
    if cls.__name__ in ("Dims", "Dims32", "Dims64") and isinstance(value, (tuple, list)):
        try:  # pybind11 converts sequences implicitly; the real Dims constructor decides
            cls(tuple(value))
            return True
        except TypeError:
            return False
    return isinstance(value, cls)


def check_call(trt: Any, owner: type, name: str, doc: str | None, args: tuple, kwargs: dict) -> str:
    """Raise AssertionError unless one real overload takes ``args``/``kwargs``; returns its return annotation."""
    sigs = signatures(doc)
    assert sigs, f"{owner.__name__}.{name} has no parsable pybind11 signature: {doc!r:.200}"
    for params, ret in sigs:
        if len(args) > len(params):
            continue
        by_name = {p[0]: p for p in params}
        if any(k not in by_name for k in kwargs):
            continue
        given = dict(zip([p[0] for p in params], args, strict=False)) | kwargs
        if any(p[0] not in given and not p[2] for p in params):
            continue
        if all(accepts(trt, by_name[k][1], v) for k, v in given.items()):
            return ret
    shown = " | ".join(f"({', '.join(f'{n}: {_strip(t)}' for n, t, _ in p)})" for p, _ in sigs)
    raise AssertionError(
        f"{owner.__name__}.{name}{tuple(a.__class__.__name__ for a in args)} fits no real signature of TensorRT "
        f"{trt.__version__}: {shown}"
    )


class Checked:
    """An instance of the real class ``cls`` as far as edgeres can tell, with checked calls.

    ``returns`` scripts method results and property reads (value, or callable of the call's args).
    Every call is appended to ``calls`` as ``(name, args)``; writes as ``("set:" + name, (value,))``.
    """

    def __init__(self, trt: Any, cls: type, returns: dict[str, Any] | None = None, calls: list | None = None) -> None:
        object.__setattr__(self, "_trt", trt)
        object.__setattr__(self, "_cls", cls)
        object.__setattr__(self, "_returns", dict(returns or {}))
        object.__setattr__(self, "calls", [] if calls is None else calls)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(proxy, trt.IBuilderConfig) is True, as for the real object
        return object.__getattribute__(self, "_cls")

    def __getattr__(self, name: str) -> Any:
        cls, trt, returns = self._cls, self._trt, self._returns
        if not hasattr(cls, name):  # as the real object would; hasattr()/getattr(x, n, None) probes see it
            raise AttributeError(f"TensorRT {trt.__version__} {cls.__name__} has no attribute {name!r}")
        attr = getattr(cls, name)
        if isinstance(attr, property):
            self.calls.append((f"get:{name}", ()))
            assert name in returns, f"test did not script {cls.__name__}.{name}"
            value = returns[name]
            return value() if callable(value) else value

        def method(*args: Any, **kwargs: Any) -> Any:
            ret = check_call(trt, cls, name, attr.__doc__, args, kwargs)
            self.calls.append((name, args))
            if name in returns:
                value = returns[name]
                return value(*args, **kwargs) if callable(value) else value
            ret_cls = resolve(trt, ret)
            return Checked(trt, ret_cls, calls=self.calls) if ret_cls is not None else None

        return method

    def __setattr__(self, name: str, value: Any) -> None:
        cls, trt = self._cls, self._trt
        prop = getattr(cls, name, None)
        assert isinstance(prop, property), f"TensorRT {trt.__version__} {cls.__name__} has no property {name!r}"
        assert prop.fset is not None, f"{cls.__name__}.{name} is read-only in TensorRT {trt.__version__}"
        check_call(trt, cls, name, prop.fset.__doc__, (value,), {})
        self.calls.append((f"set:{name}", (value,)))


def checked_factory(trt: Any, cls: type, make: Callable[..., Any]) -> Callable[..., Any]:
    """A constructor for ``cls`` that checks its arguments against the real ``__init__`` and calls ``make``."""

    def factory(*args: Any, **kwargs: Any) -> Any:
        check_call(trt, cls, "__init__", cls.__init__.__doc__, args, kwargs)
        return make(*args, **kwargs)

    return factory
