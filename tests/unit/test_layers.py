"""The layers of STYLE.md: the agent never imports the manager; runtime
backends never import each other; manager components talk through the store.
And the rooms: every module says its purpose, a long one why it is long."""

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


RUNTIME = PKG / "agent" / "runtime"
# The seam and what the backends share; every other module or package under
# runtime/ is a backend.
SHARED = {"__init__", "base", "common"}


def backends() -> dict[str, list[Path]]:
    """Each backend's name and its modules (a package's, or the one file)."""
    found: dict[str, list[Path]] = {}
    for entry in RUNTIME.iterdir():
        if entry.is_dir() and (entry / "__init__.py").exists():
            found[entry.name] = sorted(entry.rglob("*.py"))
        elif entry.suffix == ".py" and entry.stem not in SHARED:
            found[entry.stem] = [entry]
    return found


def test_runtime_backends_do_not_import_each_other() -> None:
    found = backends()
    assert {"process", "docker", "fake"} <= set(found)
    for name, paths in found.items():
        others = [f"shoal.agent.runtime.{other}" for other in found if other != name]
        for path in paths:
            bad = {m for m in imports_of(path) if any(m == o or m.startswith(o + ".") for o in others)}
            assert not bad, f"{path.relative_to(PKG)} imports {sorted(bad)}"


def test_the_shared_runtime_modules_import_no_backend() -> None:
    found = backends()
    for stem in SHARED:
        imported = imports_of(RUNTIME / f"{stem}.py")
        assert not {m for m in imported for b in found if m.startswith(f"shoal.agent.runtime.{b}")}, stem


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


def _shoal_imports(path: Path) -> set[str]:
    return {m for m in imports_of(path) if m == "shoal" or m.startswith("shoal.")}


def test_the_store_imports_no_component() -> None:
    others = ("orchestrator", "scheduler", "dispatcher", "controlapi", "ca")
    for path in (PKG / "manager" / "store").rglob("*.py"):
        bad = [m for m in _shoal_imports(path) if any(m.startswith(f"shoal.manager.{o}") for o in others)]
        assert bad == [], f"{path.relative_to(PKG)} imports {bad}"


def test_the_protos_import_nothing_of_ours() -> None:
    for path in (PKG / "protos").glob("*.py"):
        bad = [m for m in _shoal_imports(path) if not m.startswith("shoal.protos")]
        assert bad == [], f"{path.name} imports {bad}"


def test_shared_modules_import_neither_side() -> None:
    shared = [p for p in PKG.glob("*.py") if p.name != "__main__.py"]
    # The rules (bounds, constraints, spec checks) are enforced by the
    # manager and checked ahead by clients: one home, on neither side.
    for package in ("pki", "rules"):
        shared += list((PKG / package).rglob("*.py"))
    for path in shared:
        bad = [m for m in _shoal_imports(path) if m.startswith(("shoal.manager", "shoal.agent", "shoal.cli"))]
        assert bad == [], f"{path.relative_to(PKG)} imports {bad}"


def test_orchestrator_modes_do_not_import_each_other() -> None:
    modes = {"replicated", "global_", "jobs", "updater", "reaper"}
    for mode in modes:
        path = PKG / "manager" / "orchestrator" / f"{mode}.py"
        others = {f"shoal.manager.orchestrator.{m}" for m in modes - {mode}}
        assert not (_shoal_imports(path) & others), path.name


CLI_COMMANDS = {"services", "nodes", "cluster", "daemons", "local", "files", "stacks", "networks"}


def test_cli_command_modules_do_not_import_each_other() -> None:
    for command in CLI_COMMANDS:
        path = PKG / "cli" / f"{command}.py"
        others = {f"shoal.cli.{c}" for c in CLI_COMMANDS - {command}}
        assert not (_shoal_imports(path) & others), path.name


def test_the_parts_a_command_module_is_built_from_import_no_command_module() -> None:
    """Only its own group imports such a part (services: service_views)."""
    parts = {"service_views", "stack_deploy", "local_state"}
    commands = {f"shoal.cli.{c}" for c in CLI_COMMANDS}
    for part in parts:
        assert not (_shoal_imports(PKG / "cli" / f"{part}.py") & commands), part


# Past this many lines a module says in its docstring why it is one module
# (issue 12: small rooms with one job each, or a reason).
MAX_MODULE_LINES = 400


def test_every_module_says_its_purpose_and_a_long_one_why_it_is_long() -> None:
    silent, long_unexplained = [], []
    for path in sorted(PKG.rglob("*.py")):
        if "_pb2" in path.name:
            continue
        text = path.read_text()
        doc = ast.get_docstring(ast.parse(text)) or ""
        lines = len(text.splitlines())
        if not doc and lines > 3:  # an empty __init__ or a three-line __main__ says nothing to say
            silent.append(str(path.relative_to(PKG)))
        if lines > MAX_MODULE_LINES and "Why this module" not in doc:
            long_unexplained.append(f"{path.relative_to(PKG)} ({lines} lines)")
    assert silent == []
    assert long_unexplained == []


def test_the_compose_loader_is_a_client_package_of_neither_side() -> None:
    """shoal.stack reads files and checks them with the shared rules; it
    talks to no manager and runs nothing (the CLI sends what it returns)."""
    for path in (PKG / "stack").rglob("*.py"):
        bad = [m for m in _shoal_imports(path) if m.startswith(("shoal.manager", "shoal.agent", "shoal.cli"))]
        assert bad == [], f"{path.relative_to(PKG)} imports {bad}"


def test_the_agent_keeps_task_files_out_of_the_runtime_backends() -> None:
    """Secrets and configs are wrapped around any runtime (agent/taskfiles):
    no backend imports that package, and it imports no backend."""
    for paths in backends().values():
        for path in paths:
            assert not any(m.startswith("shoal.agent.taskfiles") for m in imports_of(path)), path.name
    for path in (PKG / "agent" / "taskfiles").rglob("*.py"):
        found = backends()
        bad = {m for m in imports_of(path) for b in found if m.startswith(f"shoal.agent.runtime.{b}")}
        assert not bad, f"{path.relative_to(PKG)} imports {sorted(bad)}"


def test_the_docker_api_goes_through_the_controlapi_only() -> None:
    """A translation layer (issue 16): it calls the ControlAPI servicer and
    never reaches the store or a component itself, so no rule is written twice."""
    forbidden = tuple(
        f"shoal.manager.{part}" for part in ("store", "orchestrator", "scheduler", "dispatcher", "ca", "auth")
    )
    for path in (PKG / "manager" / "dockerapi").rglob("*.py"):
        imported = _shoal_imports(path)
        bad = [m for m in imported if m.startswith(forbidden)]
        bad += [m for m in imported if m.startswith(CONTROL) and m != f"{CONTROL}.servicer"]
        assert bad == [], f"{path.relative_to(PKG)} imports {bad}"


CONTROL = "shoal.manager.controlapi"
