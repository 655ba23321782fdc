"""Contexts: the clusters this CLI knows by name, as docker's contexts are.

Kept in the config dir, ``$SHOAL_CONFIG_DIR`` or ``~/.shoal``:

    contexts/NAME.json   {"name", "description", "hosts": [...], "tls_dir", "state_dir"}
    config.json          {"current_context": NAME}

A context made by ``shoal up`` has a ``state_dir``: it is a local cluster,
running while the processes of its ``up.json`` record run. ``shoal up``
names it ``local`` for the default state dir (CONFIG_DIR/up) and
``local-<dir name>`` for another one.

Which cluster a command talks to, the first that says:

1. ``--host`` / ``--tls-dir`` (or ``SHOAL_HOST`` / ``SHOAL_TLS_DIR``); each
   alone replaces that half of the context's address;
2. ``--context NAME``;
3. ``SHOAL_CONTEXT``: a context's name, or (when it holds a ``/``) the path of
   a context file of the older one-file form ``{"hosts": [...], "tls_dir": ...}``;
4. the current context (``shoal context use NAME``).

A ``CONFIG_DIR/context.json`` from before contexts existed is taken in once,
as ``local`` when ``shoal up`` wrote it, else as ``default``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shoal.cli.client import Client, CLIError, Target
from shoal.cli.uprecord import UpRecord

NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
LOCAL = "local"


def config_dir() -> Path:
    return Path(os.environ.get("SHOAL_CONFIG_DIR") or Path.home() / ".shoal")


def default_state_dir() -> Path:
    return config_dir() / "up"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise CLIError(
            f'context name "{name[:80]}": use letters, digits, "_", "." and "-" '
            "(starting with a letter or digit), at most 63 characters"
        )
    return name


@dataclass(frozen=True)
class Context:
    name: str
    hosts: list[str]
    tls_dir: str
    description: str = ""
    state_dir: str = ""  # set for a cluster `shoal up` runs

    @property
    def local(self) -> bool:
        return bool(self.state_dir)

    def record(self) -> UpRecord | None:
        return UpRecord.load(Path(self.state_dir)) if self.local else None

    def state(self) -> str:
        """running / stopped for a local cluster; "" for another one."""
        if not self.local:
            return ""
        record = self.record()
        return "running" if record is not None and record.running() else "stopped"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], name: str) -> Context:
        return cls(
            name=name,
            hosts=[str(h) for h in data.get("hosts", [])],
            tls_dir=str(data.get("tls_dir", "")),
            description=str(data.get("description", "")),
            state_dir=str(data.get("state_dir", "")),
        )


@dataclass
class ContextStore:
    root: Path = field(default_factory=config_dir)

    @property
    def _dir(self) -> Path:
        return self.root / "contexts"

    def _config(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.root / "config.json").read_text())
            return data
        except (OSError, ValueError):
            return {}

    def _write_config(self, data: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _write_json(self.root / "config.json", data)

    def names(self) -> list[str]:
        self.migrate()
        return sorted(p.stem for p in self._dir.glob("*.json")) if self._dir.is_dir() else []

    def get(self, name: str) -> Context | None:
        self.migrate()
        if not NAME.match(name):
            return None
        try:
            data = json.loads((self._dir / f"{name}.json").read_text())
        except (OSError, ValueError):
            return None
        return Context.from_json(data, name)

    def all(self) -> list[Context]:
        return [c for n in self.names() if (c := self.get(n)) is not None]

    def save(self, ctx: Context) -> None:
        check_name(ctx.name)
        self._dir.mkdir(parents=True, exist_ok=True)
        _write_json(self._dir / f"{ctx.name}.json", ctx.to_json())

    def remove(self, name: str) -> None:
        (self._dir / f"{name}.json").unlink(missing_ok=True)
        if self.current() == name:
            self.use(None)

    def current(self) -> str | None:
        self.migrate()
        name = self._config().get("current_context")
        return str(name) if name else None

    def use(self, name: str | None) -> None:
        data = self._config()
        if name:
            data["current_context"] = name
        else:
            data.pop("current_context", None)
        self._write_config(data)

    def owner_of(self, state_dir: Path) -> Context | None:
        """The local context whose cluster lives in state_dir."""
        wanted = str(state_dir.absolute())
        return next((c for c in self.all() if c.state_dir == wanted), None)

    def migrate(self) -> None:
        """Take in CONFIG_DIR/context.json (before contexts) once."""
        old = self.root / "context.json"
        if not old.is_file():
            return
        data = self._config()
        if data.get("migrated_context_json"):
            return
        data["migrated_context_json"] = True
        legacy = read_context_file(old)
        if legacy is not None:
            up = self.root / "up"
            local = Path(legacy.tls_dir) == up / "manager" / "admin"
            name = LOCAL if local else "default"
            self._dir.mkdir(parents=True, exist_ok=True)
            if not (self._dir / f"{name}.json").exists():
                migrated = Context(name, legacy.hosts, legacy.tls_dir, state_dir=str(up) if local else "")
                _write_json(self._dir / f"{name}.json", migrated.to_json())
                data.setdefault("current_context", name)
                print(f'note: {old} is now the context "{name}" (see shoal context ls)', file=sys.stderr)
        self._write_config(data)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def read_context_file(path: Path) -> Context | None:
    """A context file of the one-file form; None when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return Context.from_json(data, path.stem)


def write_context_file(path: Path, hosts: list[str], tls_dir: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, {"hosts": hosts, "tls_dir": str(tls_dir)})


def context_file_from_env() -> Path | None:
    """SHOAL_CONTEXT when it names a file (it holds a "/")."""
    value = os.environ.get("SHOAL_CONTEXT", "")
    return Path(value) if "/" in value else None


def wanted_context(flag: str | None) -> str | None:
    """The context name --context or SHOAL_CONTEXT asks for (not a file)."""
    if flag:
        return flag
    value = os.environ.get("SHOAL_CONTEXT", "")
    return value if value and "/" not in value else None


NO_CLUSTER = "no cluster to talk to: start one with shoal up, or give --host and --tls-dir"


def _up_command(ctx: Context) -> str:
    if Path(ctx.state_dir) == default_state_dir():
        return "shoal up"
    return f"shoal up --state-dir {ctx.state_dir}"


def selected_context(context_flag: str | None, store: ContextStore | None = None) -> Context:
    """The context a command without --host/--tls-dir talks to."""
    path = context_file_from_env() if not context_flag else None
    if path is not None:
        found = read_context_file(path)
        if found is None:
            raise CLIError(f"{NO_CLUSTER} (SHOAL_CONTEXT names {path}, which holds no context)")
        return found
    store = store or ContextStore()
    name = wanted_context(context_flag)
    if name is None:
        name = store.current()
        if name is None:
            raise CLIError(NO_CLUSTER)
    ctx = store.get(name)
    if ctx is None:
        raise CLIError(f'context "{name}" not found (shoal context ls lists them)')
    return ctx


def check_running(ctx: Context) -> None:
    if not ctx.local:
        return
    record = ctx.record()
    if record is None:
        why = "it was stopped"
    elif not record.running():
        why = "its processes have exited"
    else:
        return
    raise CLIError(
        f'no cluster is running for context "{ctx.name}" ({why}); start it with {_up_command(ctx)}'
    )


def resolve_target(host: str | None, tls_dir: str | None, context_flag: str | None = None) -> Target:
    """Where a command's calls go (the order in the module docstring)."""
    host = host or os.environ.get("SHOAL_HOST")
    tls = tls_dir or os.environ.get("SHOAL_TLS_DIR")
    if not (host and tls):
        ctx = selected_context(context_flag)
        if not host:
            check_running(ctx)
        host = host or ",".join(ctx.hosts)
        tls = tls or ctx.tls_dir
    if not host:
        raise CLIError(NO_CLUSTER)
    if not tls:
        raise CLIError(
            "no TLS bundle: give --tls-dir DIR (or SHOAL_TLS_DIR) holding ca.pem, cert.pem, key.pem"
        )
    return Target([h.strip() for h in host.split(",") if h.strip()], Path(tls))


class Connector:
    """What every admin command gets as its ``obj``: called, the Client of
    the cluster the global options (or the context) name, made once."""

    def __init__(self, host: str | None, tls_dir: str | None, context: str | None) -> None:
        self.host = host
        self.tls_dir = tls_dir
        self.context = context
        self._client: Client | None = None

    def __call__(self) -> Client:
        if self._client is None:
            self._client = Client(resolve_target(self.host, self.tls_dir, self.context)).connect()
        return self._client
