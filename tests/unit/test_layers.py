"""The layers of STYLE.md: the agent never imports the manager; runtime
backends never import each other; manager components talk through the store."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "shoal"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_agent_never_imports_the_manager() -> None:
    offenders = [
        str(p.relative_to(PKG))
        for p in (PKG / "agent").rglob("*.py")
        if any(m.startswith("shoal.manager") for m in imports_of(p))
    ]
    assert offenders == []


def test_runtime_backends_do_not_import_each_other() -> None:
    backends = {p.stem for p in (PKG / "agent" / "runtime").glob("*.py")} - {"__init__", "base"}
    for path in (PKG / "agent" / "runtime").glob("*.py"):
        others = {f"shoal.agent.runtime.{b}" for b in backends if b != path.stem}
        assert not (imports_of(path) & others), path.name


def test_manager_components_do_not_import_each_other() -> None:
    components = ["orchestrator", "scheduler", "dispatcher", "controlapi"]
    allowed: set[tuple[str, str]] = set()
    for comp in components:
        for path in (PKG / "manager" / comp).rglob("*.py"):
            for other in components:
                if other == comp or (comp, other) in allowed:
                    continue
                assert not any(m.startswith(f"shoal.manager.{other}") for m in imports_of(path)), (
                    f"{path.relative_to(PKG)} imports manager.{other}"
                )
