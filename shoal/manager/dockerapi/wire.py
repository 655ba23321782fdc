"""Small conversions between shoal's values and the Engine API's JSON:
times (RFC 3339 with nanoseconds, as Go writes them), the ``since`` of a log
request, object versions and metadata, and what counts as an "empty" value (one Go's
``omitempty`` would have left out, so a client that sends it asked for
nothing).
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from shoal.manager.dockerapi.errors import BAD_REQUEST, DockerError
from shoal.protos import objects_pb2 as pb

SECOND = 1_000_000_000
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def rfc3339(ns: int) -> str:
    """Unix nanoseconds as Go's time.Time marshals them (UTC, nanoseconds)."""
    seconds, nanos = divmod(ns, SECOND)
    stamp = (_EPOCH + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


def version(index: int) -> dict[str, int]:
    """An object version: shoal's is the etcd revision of the stored object."""
    return {"Index": index}


def meta(m: pb.Meta) -> dict[str, Any]:
    """ID, version and times, as every swarm object of the engine has them."""
    return {
        "ID": m.id,
        "Version": version(m.version),
        "CreatedAt": rfc3339(m.created_at),
        "UpdatedAt": rfc3339(m.updated_at or m.created_at),
    }


_SINCE_NUMBER = re.compile(r"^(\d+)(?:\.(\d{1,9}))?$")


def parse_since(text: str) -> int:
    """A log request's ``since`` as Unix nanoseconds (0: from the start).

    The docker CLI sends ``SECONDS.NANOSECONDS``; an RFC 3339 time is read too.
    """
    text = text.strip()
    if not text:
        return 0
    match = _SINCE_NUMBER.match(text)
    if match is not None:
        nanos = (match.group(2) or "").ljust(9, "0")
        return int(match.group(1)) * SECOND + int(nanos or 0)
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DockerError(
            BAD_REQUEST, f'since "{text[:40]}": expected SECONDS[.NANOSECONDS] or an RFC 3339 time'
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0, int((when - _EPOCH).total_seconds() * SECOND))


def parse_tail(text: str) -> int:
    """A log request's ``tail``: a number of lines, or -1 for all."""
    text = text.strip()
    if text in ("", "all"):
        return -1
    try:
        value = int(text)
    except ValueError:
        raise DockerError(BAD_REQUEST, f'tail "{text[:40]}": expected a number of lines or "all"') from None
    return value if value >= 0 else -1


def parse_bool(text: str | None) -> bool:
    """A query flag as the engine reads one: "1", "true", "True"... are true."""
    return (text or "").strip().lower() in ("1", "true", "t", "yes", "y", "on")


def is_empty(value: Any) -> bool:
    """Whether a JSON value says nothing: null, false, 0, "", or containers
    of nothing but such values (what the docker CLI sends for flags not given)."""
    if value is None or value is False or value == 0 or value == "":
        return True
    if isinstance(value, dict):
        return all(is_empty(v) for v in value.values())
    if isinstance(value, list):
        return all(is_empty(v) for v in value)
    return False
