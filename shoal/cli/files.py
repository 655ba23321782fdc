"""``shoal secret ...`` and ``shoal config ...``: create, ls, inspect, rm.

Both groups are made by one function (``file_group``): they differ only in
their name and in what inspect shows (a secret's value never leaves the
managers; a config's is shown, as text when it is UTF-8, else base64).
"""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from shoal.cli import listing
from shoal.cli.client import Client, CLIError, for_each_ref
from shoal.cli.filters import FILE_KEYS, file_matches
from shoal.cli.render import rfc3339
from shoal.cli.rows import CONFIGS, SECRETS, file_row
from shoal.cli.service_flags import key_values
from shoal.ids import new_id
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb
from shoal.rules import limits, validate
from shoal.rules.errors import InvalidRequest

Factory = Callable[[], Client]


def read_data(kind: str, source: str) -> bytes:
    """The bytes of FILE, or of stdin for "-", at most limits.MAX_FILE_DATA
    (read no further than one byte beyond, whatever the source)."""
    try:
        if source == "-":
            data = sys.stdin.buffer.read(limits.MAX_FILE_DATA + 1)
        else:
            with open(Path(source), "rb") as f:
                data = f.read(limits.MAX_FILE_DATA + 1)
    except OSError as err:
        raise CLIError(f"{kind} file {source}: {err.strerror or err}") from None
    try:
        validate.validate_file_data(kind, data)
    except InvalidRequest as err:
        raise CLIError(f"{err} (at most {limits.MAX_FILE_DATA // 1024} KiB)") from None
    return data


def object_json(obj: pb.Secret | pb.Config, with_data: bool = False) -> dict[str, Any]:
    """As ls and inspect show it; a config's data only with_data (inspect)."""
    out: dict[str, Any] = {
        "id": obj.meta.id,
        "version": obj.meta.version,
        "created_at": rfc3339(obj.meta.created_at),
        "updated_at": rfc3339(obj.meta.updated_at),
        "spec": {"name": obj.spec.name, "labels": dict(obj.spec.labels)},
    }
    out["size"] = obj.size
    if isinstance(obj, pb.Config) and with_data:
        try:
            out["spec"]["data"] = obj.spec.data.decode()
        except UnicodeDecodeError:
            out["spec"]["data"] = base64.b64encode(obj.spec.data).decode()
            out["spec"]["data_encoding"] = "base64"
    return out


def file_group(kind: str) -> click.Group:
    title = kind.capitalize()
    plural = f"{title}s"

    @click.group(name=kind, help=f"Manage {kind}s (files for tasks, at most 500 KiB each).")
    def group() -> None:
        pass

    @group.command(name="create")
    @click.option("--label", "-l", "labels", multiple=True, metavar="KEY=VALUE", help=f"{title} label")
    @click.argument("name")
    @click.argument("source", metavar="FILE|-")
    @click.pass_obj
    def create(client_factory: Factory, labels: tuple[str, ...], name: str, source: str) -> None:
        """Create NAME from FILE (or stdin: -)."""
        try:
            validate.validate_file_name(kind, name)
        except InvalidRequest as err:
            raise CLIError(str(err)) from None
        data = read_data(kind, source)
        label_map = key_values("--label", labels)
        client = client_factory()
        # Our own ID: a create retried after a lost answer is the same create.
        if kind == "secret":
            request: Any = cpb.CreateSecretRequest(
                spec=pb.SecretSpec(name=name, labels=label_map, data=data), id=new_id()
            )
            created = client.call("CreateSecret", request, retry=True)
        else:
            request = cpb.CreateConfigRequest(
                spec=pb.ConfigSpec(name=name, labels=label_map, data=data), id=new_id()
            )
            created = client.call("CreateConfig", request, retry=True)
        click.echo(created.meta.id)

    which = SECRETS if kind == "secret" else CONFIGS

    @group.command(name="ls", help=f"List {kind}s (by name).")
    @listing.options(which, f"{kind} IDs", f"Only {kind}s that match: id, name (a prefix), label=KEY[=VALUE]")
    @click.pass_obj
    def ls(client_factory: Factory, fmt: str, quiet: bool, no_trunc: bool, filters: tuple[str, ...]) -> None:
        asked = listing.ask(which, FILE_KEYS, fmt, filters, quiet, no_trunc)
        found = [o for o in list_objects(client_factory(), kind) if file_matches(asked.filters, o)]
        now = time.time_ns()
        listing.show(
            which,
            asked,
            sorted(found, key=lambda o: listing.natural_key(o.spec.name)),
            lambda o: o.meta.id,
            lambda o: file_row(o, now, asked.trunc),
            object_json,
        )

    @group.command(name="inspect")
    @click.argument("refs", nargs=-1, required=True, metavar=f"{kind.upper()}...")
    @click.pass_obj
    def inspect(client_factory: Factory, refs: tuple[str, ...]) -> None:
        """Show them as JSON (a secret's value is never shown)."""
        client = client_factory()
        method = f"Get{title}"
        click.echo(
            json.dumps(
                [object_json(client.call(method, cpb.ObjectRef(ref=r)), with_data=True) for r in refs],
                indent=2,
            )
        )

    @group.command(name="rm")
    @click.argument("refs", nargs=-1, required=True, metavar=f"{kind.upper()}...")
    @click.pass_obj
    def rm(client_factory: Factory, refs: tuple[str, ...]) -> None:
        """Remove them (refused for one a service uses)."""
        client = client_factory()
        for_each_ref(refs, lambda ref: client.call(f"Remove{title}", cpb.ObjectRef(ref=ref)))

    group.short_help = f"Manage {plural.lower()}"
    return group


def list_objects(client: Client, kind: str) -> list[Any]:
    if kind == "secret":
        return list(client.call("ListSecrets", cpb.ListSecretsRequest(), retry=True).secrets)
    return list(client.call("ListConfigs", cpb.ListConfigsRequest(), retry=True).configs)


secret = file_group("secret")
config = file_group("config")
