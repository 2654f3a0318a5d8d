"""The layout's rules, checked on every run by parsing each shipped module's imports with ``ast``
(imports inside functions and under ``TYPE_CHECKING`` count too):

* a service imports no other service: services meet only over the bus and their listeners, and
  shared code lives in ``libs/``;
* a library imports no service, and nothing shipped imports the development-only test support
  (``puras_testing``) or the CLI that runs the platform on one machine;
* the gateway's route modules import no other route module;
* no shipped package has an import cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SERVICES = frozenset(p.name for p in (ROOT / "services").glob("*/src/puras_*"))
LIBRARIES = frozenset(p.name for p in (ROOT / "libs").glob("*/src/puras_*")) | {"puras"}
DEVELOPMENT_ONLY = frozenset({"puras_testing", "puras_cli"})
"""Packages that run or test the platform; none of the shipped libraries or services may lean
on them."""


@dataclass(frozen=True)
class Edge:
    """``module`` imports ``target`` at ``line``."""

    module: str
    target: str
    line: int

    @property
    def package(self) -> str:
        return self.module.split(".")[0]

    @property
    def target_package(self) -> str:
        return self.target.split(".")[0]


def _source_roots() -> list[Path]:
    roots = [*ROOT.glob("libs/*/src"), *ROOT.glob("services/*/src")]
    return [*roots, ROOT / "sdk/python/src", ROOT / "cli/src"]


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in _source_roots():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> Iterator[Edge]:
    package_parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Edge(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package_parts[: len(package_parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                yield Edge(module, submodule if submodule in MODULES else target, node.lineno)


EDGES = [edge for module, path in MODULES.items() for edge in _imports(module, path)]


def _report(edges: Iterable[Edge]) -> list[str]:
    """One line per offending import statement: ``path:line: module imports target``."""
    return sorted(
        {
            f"{MODULES[e.module].relative_to(ROOT)}:{e.line}: {e.module} imports {e.target}"
            for e in edges
        }
    )


def test_the_rules_see_every_package() -> None:
    assert {"puras_gateway", "puras_agent_runner", "puras_billing"} <= SERVICES
    assert {"puras_common", "puras_pricing", "puras_media", "puras_sandbox"} <= LIBRARIES
    assert any(e.module == "puras_gateway.routes.jobs" for e in EDGES)


def test_no_service_imports_another_service() -> None:
    wrong = _report(
        e
        for e in EDGES
        if e.package in SERVICES and e.target_package in SERVICES and e.target_package != e.package
    )
    assert not wrong, "a service imports another service:\n" + "\n".join(wrong)


def test_no_library_imports_a_service() -> None:
    wrong = _report(e for e in EDGES if e.package in LIBRARIES and e.target_package in SERVICES)
    assert not wrong, "a library imports a service:\n" + "\n".join(wrong)


@pytest.mark.parametrize("package", sorted(DEVELOPMENT_ONLY))
def test_nothing_shipped_imports_development_tooling(package: str) -> None:
    wrong = _report(
        e for e in EDGES if e.target_package == package and e.package in SERVICES | LIBRARIES
    )
    assert not wrong, f"shipped code imports {package}:\n" + "\n".join(wrong)


def test_gateway_routes_import_no_other_route() -> None:
    prefix = "puras_gateway.routes."
    wrong = _report(
        e
        for e in EDGES
        if e.module.startswith(prefix) and e.target.startswith(prefix) and e.target != e.module
    )
    assert not wrong, "a route imports another route:\n" + "\n".join(wrong)


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _cycles() -> list[list[str]]:
    """Strongly connected groups of modules (Tarjan). Importing one's own parent package is
    not counted: Python initialises the package first, and a package ``__init__`` re-exporting
    its submodules is the common, safe shape."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for e in EDGES:
        if e.target in MODULES and e.target != e.module and e.target not in _ancestors(e.module):
            graph[e.module].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while (w := stack.pop()) != v:
                group.append(w)
            group.append(v)
            if len(group) > 1:
                groups.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return groups


def test_no_import_cycles() -> None:
    cycles = _cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)
