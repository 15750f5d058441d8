"""The import graph of ``edgeres/`` has no cycles (issue 9, item 5), save one named on purpose.

The graph is read from the source (AST), not from ``sys.modules``: every
``import edgeres...``, ``from edgeres... import ...`` and relative import counts,
at module level, inside functions and under ``if TYPE_CHECKING:`` alike, so a
cycle hidden in a lazy import is still a cycle. ``from pkg import name`` is an
edge to ``pkg.name`` when that is a module, else to ``pkg``. A module that
calls ``importlib.import_module`` (the lazy registries of ``edgeres/__init__``,
``edgeres/trt/__init__``, the CLI's ``COMMANDS``, the bench backends) also
imports every edgeres module named by a string literal in it. Importing a
submodule also runs its package's ``__init__``; that implicit edge is left out
(every sibling import would otherwise be a cycle through the package).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgeres"

# Edges allowed to close a cycle, each with its reason. Any other cycle fails the test.
ALLOWED_EDGES: dict[tuple[str, str], str] = {
    ("edgeres.runtime._base", "edgeres.runtime.onnx_engine"): (
        "Engine.__new__ is a factory: Engine(path) returns the engine class for the file, "
        "imported lazily inside __new__; the engine classes subclass Engine"
    ),
    ("edgeres.runtime._base", "edgeres.runtime.trt_engine"): "same Engine.__new__ factory, for .plan files",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The edgeres modules ``module`` imports anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(module, path.name == "__init__.py", node.level, node.module)
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    if "import_module" in {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}:
        found |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return {name for name in found if name in known and name != module}


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_scanner_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "edgeres" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "edgeres" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from .a import x\n")
    (pkg / "a.py").write_text("def f():\n    from edgeres.sub import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import edgeres.sub.a\n")
    (pkg / "c.py").write_text((
        "import importlib\nLAZY = {'x': 'edgeres.sub.b', 'y': 'not a module'}\n"
        "def get(key):\n    return importlib.import_module(LAZY[key])\n"
    ))
    known = {"edgeres", "edgeres.sub", "edgeres.sub.a", "edgeres.sub.b", "edgeres.sub.c"}
    graph = {
        name: imports_of(f"edgeres.sub.{name}" if name != "__init__" else "edgeres.sub", pkg / f"{name}.py", known)
        for name in ("__init__", "a", "b", "c")
    }
    graph = {("edgeres.sub" if k == "__init__" else f"edgeres.sub.{k}"): v for k, v in graph.items()}
    assert graph["edgeres.sub"] == {"edgeres.sub.a"}, f"relative import in a package __init__: {graph}"
    assert graph["edgeres.sub.a"] == {"edgeres.sub.b"}, f"function-level `from pkg import module`: {graph}"
    assert graph["edgeres.sub.c"] == {"edgeres.sub.b"}, f"a module named in an importlib registry: {graph}"
    assert cycles(graph) == [["edgeres.sub.a", "edgeres.sub.b"]], f"a lazy + TYPE_CHECKING cycle is found: {graph}"


def test_edgeres_has_no_import_cycles() -> None:
    graph = import_graph()
    assert "edgeres.calibrate.api" in graph and graph["edgeres.calibrate.api"], "the scan found the package's imports"
    for (source, target), reason in ALLOWED_EDGES.items():
        assert target in graph.get(source, set()), (
            f"allowed cycle edge {source} -> {target} ({reason}) no longer exists: remove it from ALLOWED_EDGES"
        )
        graph[source] = graph[source] - {target}
    found = cycles(graph)
    assert not found, (
        "import cycles in edgeres/ (each group imports itself through the others; move the shared part "
        f"into a lower module): {found}"
    )


# ---- the dependency rule (docs/ARCHITECTURE.md): stages depend only downward ------------------------

# Layer of every module, by its first two name parts (``edgeres.calibrate.api`` -> ``edgeres.calibrate``).
# An import may go to the same or a lower layer, never up. A new module must be given a layer here
# (the test says so), which is where docs/ARCHITECTURE.md says a new stage or backend goes.
LAYERS: dict[str, int] = {
    # 0: facts and primitives every stage may use; no torch, onnx or TensorRT at import
    "edgeres.errors": 0, "edgeres._io": 0, "edgeres.recipe": 0, "edgeres.resources": 0,
    "edgeres.tensorrt_version": 0, "edgeres._tensorrt": 0, "edgeres.sidecar": 0, "edgeres._timing": 0,
    "edgeres._interrupt": 0, "edgeres._readers": 0, "edgeres._names": 0, "edgeres.bundle_manifest": 0,
    "edgeres._progress": 0,
    # 1: the runtime (on the robot: numpy + onnxruntime or TensorRT) and the model layer (torch)
    "edgeres.runtime": 1, "edgeres.models": 1, "edgeres.weights": 1, "edgeres.fold": 1,
    "edgeres.export": 1, "edgeres.info": 1,
    # 2: data and evaluation, ONNX rewrites
    "edgeres.reference": 2, "edgeres.data": 2, "edgeres.evaluate": 2, "edgeres.precision": 2,
    # 3: INT8 calibration (ONNX + data only), target profiles, trtexec command lines, bundles
    "edgeres.calibrate": 3, "edgeres.targets": 3, "edgeres.trtexec": 3, "edgeres.bundle": 3,
    "edgeres.trt_rules": 3, "edgeres.dla_lint": 3,
    # 4: the model-to-ONNX front end, the TensorRT adapter, deployment configs from a bundle's facts
    "edgeres.pipeline": 4, "edgeres.trt": 4, "edgeres.deploy": 4,
    # 5: the device preflight, serving
    "edgeres.doctor": 5, "edgeres.serve": 5,
    # 6: the on-device build
    "edgeres.device_build": 6,
    # 7: host-side build, benchmarks
    "edgeres.build": 7, "edgeres.bench": 7,
    # 8: the command line
    "edgeres.cli": 8,
}

# Upward edges allowed on purpose, each with its reason.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    ("edgeres.calibrate", "edgeres.pipeline"): (
        "deprecated alias: edgeres.calibrate.calibrate_model forwards (with a DeprecationWarning) to "
        "edgeres.pipeline.calibrate_model, imported only when the old name is used"
    ),
}


def _layer_key(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_stages_depend_only_downward() -> None:
    graph = import_graph()
    unplaced = sorted({_layer_key(m) for m in graph} - set(LAYERS) - {"edgeres"})
    assert not unplaced, f"give these modules a layer in LAYERS (and a row in docs/ARCHITECTURE.md): {unplaced}"
    upward = set()
    for source, targets in graph.items():
        a = _layer_key(source)
        if a == "edgeres":  # the package facade: lazy re-exports of the public API
            continue
        for target in targets:
            b = _layer_key(target)
            if b != "edgeres" and b != a and LAYERS[b] > LAYERS[a]:  # `import edgeres` is for __version__
                upward.add((a, b))
    for edge, reason in ALLOWED_UPWARD.items():
        assert edge in upward, f"allowed upward edge {edge} ({reason}) no longer exists: remove it from ALLOWED_UPWARD"
    unexpected = sorted(upward - set(ALLOWED_UPWARD))
    assert not unexpected, f"imports that go up a layer (stage -> later stage): {unexpected}"


def test_runtime_depends_on_nothing_of_the_host_side() -> None:
    graph = import_graph()
    runtime_imports = {_layer_key(t) for s, ts in graph.items() if s.startswith("edgeres.runtime") for t in ts}
    host = sorted(b for b in runtime_imports if b != "edgeres.runtime" and LAYERS.get(b, 99) > 0)
    assert not host, f"edgeres.runtime may import only layer-0 modules, imports {host}"
