"""The PROXY protocol header (HAProxy's, versions 1 and 2), sent toward a
task before the client's bytes so that the task learns who the client is.

v1 is a line of text: ``PROXY TCP4 <client> <dest> <client port> <dest
port>\\r\\n``; v2 is binary: a 12-byte signature, version and command,
family, length, then the addresses. ``header`` makes either for a TCP
connection over IPv4 or IPv6; anything else gets v1's ``UNKNOWN`` or v2's
``LOCAL`` (which tells the task to use the connection's own addresses).
"""

from __future__ import annotations

import ipaddress
import struct

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_PROXY = 0x21  # version 2, command PROXY
_V2_LOCAL = 0x20  # version 2, command LOCAL
_V2_TCP4 = 0x11
_V2_TCP6 = 0x21

Address = tuple[str, int]


def header(version: str, client: Address, dest: Address) -> bytes:
    """The header of `version` ("v1" or "v2") for a connection from client
    to dest; b"" for no version."""
    if not version:
        return b""
    if version not in ("v1", "v2"):
        raise ValueError(f"proxy protocol {version!r}: must be v1 or v2")
    try:
        src, dst = ipaddress.ip_address(client[0]), ipaddress.ip_address(dest[0])
    except ValueError:
        return b"PROXY UNKNOWN\r\n" if version == "v1" else _v2_local()
    if src.version != dst.version:
        return b"PROXY UNKNOWN\r\n" if version == "v1" else _v2_local()
    if version == "v1":
        family = "TCP4" if src.version == 4 else "TCP6"
        return f"PROXY {family} {src} {dst} {client[1]} {dest[1]}\r\n".encode()
    kind = _V2_TCP4 if src.version == 4 else _V2_TCP6
    body = src.packed + dst.packed + struct.pack("!HH", client[1], dest[1])
    return V2_SIGNATURE + bytes([_V2_PROXY, kind]) + struct.pack("!H", len(body)) + body


def _v2_local() -> bytes:
    return V2_SIGNATURE + bytes([_V2_LOCAL, 0]) + struct.pack("!H", 0)
