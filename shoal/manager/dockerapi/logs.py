"""``/services/{id}/logs`` and ``/tasks/{id}/logs``: the ControlAPI's task
output in the engine's multiplexed stream (``framing``).

The service or task is found before the answer starts, so a wrong name is a
404 as the engine sends it; after that the status is sent and problems go
into the stream as the engine's ``Error grabbing logs: ...`` frame. The
ControlAPI reports nodes whose logs it cannot reach (down, disconnected) as
warnings; the engine reports the same thing once, at the end of the stream
("incomplete log stream"), so they are kept until then (with ``follow`` the
stream ends only when the client leaves, and they are only logged).
"""

from __future__ import annotations

import contextlib
import logging

from aiohttp import web

from shoal.manager.dockerapi import framing, wire
from shoal.manager.dockerapi.errors import BAD_REQUEST, DockerError
from shoal.manager.dockerapi.handlers import Route, backend, call, stream
from shoal.manager.dockerapi.tasks import find_task
from shoal.protos import control_pb2 as cpb

log = logging.getLogger(__name__)

# How much output is gathered before a write: the docker CLI reads frames one
# at a time either way; fewer, larger writes cost the manager less.
FLUSH_BYTES = 64 * 1024


async def service_logs(request: web.Request) -> web.StreamResponse:
    svc = await call(
        request, backend(request).control.GetService, cpb.ObjectRef(ref=request.match_info["id"])
    )
    return await _logs(request, svc.meta.id, svc.meta.id)


async def task_logs(request: web.Request) -> web.StreamResponse:
    t = await find_task(request, request.match_info["id"])
    return await _logs(request, t.meta.id, t.service_id)


async def _logs(request: web.Request, ref: str, service_id: str) -> web.StreamResponse:
    q = request.query
    stdout, stderr = wire.parse_bool(q.get("stdout")), wire.parse_bool(q.get("stderr"))
    if not (stdout or stderr):
        raise DockerError(BAD_REQUEST, "Bad parameters: you must choose at least one stream")
    follow = wire.parse_bool(q.get("follow"))
    timestamps = wire.parse_bool(q.get("timestamps"))
    details = wire.parse_bool(q.get("details"))
    wanted = cpb.TaskLogsRequest(
        ref=ref,
        follow=follow,
        tail=wire.parse_tail(q.get("tail", "")),
        since=wire.parse_since(q.get("since", "")),
    )
    response = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.multiplexed-stream"})
    await response.prepare(request)
    warnings: list[str] = []
    pending = bytearray()
    try:
        async with contextlib.aclosing(
            stream(request, backend(request).control.TaskLogs, wanted)
        ) as messages:
            async for msg in messages:
                if msg.warning:
                    warnings.append(msg.warning)
                    log.info("docker API logs of %s: %s", ref, msg.warning)
                    continue
                if msg.stream == "stderr":
                    if not stderr:
                        continue
                    channel = framing.STDERR
                elif not stdout:
                    continue
                else:
                    channel = framing.STDOUT
                context = framing.details(msg.node_id, service_id, msg.task_id) if details else None
                pending += framing.frame(
                    channel, framing.line(msg.data, msg.timestamp, timestamps=timestamps, context=context)
                )
                if len(pending) >= FLUSH_BYTES or follow:
                    await response.write(bytes(pending))
                    pending.clear()
    except DockerError as err:
        pending += framing.frame(framing.SYSTEM, f"Error grabbing logs: {err.message}\n".encode())
    if warnings:
        reasons = "; ".join(warnings)
        text = (
            "Error grabbing logs: warning: incomplete log stream. "
            f"some logs could not be retrieved: {reasons}\n"
        )
        pending += framing.frame(framing.SYSTEM, text.encode())
    if pending:
        await response.write(bytes(pending))
    await response.write_eof()
    return response


ROUTES: list[Route] = [
    ("GET", "/services/{id}/logs", service_logs),
    ("GET", "/tasks/{id}/logs", task_logs),
]
