"""Errors as the Docker engine sends them: an HTTP status and
``{"message": "..."}`` (the docker CLI prints ``Error response from daemon:``
and the message).

``DockerError`` is the one exception handlers raise; ``status_for`` maps the
ControlAPI's gRPC status codes to HTTP statuses, once, here.
"""

from __future__ import annotations

import json
from typing import Any

import grpc

BAD_REQUEST = 400
UNAUTHORIZED = 401
FORBIDDEN = 403
NOT_FOUND = 404
CONFLICT = 409
TOO_LARGE = 413
INTERNAL = 500
NOT_IMPLEMENTED = 501
UNAVAILABLE = 503

_HTTP_FOR_GRPC = {
    grpc.StatusCode.INVALID_ARGUMENT: BAD_REQUEST,
    grpc.StatusCode.OUT_OF_RANGE: BAD_REQUEST,
    grpc.StatusCode.UNAUTHENTICATED: UNAUTHORIZED,
    grpc.StatusCode.PERMISSION_DENIED: FORBIDDEN,
    grpc.StatusCode.NOT_FOUND: NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: CONFLICT,
    # A stale version: the engine's "update out of sequence".
    grpc.StatusCode.ABORTED: CONFLICT,
    # A locked manager (autolock): the engine answers 503 while its swarm is locked.
    grpc.StatusCode.FAILED_PRECONDITION: UNAVAILABLE,
    grpc.StatusCode.UNAVAILABLE: UNAVAILABLE,
    grpc.StatusCode.UNIMPLEMENTED: NOT_IMPLEMENTED,
}


class DockerError(Exception):
    """A refusal with the HTTP status and the message the client will print."""

    def __init__(self, status: int, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        # The ControlAPI's status code, when the refusal is the ControlAPI's.
        self.code = code


def status_for(code: grpc.StatusCode) -> int:
    return _HTTP_FOR_GRPC.get(code, INTERNAL)


def json_bytes(obj: Any) -> bytes:
    """The body the engine writes: compact JSON and a newline."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
