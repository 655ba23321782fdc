"""Calling the ControlAPI in process, as the Docker API's caller.

Every Docker API handler goes through the manager's own Control servicer:
the same authorization (``auth.Authorizer``: a certificate the cluster CA
signed, admin role, not revoked), the same locked-manager rule, the same
request bounds, validation and conflicts. ``LocalContext`` stands in for
gRPC's servicer context: it carries the certificate the HTTP client
presented in its TLS handshake, and turns ``abort`` into ``CallFailed``,
which ``call`` maps to the engine's HTTP status (``errors.status_for``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeVar

import grpc

from shoal.manager.dockerapi.errors import DockerError, status_for

R = TypeVar("R")


class CallFailed(Exception):
    """What a servicer method aborted with."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class LocalContext:
    """The parts of grpc.aio.ServicerContext the ControlAPI uses."""

    def __init__(self, peer_cert_pem: bytes | None, peer: str) -> None:
        self._cert = peer_cert_pem
        self._peer = peer
        self.trailing_metadata: Sequence[tuple[str, str]] = ()

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [self._cert]} if self._cert else {}

    def peer(self) -> str:
        return self._peer

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise CallFailed(code, details)

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str]]) -> None:
        self.trailing_metadata = metadata


def refusal(err: CallFailed) -> DockerError:
    return DockerError(status_for(err.code), err.details or err.code.name.lower(), err.code)


async def call(method: Callable[[Any, Any], Awaitable[R]], request: Any, context: LocalContext) -> R:
    """One unary ControlAPI call; its refusal as a DockerError."""
    try:
        return await method(request, context)
    except CallFailed as err:
        raise refusal(err) from None


async def stream(
    method: Callable[[Any, Any], AsyncIterator[R]], request: Any, context: LocalContext
) -> AsyncGenerator[R, None]:
    """A streaming ControlAPI call; a refusal as a DockerError (raised where
    the stream stops)."""
    try:
        # Closed explicitly when the reader stops (a client that went away),
        # so the servicer's own clean-up runs at once.
        async with contextlib.aclosing(method(request, context)) as items:  # type: ignore[type-var]
            async for item in items:
                yield item
    except CallFailed as err:
        raise refusal(err) from None
