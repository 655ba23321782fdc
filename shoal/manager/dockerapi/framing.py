"""Log lines as the engine streams them: each line one frame of its
multiplexed stream (8 bytes: the stream, three zero bytes, the length as a
big-endian uint32; then the bytes), optionally preceded by a timestamp and
by the details the docker CLI needs to name the task (``key=value`` pairs,
URL-escaped, sorted, joined by commas).

Pure. The docker CLI's ``service logs`` asks for details and splits each
frame at its first spaces, so each frame holds exactly one line.
"""

from __future__ import annotations

import struct
import urllib.parse

from shoal.manager.dockerapi.wire import rfc3339

STDOUT = 1
STDERR = 2
# Errors of the stream itself ("Error grabbing logs: ..."); the docker CLI
# prints it and stops.
SYSTEM = 3

_HEADER = struct.Struct(">BxxxI")


def frame(stream: int, payload: bytes) -> bytes:
    return _HEADER.pack(stream, len(payload)) + payload


def details(node_id: str, service_id: str, task_id: str) -> bytes:
    """The context the engine attaches to every line of a swarm service."""
    pairs = {
        "com.docker.swarm.node.id": node_id,
        "com.docker.swarm.service.id": service_id,
        "com.docker.swarm.task.id": task_id,
    }
    return ",".join(
        f"{urllib.parse.quote_plus(k)}={urllib.parse.quote_plus(v)}" for k, v in sorted(pairs.items())
    ).encode()


def line(data: bytes, timestamp_ns: int, *, timestamps: bool, context: bytes | None) -> bytes:
    """One line as the engine writes it: [TIME ][DETAILS ]DATA\\n."""
    out = data.rstrip(b"\n") + b"\n"
    if context is not None:
        out = context + b" " + out
    if timestamps:
        out = rfc3339(timestamp_ns).encode() + b" " + out
    return out
