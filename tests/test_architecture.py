"""The package's shape (docs/architecture.md): every import points down, no circles, small modules."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "flask_integrations"

#: Layers from the bottom up; a module imports (at run time) only from its own layer or below.
LAYERS = (
    ("foundation", ("errors", "clock", "signals", "config", "parsing", "redaction", "auth", "pagination")),
    ("database", ("db",)),
    ("state", ("state",)),
    ("provider kit", ("providers",)),
    (
        "services",
        (
            "health",
            "logs",
            "mappings",
            "lifecycle",
            "queue",
            "pipeline",
            "sync",
            "webhooks",
            "oauth",
            "prune",
            "migrations",
        ),
    ),
    ("faces", ("web", "cli", "cron", "testing")),
    ("extension", ("extension", "__init__")),
)
FACES = ("web", "cli", "cron", "testing")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if "versions" in parts:  # Alembic scripts, loaded by Alembic
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(("flask_integrations", *parts))] = path
    return found


MODULES = _modules()


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The package modules an `from ... import ...` names (submodules included)."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    names = [f"{target}.{alias.name}" for alias in node.names]
    return [name for name in names if name in MODULES] or ([target] if target in MODULES else [])


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path) -> Iterator[tuple[str, bool]]:
    """(imported package module, type-only) for every import in `module`, function-level ones too."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            type_only |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            targets = _resolve(module, is_package, node)
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names if alias.name in MODULES]
        else:
            continue
        for target in targets:
            if target != module:
                yield target, id(node) in type_only


def _graph(include_type_only: bool) -> dict[str, set[str]]:
    return {
        module: {t for t, type_only in _imports(module, path) if include_type_only or not type_only}
        for module, path in MODULES.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in graph:
        if node not in index:
            visit(node)
    return found


def _concern(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _layer(module: str) -> int:
    concern = _concern(module)
    for position, (_, members) in enumerate(LAYERS):
        if concern in members:
            return position
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS and the architecture page")


def test_no_module_imports_in_a_circle_not_even_inside_functions():
    assert _cycles(_graph(include_type_only=False)) == []


def test_no_circle_appears_when_type_only_imports_are_counted():
    assert _cycles(_graph(include_type_only=True)) == []


def test_every_run_time_import_points_down_the_layers():
    upward = [
        f"{module} ({LAYERS[_layer(module)][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
        for module, targets in _graph(include_type_only=False).items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_the_database_layer_imports_nothing_above_the_foundation():
    graph = _graph(include_type_only=False)
    reached = {t for m, targets in graph.items() if _concern(m) == "db" for t in targets}
    assert {_concern(t) for t in reached} <= {"db", "errors", "clock"}


def test_faces_never_import_each_other():
    graph = _graph(include_type_only=True)
    crossing = [
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if _concern(module) in FACES and _concern(target) in FACES and _concern(module) != _concern(target)
    ]
    assert crossing == []


def test_the_package_top_holds_at_most_ten_modules():
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= 10, loose


def test_no_module_is_over_600_lines():
    sizes = {module: len(path.read_text().splitlines()) for module, path in MODULES.items()}
    assert {module: lines for module, lines in sizes.items() if lines > 600} == {}
