"""The Docker API listener: an aiohttp server in the manager's event loop.

Requests flow: TLS (``tls``: a client certificate, if presented, must chain
to the cluster's roots) → the engine middleware (the ``/vX.Y`` prefix and
its version check; the ControlAPI's authorization of the caller before
anything else is read; the engine's headers; errors as ``{"message": ...}``;
501 for what shoal does not serve) → a resource module's handler
(``system``, ``services``, ``tasks``, ``nodes``, ``logs``, ``files``,
``networks``) → the ControlAPI
in process (``calls``), which authorizes the caller again and does the
work.

Bounds: a request body of at most the ControlAPI's own request limit; TLS
set-up within the listener's handshake timeout; an idle connection closed
after its idle timeout (``pki.ServerLimits``, as the gRPC listener).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from aiohttp import web

from shoal import pki
from shoal.manager.controlapi.servicer import Control
from shoal.manager.dockerapi import files, logs, networks, nodes, services, system, tasks, versions
from shoal.manager.dockerapi.engine import Host, ping_headers
from shoal.manager.dockerapi.errors import INTERNAL, NOT_IMPLEMENTED, TOO_LARGE, UNAUTHORIZED, DockerError
from shoal.manager.dockerapi.handlers import (
    API_VERSION,
    BACKEND,
    Backend,
    Handler,
    Route,
    authorized,
    error_response,
)
from shoal.manager.dockerapi.tls import FollowingContext, Material
from shoal.rules import limits

log = logging.getLogger(__name__)

RESOURCES: list[list[Route]] = [
    system.ROUTES,
    services.ROUTES,
    tasks.ROUTES,
    nodes.ROUTES,
    logs.ROUTES,
    files.ROUTES,
    networks.ROUTES,
]


_CERT_HINT = "for the docker CLI: DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=<a folder with an admin bundle>"


def _not_served(request: web.Request) -> DockerError:
    return DockerError(
        NOT_IMPLEMENTED,
        f"shoal does not serve {request.method} {request.path}: its Docker API answers the swarm "
        "part of the Engine API (services, tasks, nodes, logs, secrets, configs, networks, version, info)",
    )


def make_app(backend: Backend, routes: Iterable[list[Route]] = RESOURCES) -> web.Application:
    headers = ping_headers(backend.host)

    @web.middleware
    async def engine(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            version, _ = versions.split_prefix(request.path)
            if version is not None:
                refused = versions.refusal(version)
                if refused:
                    raise DockerError(400, refused)
                request[API_VERSION] = version
            # Before anything else is read: the ControlAPI's authorization.
            await authorized(request)
            if request.match_info.http_exception is not None:
                raise _not_served(request)
            return await handler(request)
        except DockerError as err:
            response = error_response(err)
            if err.status == UNAUTHORIZED:
                # No certificate: say what the docker CLI needs, and hang up.
                response = error_response(DockerError(err.status, f"{err.message}; {_CERT_HINT}"))
                response.force_close()
            return response
        except web.HTTPRequestEntityTooLarge:
            return error_response(
                DockerError(TOO_LARGE, f"request body: at most {limits.MAX_REQUEST_BYTES} bytes")
            )
        except web.HTTPException as err:
            return error_response(DockerError(err.status, err.reason))
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as err:
            log.exception("docker API: %s %s failed", request.method, request.path)
            return error_response(DockerError(INTERNAL, f"internal error: {type(err).__name__}: {err}"))

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        for key, value in headers.items():
            response.headers[key] = value

    app = web.Application(middlewares=[engine], client_max_size=limits.MAX_REQUEST_BYTES)
    app[BACKEND] = backend
    app.on_response_prepare.append(add_headers)
    for group in routes:
        for method, path, handler in group:
            for prefix in ("", "/v{api_version:[0-9][0-9.]*}"):
                app.router.add_route(method, prefix + path, handler)
    return app


class DockerAPI:
    """The listener's life: start in the manager's loop, stop with it."""

    def __init__(
        self,
        control: Control,
        material: Callable[[], Material],
        manager_id: str,
        manager_addr: str,
        server_limits: pki.ServerLimits,
        host: Host | None = None,
    ) -> None:
        self.backend = Backend(control, manager_id, manager_addr, host or Host())
        self.tls = FollowingContext(material)
        self.limits = server_limits
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        runner = web.AppRunner(
            make_app(self.backend),
            # A client that goes away (a `logs -f` ended) cancels its handler,
            # as gRPC cancels a call.
            handler_cancellation=True,
            keepalive_timeout=self.limits.idle_timeout,
            # On stop, open requests get what the gRPC listener gives its calls.
            shutdown_timeout=1.0,
            access_log=None,
        )
        await runner.setup()
        self._runner = runner
        assert runner.server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            runner.server,
            host or None,
            port,
            ssl=self.tls.context,
            ssl_handshake_timeout=self.limits.handshake_timeout,
            reuse_address=True,
        )
        sockets = self._server.sockets
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("docker API serving on %s:%d", host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
