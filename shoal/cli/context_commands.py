"""``shoal context ls|use|rm|inspect|create``: the clusters this CLI knows by
name (contexts.py keeps them)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from shoal.cli.client import CLIError
from shoal.cli.contexts import Context, ContextStore, check_name
from shoal.cli.listing import tabulate


@click.group()
def context() -> None:
    """Manage contexts: the clusters this CLI talks to, by name."""


def _get(store: ContextStore, name: str) -> Context:
    found = store.get(name)
    if found is None:
        raise CLIError(f'context "{name}" not found (shoal context ls lists them)')
    return found


@context.command(name="ls")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    help="table, or a JSON array of the contexts",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the names")
def ls(fmt: str, quiet: bool) -> None:
    """List contexts; the current one is marked with *."""
    store = ContextStore()
    current = store.current()
    contexts = store.all()
    if quiet:
        for c in contexts:
            click.echo(c.name)
        return
    if fmt == "json":
        out = [{**c.to_json(), "current": c.name == current, "state": c.state()} for c in contexts]
        click.echo(json.dumps(out, indent=2))
        return
    lines = ["NAME\tDESCRIPTION\tMANAGERS\tSTATE"]
    for c in contexts:
        mark = " *" if c.name == current else ""
        lines.append(f"{c.name}{mark}\t{c.description}\t{','.join(c.hosts)}\t{c.state()}")
    click.echo(tabulate("\n".join(lines)))


@context.command()
@click.argument("name")
def use(name: str) -> None:
    """Make NAME the context commands use when no other is given."""
    store = ContextStore()
    _get(store, name)
    store.use(name)
    click.echo(name)
    click.echo(f'Current context is now "{name}"', err=True)


@context.command(name="rm")
@click.option("--force", "-f", is_flag=True, help="Remove a context even while its local cluster runs")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
def rm(names: tuple[str, ...], force: bool) -> None:
    """Remove contexts (a local cluster's state is kept: shoal down --purge deletes it)."""
    store = ContextStore()
    failed = False
    for name in names:
        try:
            found = _get(store, name)
            if found.state() == "running" and not force:
                raise CLIError(
                    f'context "{name}": its cluster in {found.state_dir} runs; stop it with '
                    f"shoal down --context {name} first (or use --force)"
                )
        except CLIError as err:
            click.echo(f"Error: {err}", err=True)
            failed = True
            continue
        store.remove(name)
        click.echo(name)
    if failed:
        raise SystemExit(1)


@context.command()
@click.argument("names", nargs=-1, metavar="[NAME...]")
def inspect(names: tuple[str, ...]) -> None:
    """Show contexts as JSON (default: the current one)."""
    store = ContextStore()
    if not names:
        current = store.current()
        if current is None:
            raise CLIError("no current context: name one (shoal context ls lists them)")
        names = (current,)
    found = [_get(store, n) for n in names]
    current = store.current()
    click.echo(
        json.dumps(
            [{**c.to_json(), "current": c.name == current, "state": c.state()} for c in found], indent=2
        )
    )


@context.command()
@click.option(
    "--host",
    "hosts",
    required=True,
    metavar="HOST:PORT[,HOST:PORT...]",
    help="The cluster's managers (the first that answers is used)",
)
@click.option(
    "--tls-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="An admin TLS bundle: a folder with ca.pem, cert.pem, key.pem",
)
@click.option("--description", default="", metavar="DESCRIPTION", help="A note shown by context ls")
@click.argument("name")
def create(name: str, hosts: str, tls_dir: Path, description: str) -> None:
    """Save a context NAME for a cluster reached at --host with the bundle in --tls-dir."""
    store = ContextStore()
    check_name(name)
    if store.get(name) is not None:
        raise CLIError(f'context "{name}" exists; remove it first with shoal context rm {name}')
    missing = [f for f in ("ca.pem", "cert.pem", "key.pem") if not (tls_dir / f).is_file()]
    if missing:
        raise CLIError(f"--tls-dir {tls_dir}: missing {', '.join(missing)}")
    addrs = [h.strip() for h in hosts.split(",") if h.strip()]
    if not addrs:
        raise CLIError("--host: give at least one HOST:PORT")
    store.save(Context(name, addrs, str(tls_dir.absolute()), description))
    click.echo(name)
