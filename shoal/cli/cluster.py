"""``shoal cluster ...``: settings, admin bundles, the CA, autolock."""

from __future__ import annotations

import getpass
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from shoal import pki
from shoal.cli.client import Client, CLIError, for_each_ref
from shoal.cli.listing import table
from shoal.cli.render import rfc3339
from shoal.durations import format_duration, parse_duration
from shoal.protos import control_pb2 as cpb
from shoal.protos import objects_pb2 as pb

Factory = Callable[[], Client]


@click.group()
def cluster() -> None:
    """Cluster-wide settings, admin bundles, the CA and autolock."""


def _duration(flag: str, text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as err:
        raise CLIError(f"{flag}: {err}") from None


@cluster.command(name="update")
@click.option("--heartbeat-period", default=None, metavar="DURATION", help="Agent heartbeat period (≥ 100ms)")
@click.option(
    "--task-history-limit", type=int, default=None, metavar="N", help="Ended tasks kept per slot (1-1000)"
)
@click.option(
    "--cert-expiry",
    default=None,
    metavar="DURATION",
    help="Lifetime of certificates issued from now on (≥ 1m)",
)
@click.option(
    "--max-replicas", type=int, default=None, metavar="N", help="Most replicas one service may ask for"
)
@click.option(
    "--autolock",
    type=click.Choice(["true", "false"]),
    default=None,
    help="Keep the cluster's keys encrypted under an unlock key that etcd never sees",
)
@click.pass_obj
def cluster_update(
    client_factory: Factory,
    heartbeat_period: str | None,
    task_history_limit: int | None,
    cert_expiry: str | None,
    max_replicas: int | None,
    autolock: str | None,
) -> None:
    """Change cluster settings (only those given)."""
    req = cpb.UpdateClusterRequest()
    if heartbeat_period is not None:
        req.heartbeat_period = _duration("--heartbeat-period", heartbeat_period)
    if cert_expiry is not None:
        req.cert_expiry = _duration("--cert-expiry", cert_expiry)
    if task_history_limit is not None:
        if task_history_limit < 1:
            raise CLIError(f"--task-history-limit: must be >= 1, got {task_history_limit}")
        req.task_history_limit = task_history_limit
    if max_replicas is not None:
        if max_replicas < 1:
            raise CLIError(f"--max-replicas: must be >= 1, got {max_replicas}")
        req.max_replicas = max_replicas
    client = client_factory()
    resp = client.call("UpdateCluster", req)
    spec = resp.spec
    click.echo(f"heartbeat period:    {format_duration(spec.heartbeat_period)}")
    click.echo(f"task history limit:  {spec.task_history_limit}")
    click.echo(f"cert expiry:         {format_duration(spec.cert_expiry)}")
    if spec.max_replicas:
        click.echo(f"max replicas:        {spec.max_replicas}")
    if autolock is None:
        click.echo(f"autolock:            {'on' if resp.autolock else 'off'}")
        return
    lock = client.call("SetAutolock", cpb.SetAutolockRequest(enabled=autolock == "true"))
    click.echo(f"autolock:            {'on' if lock.autolock else 'off'}")
    if lock.unlock_key:
        click.echo(
            "\nThe cluster's keys are now sealed under this unlock key; etcd does not hold it.\n"
            "A manager that restarts serves nothing until it is given the key: start it with\n"
            "--unlock-key-file FILE, or run `shoal cluster unlock` and paste the key.\n"
            "Keep it somewhere safe (a password manager): it is shown only this once.\n"
        )
        click.echo(f"    {lock.unlock_key}\n")
    elif autolock == "true":
        click.echo("autolock was already on; the unlock key is unchanged")


@cluster.command(name="unlock")
@click.pass_obj
def cluster_unlock(client_factory: Factory) -> None:
    """Unlock the manager that answers (the unlock key is read from stdin)."""
    key = getpass.getpass("Unlock key: ") if sys.stdin.isatty() else sys.stdin.readline()
    if not key.strip():
        raise CLIError("no unlock key given on stdin")
    client = client_factory()
    client.call("UnlockManager", cpb.UnlockManagerRequest(unlock_key=key.strip()))
    click.echo(f"manager at {client.host} unlocked")


# ------------------------------------------------------------------ admin bundles


@cluster.group(name="admin-bundle", invoke_without_command=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Folder to write the bundle to",
)
@click.option("--expiry", default=None, metavar="DURATION", help="Lifetime (default 90 days; 1m to 10 years)")
@click.option("--note", default="", metavar="NOTE", help="What the bundle is for, shown by `admin-bundle ls`")
@click.pass_context
def admin_bundle(ctx: click.Context, out: Path | None, expiry: str | None, note: str) -> None:
    """Issue another admin TLS bundle into OUT (or list and revoke them)."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise click.UsageError("give --out DIR to issue a bundle, or a subcommand (ls, revoke)")
    req = cpb.IssueAdminBundleRequest(issued_to=note)
    if expiry is not None:
        req.expiry = _duration("--expiry", expiry)
    b = ctx.obj().call("IssueAdminBundle", req)
    pki.write_tls_dir(out, pki.TLSFiles(b.ca_pem, b.cert_pem, b.key_pem))
    click.echo(f"admin bundle {b.record.id} written to {out} (expires {rfc3339(b.record.expires_at)})")


def _record_json(r: pb.AdminBundleRecord) -> dict[str, object]:
    return {
        "id": r.id,
        "issued_at": rfc3339(r.issued_at),
        "expires_at": rfc3339(r.expires_at),
        "revoked": bool(r.revoked_at),
        "revoked_at": rfc3339(r.revoked_at),
        "issued_to": r.issued_to,
    }


def _state(record: pb.AdminBundleRecord) -> str:
    return "revoked" if record.revoked_at else "valid"


@admin_bundle.command(name="ls")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", help="table, or a JSON array"
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the IDs")
@click.pass_obj
def admin_bundle_ls(client_factory: Factory, fmt: str, quiet: bool) -> None:
    """List the admin bundles the cluster issued that have not expired."""
    records = client_factory().call("ListAdminBundles", cpb.ListAdminBundlesRequest()).bundles
    if quiet:
        for r in records:
            click.echo(r.id)
        return
    shown = [_record_json(r) for r in records]
    if fmt == "json":
        click.echo(json.dumps(shown, indent=2))
        return
    rows = [
        [r.id, rfc3339(r.issued_at)[:19], rfc3339(r.expires_at)[:19], _state(r), r.issued_to] for r in records
    ]
    click.echo(table(rows, ["ID", "ISSUED", "EXPIRES", "STATE", "ISSUED TO"]))


@admin_bundle.command(name="revoke")
@click.argument("refs", nargs=-1, required=True, metavar="ID...")
@click.pass_obj
def admin_bundle_revoke(client_factory: Factory, refs: tuple[str, ...]) -> None:
    """Revoke admin bundles: refused from their next call on."""
    client = client_factory()
    for_each_ref(refs, lambda ref: client.call("RevokeAdminBundle", cpb.ObjectRef(ref=ref)))


# ------------------------------------------------------------------ CA


def _ca_json(status: cpb.CAStatus) -> dict[str, object]:
    return {
        "digest": status.digest,
        "not_after": rfc3339(status.not_after),
        "rotating": status.rotating,
        "previous_digest": status.previous_digest,
        "rotation_started_at": rfc3339(status.rotation_started_at),
        "nodes": status.nodes,
        "nodes_pending": dict(status.nodes_pending),
    }


@cluster.command(name="ca")
@click.option("--rotate", is_flag=True, help="Make a new CA and re-certify every node with it")
@click.option("--detach", "-d", is_flag=True, help="With --rotate: return at once instead of waiting")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="text, or a JSON object"
)
@click.pass_obj
def cluster_ca(client_factory: Factory, rotate: bool, detach: bool, fmt: str) -> None:
    """Show the cluster CA, or rotate it (waits until every node has a new certificate)."""
    client = client_factory()
    if not rotate:
        status = client.call("GetCAStatus", cpb.GetCAStatusRequest())
        if fmt == "json":
            click.echo(json.dumps(_ca_json(status), indent=2))
            return
        click.echo(f"CA digest:   {status.digest}")
        click.echo(f"valid until: {rfc3339(status.not_after)}")
        if status.rotating:
            done = status.nodes - len(status.nodes_pending)
            click.echo(f"rotating:    {done}/{status.nodes} nodes on the new CA")
        return
    status = client.call("RotateCA", cpb.RotateCARequest())
    click.echo(f"CA rotation started: new CA {status.digest[:12]}; old join tokens no longer work")
    if detach:
        return
    last = ""
    while status.rotating:
        done = status.nodes - len(status.nodes_pending)
        line = f"rotating: {done}/{status.nodes} nodes on the new CA"
        if status.nodes_pending:
            waiting = sorted(status.nodes_pending.values())
            line += f" (waiting for {', '.join(waiting[:5])}{' ...' if len(waiting) > 5 else ''})"
        if line != last:
            click.echo(line)
            last = line
        time.sleep(1)
        try:
            status = client.call("GetCAStatus", cpb.GetCAStatusRequest())
        except CLIError:
            # The certificate this command started with may be from the old
            # CA; a manager's own admin bundle is renewed when a rotation
            # starts, so read the bundle again and retry.
            client.close()
            client = Client(client.target, client.timeout).connect()
            status = client.call("GetCAStatus", cpb.GetCAStatusRequest())
    click.echo(f"CA rotation complete: every node has a certificate from CA {status.digest[:12]}")
    click.echo("Admin bundles issued before the rotation no longer work; issue new ones.")
