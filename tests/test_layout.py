"""The layout the code keeps: modules of one job (none over 400 lines without a stated reason), the
command line on top (nothing below src/shootout imports it), no import circle, and every package
seen by the layer contracts of pyproject.toml (which `make test` checks with lint-imports)."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

from tests.conftest import ROOT

SRC = ROOT / "src"
LIMIT = 400
REASON = "Over 400 lines:"


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def _name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_over_400_lines_without_a_reason_in_its_docstring():
    too_long = []
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n") + (not text.endswith("\n") and bool(text))
        if lines <= LIMIT:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not any(line.strip().startswith(REASON) for line in doc.splitlines()):
            too_long.append(f"{path.relative_to(ROOT)} ({lines} lines)")
    assert not too_long, (f"split these modules, or say why one module in a docstring line starting "
                          f"'{REASON}': " + ", ".join(too_long))


def test_nothing_below_the_command_line_imports_it():
    """Only src/shootout imports ``shootout``: the stages never stand on the CLI."""
    offenders = []
    for path in _modules():
        if path.relative_to(SRC).parts[0] == "shootout":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names
                          if n == "shootout" or n.startswith("shootout.")]
    assert not offenders, "imports of shootout below the CLI: " + ", ".join(offenders)


def test_every_package_is_regular_and_under_the_layer_contracts():
    """import-linter sees regular packages only (a folder of modules without __init__.py drops out of
    every contract), and only the root packages pyproject.toml names."""
    folders = sorted({p.parent for p in _modules()} - {SRC})
    assert [str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file()] == []
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    assert sorted(config["root_packages"]) == sorted(f.name for f in SRC.iterdir() if (f / "__init__.py").is_file())


def test_no_import_circle_between_modules():
    """No two modules import each other, directly or through others (a package and its own modules
    included, which the contracts' sibling check does not see); lazy imports inside functions count."""
    import grimp

    sys.path.insert(0, str(SRC))
    try:
        graph = grimp.build_graph(*sorted(f.name for f in SRC.iterdir() if (f / "__init__.py").is_file()))
    finally:
        sys.path.remove(str(SRC))
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    circles = set()
    for a, targets in edges.items():
        for b in targets:
            if a != b and graph.chain_exists(importer=b, imported=a):
                line = graph.get_import_details(importer=a, imported=b)[0]["line_number"]
                circles.add(f"{a} -> {b} (l.{line})")
    assert not circles, "import circles: " + "; ".join(sorted(circles))
