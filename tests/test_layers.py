"""The layering of the package (docs/architecture.md, "Layers"): the CLI sits on the library API and
nothing below imports it back; the top-level units (subpackages and modules) import each other
without cycles. Read from the source with `ast`, function-level (lazy) imports included."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "src" / "autovit"


def _imports() -> dict[str, set[str]]:
    """Module name -> the autovit modules it imports anywhere in its source."""
    out: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == "autovit"}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "autovit":
                    found |= {f"autovit.{a.name}" for a in node.names}
                elif node.module.startswith("autovit."):
                    found.add(node.module)
        out[module] = found
    return out


def _unit(module: str) -> str:
    """autovit.search.budget -> search; autovit.bench -> bench; autovit -> autovit."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "autovit"


def test_no_library_module_imports_the_cli() -> None:
    imports = _imports()
    assert "autovit.cli.search" in imports and "autovit.pipeline.run" in imports  # the walk sees the package
    offenders = sorted(f"{module} imports {target}" for module, targets in imports.items()
                       if _unit(module) != "cli" for target in targets if _unit(target) == "cli")
    assert offenders == []


def test_top_level_units_import_each_other_without_cycles() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in _imports().items():
        graph[_unit(module)] |= {_unit(t) for t in targets} - {_unit(module)}
    assert "api" in graph["cli"] and "api" in graph["pipeline"]  # the CLI and the pipeline call the API

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return path + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [" -> ".join(c) for unit in sorted(graph) if (c := cycle_from(unit))]
    assert cycles == []


def test_the_checks_find_a_library_module_importing_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both checks above can fail: one lazy import of the CLI from the search is found, and it closes
    a cycle (cli -> search -> cli)."""
    fake = dict(_imports())
    fake["autovit.search.session"] = fake["autovit.search.session"] | {"autovit.cli.search"}
    monkeypatch.setattr(sys.modules[__name__], "_imports", lambda: fake)
    with pytest.raises(AssertionError):
        test_no_library_module_imports_the_cli()
    with pytest.raises(AssertionError):
        test_top_level_units_import_each_other_without_cycles()
