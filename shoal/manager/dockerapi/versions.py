"""Docker Engine API versions: which ones this server speaks, and the
engine's answer to a client that asks for another.

Every path may carry a ``/vX.Y`` prefix; without one the request is read as
the newest version served. The docker CLI asks ``/_ping`` first and then
speaks the version the ``Api-Version`` header names (or its own, if older).
"""

from __future__ import annotations

import re

# The version advertised: the docker CLI 20.10's own (it refuses servers
# below 1.40), and the last one before the swarm API changed shape.
API_VERSION = "1.41"
# The oldest version whose swarm endpoints answer as here (1.24: the first
# API with services, nodes and tasks).
MIN_API_VERSION = "1.24"

_PREFIX = re.compile(r"^/v([0-9]+(?:\.[0-9]+)*)(/.*)$")


def key(version: str) -> tuple[int, ...]:
    """A version as a tuple that compares as the engine compares them."""
    return tuple(int(part) for part in version.split("."))


def at_least(version: str, wanted: str) -> bool:
    return key(version) >= key(wanted)


def split_prefix(path: str) -> tuple[str | None, str]:
    """("1.41", "/services") for "/v1.41/services"; (None, path) without a prefix."""
    match = _PREFIX.match(path)
    if match is None:
        return None, path
    return match.group(1), match.group(2)


def refusal(version: str) -> str | None:
    """The engine's message for a version it does not serve, else None."""
    if key(version) < key(MIN_API_VERSION):
        return (
            f"client version {version} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version"
        )
    if key(version) > key(API_VERSION):
        return f"client version {version} is too new. Maximum supported API version is {API_VERSION}"
    return None
