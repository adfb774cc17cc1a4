"""The house reads one way: contract <- model <- serving <- components <- pipeline <- local,
and the benchmarks above the components.

`contract/` (schema, layout, feature specs) imports none of the project's other packages;
`model/` only the contract; `serving/` the contract and the model; nothing imports the
benchmarks; and no module of the project imports itself back through others (no import
cycles, counting imports inside functions too; a benchmark imports its siblings by their
bare names, its folder being on sys.path)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("contract", "model", "serving", "components", "local", "benchmarks")
ALLOWED = {
    "contract": set(),
    "model": {"contract"},
    "serving": {"contract", "model"},
    "components": {"contract", "model", "serving"},
    # The local runner, above the pipeline (pipeline.py, pipeline_parameters.py): nothing of
    # the project imports it.
    "local": {"contract", "model", "serving", "components"},
    # Scripts over the project's code; their siblings come in by bare name (`import reports`).
    "benchmarks": {"contract", "model", "serving", "components"},
}
# Packages whose modules import each other by bare name (their folder is on sys.path).
BARE_SIBLINGS = ("benchmarks",)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, modules: dict, siblings: str = "") -> set[str]:
    """The project modules `path` imports, anywhere in it (absolute imports; with `siblings`,
    a bare name that is no project module is that package's module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            found = _resolve(name, modules) or (
                siblings and _resolve(f"{siblings}.{name}", modules)
            )
            if found:
                out.add(found)
    return out


def _resolve(name: str, modules: dict) -> str:
    """The project module `name` is, or is in ("" for none)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def _graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports; a module's own parent packages, which Python
    imports first anyway (`from package import submodule`), are not counted."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        top = name.split(".")[0]
        siblings = top if top in BARE_SIBLINGS else ""
        targets = _imports(path, modules, siblings)
        graph[name] = {t for t in targets if t != name and not name.startswith(f"{t}.")}
    return graph


def test_packages_import_only_downward():
    wrong = sorted(
        (name, target)
        for name, targets in _graph().items()
        for target in targets
        if (top := target.split(".")[0]) != name.split(".")[0]
        and top not in ALLOWED[name.split(".")[0]]
    )
    assert wrong == []


def test_no_import_cycles():
    graph = _graph()
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_graph_is_the_projects():
    graph = _graph()
    assert "contract.schema" in graph["model.ranker"]
    assert "serving.repository" in graph["serving.versions"]
    # The benchmarks' bare sibling imports count, so a cycle among them shows.
    assert "benchmarks.paper_tables" in graph["benchmarks.transfer"]  # import paper_tables as pt
    assert "benchmarks.serving_common" in graph["benchmarks.serving_profile"]
    assert "components.train.config" in graph["benchmarks.reports"]
    assert len(graph) > 60
