"""The import direction the Code layout page (docs/layout.md) states, checked on the real imports.

`flows` -> `rompy_tasks` (tasks, pipeline, ensemble, forecast, ...) -> {backends, postprocess,
models} -> `core`. Only `flows/` and `rompy_tasks/tasks.py` import Prefect; `core` imports
nothing of ours outside itself; nothing in `rompy_tasks` imports `flows`.
"""

import ast
from pathlib import Path

from conftest import REPO

PREFECT = ("prefect", "prefect_dask", "prefect_docker")


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (function-level imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(package: str) -> dict[str, set[str]]:
    return {str(path.relative_to(REPO)): imports_of(path) for path in (REPO / package).rglob("*.py")}


def offenders(found: dict[str, set[str]], bad: tuple[str, ...], allowed: tuple[str, ...] = ()) -> dict:
    """Per module, the imports that are (inside) one of `bad` and not (inside) one of `allowed`."""

    def within(module: str, names: tuple[str, ...]) -> bool:
        return any(module == name or module.startswith(name + ".") for name in names)

    hits = {
        name: sorted(m for m in imported if within(m, bad) and not within(m, allowed))
        for name, imported in found.items()
    }
    return {name: modules for name, modules in hits.items() if modules}


def test_only_flows_and_the_task_wrappers_import_prefect():
    found = modules("rompy_tasks")
    found.pop("rompy_tasks/tasks.py")
    assert offenders(found, PREFECT) == {}


def test_core_imports_nothing_of_ours_outside_core():
    assert offenders(modules("rompy_tasks/core"), ("rompy_tasks", "flows"), allowed=("rompy_tasks.core",)) == {}


def test_the_checks_see_imports():
    assert offenders(modules("flows"), PREFECT), "flows import Prefect: the check must see it"


def test_nothing_in_the_package_imports_the_flows():
    assert offenders(modules("rompy_tasks"), ("flows",)) == {}


def test_backends_postprocessors_and_models_do_not_import_the_orchestration_layer():
    layer = ("rompy_tasks.pipeline", "rompy_tasks.tasks", "rompy_tasks.ensemble", "rompy_tasks.forecast")
    found = {**modules("rompy_tasks/backends"), **modules("rompy_tasks/postprocess"), **modules("rompy_tasks/models")}
    assert offenders(found, layer) == {}


def test_only_the_rompy_bridge_imports_rompy():
    """The core install stays rompy-free: rompy is imported by the [rompy] extra's child process only
    (rompy_run); rompy_models gets rompy's classes from the entry points and imports rompy where it runs."""
    found = {**modules("rompy_tasks"), **modules("flows")}
    found.pop("rompy_tasks/models/rompy_run.py")
    found.pop("rompy_tasks/models/rompy_models.py")
    assert offenders(found, ("rompy",)) == {}
    assert offenders(modules("rompy_tasks/models"), ("rompy",)), "rompy_run imports rompy: the check must see it"


def project_imports() -> dict[str, set[str]]:
    """Module -> the project modules it imports, counting every import: at module level, inside
    functions and under TYPE_CHECKING; `from a import b` counts `a.b` when that is a module."""
    paths = {
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): path
        for package in ("flows", "rompy_tasks")
        for path in (REPO / package).rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                for alias in node.names:
                    edges.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base)
        graph[name] = {module for module in edges if module in paths and module != name}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while (member := stack.pop()) != module:
                group.append(member)
            if group:
                circles.append(sorted([module, *group]))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


def test_no_import_circles_among_our_modules():
    """A module in a circle cannot be read or changed alone (the CLI, its client and the warm
    process imported each other; so did the model run and the model config)."""
    assert import_circles(project_imports()) == []


def test_the_circle_check_finds_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_circles(graph) == [["a", "b", "c"]]
    assert "flows.command_socket" in project_imports()["flows.entry"], "the check sees the imports"


def test_the_data_layer_uses_only_core():
    """Forcing cuts, postprocessors and static inputs use the data layer; it knows nothing of them."""
    assert (
        offenders(
            modules("rompy_tasks/data"), ("rompy_tasks", "flows"), allowed=("rompy_tasks.core", "rompy_tasks.data")
        )
        == {}
    )
