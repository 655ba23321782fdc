"""What every Docker API handler shares: the manager it speaks for, the
caller's identity, the in-process ControlAPI call, and the engine's ways of
reading a request and writing an answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from shoal.manager.controlapi.servicer import Control
from shoal.manager.dockerapi import calls, versions
from shoal.manager.dockerapi.engine import Host
from shoal.manager.dockerapi.errors import BAD_REQUEST, DockerError, json_bytes
from shoal.manager.dockerapi.tls import peer_cert_pem
from shoal.protos import control_pb2 as cpb

R = TypeVar("R")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# (method, path without the /vX.Y prefix, handler)
Route = tuple[str, str, Handler]


@dataclass(frozen=True)
class Backend:
    """The manager the Docker API speaks for."""

    control: Control
    manager_id: str
    manager_addr: str
    host: Host


BACKEND = web.AppKey("backend", Backend)
API_VERSION = "api_version"


def backend(request: web.Request) -> Backend:
    return request.app[BACKEND]


def api_version(request: web.Request) -> str:
    """The version the client asked for (its path prefix), else the newest."""
    return str(request.get(API_VERSION, versions.API_VERSION))


def context(request: web.Request) -> calls.LocalContext:
    """The caller as the ControlAPI sees it: the certificate of its handshake."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    peer = transport.get_extra_info("peername") if transport is not None else None
    where = f"ipv4:{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "unknown"
    return calls.LocalContext(peer_cert_pem(ssl_object), where)


async def call(request: web.Request, method: Callable[[Any, Any], Awaitable[R]], message: Any) -> R:
    """A ControlAPI call on behalf of this request's caller."""
    return await calls.call(method, message, context(request))


def stream(
    request: web.Request, method: Callable[[Any, Any], AsyncIterator[R]], message: Any
) -> AsyncGenerator[R, None]:
    return calls.stream(method, message, context(request))


async def authorized(request: web.Request) -> None:
    """Only the ControlAPI's authorization, for answers that need no call
    (ping, version): the same rule as GetClusterInfo, which a locked
    manager still answers."""
    control = backend(request).control

    async def check(message: Any, ctx: Any) -> None:
        await control.authorize("GetClusterInfo", message, ctx)

    await call(request, check, cpb.GetClusterInfoRequest())


def json_response(obj: Any, status: int = 200) -> web.Response:
    # Exactly "application/json": the docker CLI reads an error's message
    # only under that content type, with no charset.
    return web.Response(body=json_bytes(obj), status=status, headers={"Content-Type": "application/json"})


def error_response(err: DockerError) -> web.Response:
    return json_response({"message": err.message}, err.status)


def empty_response(status: int = 200) -> web.Response:
    return web.Response(status=status)


async def read_json(request: web.Request) -> Any:
    """The request's JSON body (bounded by the app's client_max_size)."""
    raw = await request.read()
    if not raw.strip():
        raise DockerError(BAD_REQUEST, "got EOF while reading request body")
    try:
        return json.loads(raw)
    except ValueError as err:
        raise DockerError(BAD_REQUEST, f"invalid JSON in the request body: {err}") from None


def version_param(request: web.Request, what: str) -> int:
    """The ``version`` query parameter an update must carry."""
    raw = request.query.get("version", "")
    if not raw.isdigit() or int(raw) >= 2**63:
        raise DockerError(BAD_REQUEST, f"invalid {what} version '{raw[:40]}': expected an unsigned integer")
    return int(raw)
