"""How the admin CLI talks to a manager: a ControlAPI stub over mutual TLS
on the first listed manager that answers, failing over to the next one for
calls that may be repeated. Which managers and which TLS bundle is
contexts.py's business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import tenacity

from shoal import metadata, pki
from shoal.protos import control_pb2_grpc as cgrpc


class CLIError(Exception):
    """A failure to report as one ``Error:`` line and exit status 1. ``code``:
    the gRPC status code's name when a manager refused (``NOT_FOUND``)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


# Attempts of a call that may be repeated, and the errors that repeat it.
RETRIES = 3
_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# How a manager says that it answered but etcd did not.
STORE_DOWN = "cluster store unavailable"


def _manager_did_not_answer(err: BaseException) -> bool:
    """Worth asking another manager: this one is away or timed out. (When
    etcd is down, every manager meets the same etcd.)"""
    return (
        isinstance(err, grpc.RpcError)
        and err.code() in _TRANSIENT
        and not (err.details() or "").startswith(STORE_DOWN)
    )


_warned: list[bool] = []


def _warn_stale(seconds: float) -> None:
    if _warned:
        return
    _warned.append(True)
    import click

    click.echo(
        f"warning: this manager lost its connection to etcd {seconds:.0f}s ago; what it shows may be stale",
        err=True,
    )


@dataclass(frozen=True)
class Target:
    hosts: list[str]
    tls_dir: Path


class Client:
    """A ControlAPI stub on the first manager that answers."""

    def __init__(self, target: Target, timeout: float = 15.0) -> None:
        self.target = target
        self.timeout = timeout
        files = [target.tls_dir / n for n in ("ca.pem", "cert.pem", "key.pem")]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise CLIError(f"TLS bundle incomplete: missing {', '.join(missing)}")
        self.creds = pki.channel_credentials(*(f.read_bytes() for f in files))
        self.channel: grpc.Channel | None = None
        self.stub: Any = None
        self.host = ""

    def connect(self) -> Client:
        errors = []
        for host in self.target.hosts:
            channel = grpc.secure_channel(host, self.creds, options=pki.CHANNEL_OPTIONS)
            try:
                grpc.channel_ready_future(channel).result(timeout=5)
            except grpc.FutureTimeoutError:
                channel.close()
                errors.append(host)
                continue
            self.channel, self.stub, self.host = channel, cgrpc.ControlStub(channel), host
            return self
        raise CLIError(f"cannot reach a manager at {', '.join(errors)}")

    def call(self, method: str, request: Any, timeout: float | None = None, retry: bool = False) -> Any:
        """One call. With retry (calls that are the same call when repeated:
        reads, and creates that carry their own ID), a manager that does not
        answer, or times out, is replaced by the next one and asked again."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_manager_did_not_answer),
            stop=tenacity.stop_after_attempt(RETRIES if retry else 1),
            before_sleep=lambda _: self._next_manager(),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if self.stub is None:
                        self.connect()
                    response, call = getattr(self.stub, method).with_call(
                        request, timeout=timeout or self.timeout
                    )
        except grpc.RpcError as err:
            code = err.code()
            detail = err.details() or code.name
            if detail.startswith(STORE_DOWN):
                raise CLIError(detail, code.name) from None  # the manager answered: etcd did not
            if code == grpc.StatusCode.UNAVAILABLE and "failed to connect" in detail.lower():
                raise CLIError(f"cannot reach the manager at {self.host}: {detail}", code.name) from None
            raise CLIError(detail, code.name) from None
        for key, value in call.trailing_metadata() or ():
            if key == metadata.STALE_SECONDS:
                _warn_stale(float(value))
        return response

    def _next_manager(self) -> None:
        self.close()
        self.stub = None
        self.target = Target(self.target.hosts[1:] + self.target.hosts[:1], self.target.tls_dir)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None


def for_each_ref(refs: tuple[str, ...], act: Callable[[str], Any]) -> None:
    """Run act on each reference, printing it when done; a failure is one
    `Error:` line and the others still run; exit 1 if any failed (as
    `docker service rm a b` does)."""
    import sys

    import click

    failed = False
    for ref in refs:
        try:
            act(ref)
            click.echo(ref)
        except CLIError as err:
            click.echo(f"Error: {err}", err=True)
            failed = True
    if failed:
        sys.exit(1)
