"""The top-level ``secrets:`` and ``configs:`` of a Compose file.

Each entry is one of:

- ``file: PATH`` (relative to the first file's folder), ``environment:
  VAR`` (the value of a variable, from the environment or ``.env``) or, for
  configs, ``content: TEXT``: the stack creates it, named ``STACK_KEY``
  (or its ``name:``) and labelled with the stack;
- ``external: true`` (or ``external: {name: N}``, or with ``name:``): it
  exists already and keeps its name.

Only the entries some service uses are read and created; the others are a
warning. Values are bounded like ``secret create``'s (500 KiB).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shoal.rules import limits, validate
from shoal.rules.errors import InvalidRequest
from shoal.stack.located import LMap, Loc, StackError, located
from shoal.stack.values import as_bool, as_map, as_str, key_values

Kind = Literal["secret", "config"]
Warn = Callable[[str], None]
NAMESPACE_LABEL = "com.docker.stack.namespace"
_KEYS = {"file", "external", "name", "labels", "environment", "content"}
_IGNORED = {"driver", "driver_opts", "template_driver"}


@dataclass(frozen=True)
class StackObject:
    """A secret or config a stack creates (data) or uses (external)."""

    kind: Kind
    key: str  # its key in the file
    name: str  # its name in the cluster
    external: bool
    data: bytes = b""
    labels: dict[str, str] = field(default_factory=dict)
    loc: Loc | None = None


def _read(path: Path, where: str, loc: Loc | None) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(limits.MAX_FILE_DATA + 1)
    except OSError as err:
        raise StackError(f"{where}: {path}: {err.strerror or err}", loc) from None


def read_objects(
    kind: Kind,
    section: object,
    used: set[str],
    stack: str,
    project_dir: Path,
    env: Mapping[str, str],
    warn: Warn,
) -> dict[str, StackObject]:
    """The entries of the top-level section that services use, by key."""
    if section is None:
        return {}
    entries = as_map(section, f"{kind}s", None)
    out: dict[str, StackObject] = {}
    for key, entry in entries.items():
        where, loc = f"{kind}s.{key}", entries.at(key)
        if key not in used:
            warn(located(loc, f"{where}: no service uses it; not created"))
            continue
        spec = as_map(entry, where, loc) if entry is not None else LMap(loc)
        for extra in sorted(k for k in set(spec) - _KEYS if not k.startswith("x-")):
            reason = "not supported" if extra in _IGNORED else f"not a {kind} setting"
            warn(located(spec.at(extra), f"{where}: {extra} is {reason}; ignored"))
        name = as_str(spec["name"], f"{where}.name", spec.at("name")) if "name" in spec else ""
        external = spec.get("external")
        if isinstance(external, LMap):
            name = as_str(external.get("name", name or key), f"{where}.external.name", external.at("name"))
            external = True
        elif external is not None:
            external = as_bool(external, f"{where}.external", spec.at("external"))
        if external:
            out[key] = StackObject(kind, key, name or key, True, loc=loc)
            continue
        sources = [s for s in ("file", "environment", "content") if s in spec]
        if kind == "secret" and "content" in spec:
            raise StackError(f"{where}: content is for configs; give a secret a file or environment", loc)
        if len(sources) != 1:
            raise StackError(
                f"{where}: needs exactly one of file, environment"
                + (", content" if kind == "config" else "")
                + " (or external: true)",
                loc,
            )
        source = sources[0]
        value = as_str(spec[source], f"{where}.{source}", spec.at(source))
        if source == "file":
            path = Path(value).expanduser()
            data = _read(path if path.is_absolute() else project_dir / path, where, spec.at("file"))
        elif source == "environment":
            if value not in env:
                raise StackError(f"{where}: variable {value} is not set", spec.at(source))
            data = env[value].encode()
        else:
            data = value.encode()
        name = name or f"{stack}_{key}"
        try:
            validate.validate_file_name(kind, name)
            validate.validate_file_data(kind, data)
        except InvalidRequest as err:
            raise StackError(f"{where}: {err}", loc) from None
        labels = {}
        if "labels" in spec:
            given = key_values(spec["labels"], f"{where}.labels", spec.at("labels"), bare="")
            labels = {k: v or "" for k, v in given.items()}
        labels[NAMESPACE_LABEL] = stack
        out[key] = StackObject(kind, key, name, False, data, labels, loc)
    return out
