"""The package's layering, read from the source files (nothing is imported): the engine names no method and
imports nothing above it, its modules import one another without a cycle, and the comparisons import nothing of
the benchmarks (what both measure with is ``auxnas.measure``); data parallelism has one owner; no Python file is over
400 lines."""

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "auxnas"
ENGINE = SRC / "engine"
#: what only a method may name: the engine reaches methods through ``MultiTaskModel``'s hooks
METHOD_WORDS = ("a2p", "p2a", "link_strengths", "aux_nas", "LinkedBranches")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved, ``TYPE_CHECKING`` ones too)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # ``from . import steps``
    return found


def test_no_engine_module_names_a_method():
    for path in sorted(ENGINE.glob("*.py")):
        text = path.read_text()
        assert [word for word in METHOD_WORDS if word in text] == [], path.name


def test_the_engine_imports_neither_the_comparisons_nor_the_benchmarks():
    for path in sorted(ENGINE.glob("*.py")):
        above = {m for m in imported_modules(path) if m.startswith(("auxnas.compare", "auxnas.bench"))}
        assert above == set(), path.name


def test_the_comparisons_import_nothing_of_the_benchmarks():
    for path in sorted((SRC / "compare").rglob("*.py")):
        assert {m for m in imported_modules(path) if m.startswith("auxnas.bench")} == set(), path.name


def test_engine_modules_import_one_another_without_a_cycle():
    names = {module_name(path): path for path in ENGINE.glob("*.py") if path.name != "__init__.py"}
    edges = {name: imported_modules(path) & set(names) for name, path in names.items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name not in done:
            for other in sorted(edges[name]):
                visit(other, (*path, name))
            done.add(name)

    for name in sorted(names):
        visit(name, ())
    assert "auxnas.engine.steps" in edges["auxnas.engine.fit"]  # the imports were read


def test_data_parallelism_has_one_owner():
    """Only ``engine.parallel`` wraps a model in ``DistributedDataParallel``, and the loss shares travel as an
    argument (``Batch.shares``), never as a key of the batch."""
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        if path != ENGINE / "parallel.py":
            assert "DistributedDataParallel(" not in text, path
        assert re.search(r"""batch(\[|\.get\()["']share""", text) is None, path


def test_no_python_file_is_over_400_lines():
    root = SRC.parents[1]
    for folder in ("src", "tests", "benchmarks"):
        for path in sorted((root / folder).rglob("*.py")):
            assert len(path.read_text().splitlines()) <= 400, path
