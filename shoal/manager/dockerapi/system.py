"""``/_ping``, ``/version``, ``/info``, and the answer to
``/distribution/{name}/json`` (the digest lookup ``docker service create``
makes first)."""

from __future__ import annotations

from aiohttp import web

from shoal.manager.dockerapi import engine
from shoal.manager.dockerapi.errors import NOT_IMPLEMENTED, DockerError
from shoal.manager.dockerapi.handlers import Route, backend, call, json_response
from shoal.protos import control_pb2 as cpb

# Every request was authorized before it got here (server's middleware).


async def ping(request: web.Request) -> web.StreamResponse:
    headers = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}
    if request.method == "HEAD":
        return web.Response(headers={**headers, "Content-Type": "text/plain; charset=utf-8"})
    return web.Response(text="OK", headers=headers)


async def version(request: web.Request) -> web.StreamResponse:
    return json_response(engine.version_info(backend(request).host))


async def info(request: web.Request) -> web.StreamResponse:
    b = backend(request)
    cluster = await call(request, b.control.GetClusterInfo, cpb.GetClusterInfoRequest())
    ca = await call(request, b.control.GetCAStatus, cpb.GetCAStatusRequest())
    return json_response(engine.info(b.host, cluster, ca, b.manager_id, b.manager_addr, ""))


async def distribution(request: web.Request) -> web.StreamResponse:
    # The docker CLI asks this to pin the image's digest; without an answer
    # it warns that each node resolves the image itself, which is what shoal
    # does.
    name = request.match_info.get("name", "")
    raise DockerError(
        NOT_IMPLEMENTED,
        f"shoal does not look up image digests: each node pulls {name[:200]} by its reference",
    )


ROUTES: list[Route] = [
    ("GET", "/_ping", ping),
    ("HEAD", "/_ping", ping),
    ("GET", "/version", version),
    ("GET", "/info", info),
    ("GET", "/distribution/{name:.+}/json", distribution),
]
