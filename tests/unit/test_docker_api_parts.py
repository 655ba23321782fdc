"""The small parts of the Docker API (shoal.manager.dockerapi): version
negotiation, filters, the log stream's framing, the wire helpers, error
mapping, and the listener's TLS following a certificate change (real TLS
over loopback)."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import struct
import tempfile
from pathlib import Path

import grpc
import pytest

from shoal import pki
from shoal.manager.ca.authority import CertificateAuthority, new_root_ca
from shoal.manager.dockerapi import errors, filters, framing, tls, versions, wire
from shoal.manager.dockerapi.calls import CallFailed, LocalContext, call
from shoal.manager.dockerapi.errors import DockerError

SECOND = 1_000_000_000


def test_paths_with_and_without_a_version_prefix() -> None:
    assert versions.split_prefix("/v1.41/services/web") == ("1.41", "/services/web")
    assert versions.split_prefix("/v1.24/_ping") == ("1.24", "/_ping")
    assert versions.split_prefix("/services") == (None, "/services")
    assert versions.split_prefix("/version") == (None, "/version")


def test_versions_outside_the_served_range_get_the_engines_message() -> None:
    assert versions.refusal("1.41") is None
    assert versions.refusal("1.24") is None
    assert versions.refusal("1.30") is None
    assert versions.refusal("1.43") == "client version 1.43 is too new. Maximum supported API version is 1.41"
    assert versions.refusal("1.12") == (
        "client version 1.12 is too old. Minimum supported API version is 1.24, "
        "please upgrade your client to a newer version"
    )
    # Compared as numbers, not as text.
    assert versions.refusal("1.9") is not None
    assert versions.at_least("1.41", "1.41") and not versions.at_least("1.40", "1.41")


def test_filters_in_the_clis_encoding_and_the_legacy_one() -> None:
    assert filters.parse('{"name":{"web":true,"api":true}}', ["name"]) == {"name": ["web", "api"]}
    assert filters.parse('{"name":["web"]}', ["name"]) == {"name": ["web"]}
    assert filters.parse("", ["name"]) == {}
    with pytest.raises(DockerError, match="Invalid filter 'color'"):
        filters.parse('{"color":{"red":true}}', ["name"])
    with pytest.raises(DockerError, match="invalid JSON"):
        filters.parse("{name", ["name"])
    with pytest.raises(DockerError, match="at most"):
        filters.parse('{"id":[' + ",".join(f'"{i}"' for i in range(2000)) + "]}", ["id"])


def test_filter_matching_as_the_engine_does() -> None:
    wanted = {"name": ["we", "db"], "label": ["tier", "zone=a"]}
    assert filters.prefix(wanted, "name", "web")
    assert not filters.prefix(wanted, "name", "api")
    assert filters.prefix(wanted, "id", "anything")  # no such filter: everything
    assert filters.labels(wanted, "label", {"tier": "x", "zone": "a"})
    assert not filters.labels(wanted, "label", {"tier": "x", "zone": "b"})
    assert not filters.labels(wanted, "label", {"zone": "a"})
    assert filters.labels({"label": ["zone="]}, "label", {"zone": "b"})  # KEY= is KEY
    assert filters.exact({"mode": ["global"]}, "mode", "global")
    assert not filters.exact({"mode": ["global"]}, "mode", "replicated")


def test_a_log_frame_is_the_engines_eight_byte_header_and_one_line() -> None:
    payload = framing.line(b"hello", 0, timestamps=False, context=None)
    frame = framing.frame(framing.STDERR, payload)
    assert frame[:8] == struct.pack(">BxxxI", 2, 6)
    assert frame[8:] == b"hello\n"


def test_a_log_line_carries_the_time_and_the_details_the_cli_parses() -> None:
    details = framing.details("node 1", "svc", "task")
    assert details == (
        b"com.docker.swarm.node.id=node+1,com.docker.swarm.service.id=svc,com.docker.swarm.task.id=task"
    )
    out = framing.line(b"hi\n", 1_700_000_000 * SECOND + 5, timestamps=True, context=details)
    stamp, context, text = out.split(b" ", 2)
    assert stamp == b"2023-11-14T22:13:20.000000005Z"
    assert context == details
    assert text == b"hi\n"


def test_times_as_go_writes_them() -> None:
    assert wire.rfc3339(0) == "1970-01-01T00:00:00.000000000Z"
    assert wire.rfc3339(1_700_000_000 * SECOND + 123) == "2023-11-14T22:13:20.000000123Z"


def test_since_and_tail_as_the_docker_cli_sends_them() -> None:
    assert wire.parse_since("1700000000.000000005") == 1_700_000_000 * SECOND + 5
    assert wire.parse_since("1700000000") == 1_700_000_000 * SECOND
    assert wire.parse_since("1700000000.5") == 1_700_000_000 * SECOND + 500_000_000
    when = datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.UTC)
    assert wire.parse_since("2023-11-14T22:13:20Z") == int(when.timestamp()) * SECOND
    assert wire.parse_since("") == 0
    with pytest.raises(DockerError, match="since"):
        wire.parse_since("yesterday")
    assert wire.parse_tail("all") == -1
    assert wire.parse_tail("") == -1
    assert wire.parse_tail("10") == 10
    with pytest.raises(DockerError, match="tail"):
        wire.parse_tail("ten")


def test_empty_values_are_what_a_flag_not_given_leaves() -> None:
    for empty in (None, False, 0, "", [], {}, {"Nameservers": [], "Search": None}, [{}]):
        assert wire.is_empty(empty), empty
    for value in (True, 1, "x", ["a"], {"a": 1}):
        assert not wire.is_empty(value), value


def test_each_controlapi_refusal_has_the_engines_status() -> None:
    assert errors.status_for(grpc.StatusCode.INVALID_ARGUMENT) == 400
    assert errors.status_for(grpc.StatusCode.UNAUTHENTICATED) == 401
    assert errors.status_for(grpc.StatusCode.PERMISSION_DENIED) == 403
    assert errors.status_for(grpc.StatusCode.NOT_FOUND) == 404
    assert errors.status_for(grpc.StatusCode.ALREADY_EXISTS) == 409
    assert errors.status_for(grpc.StatusCode.ABORTED) == 409
    assert errors.status_for(grpc.StatusCode.FAILED_PRECONDITION) == 503
    assert errors.status_for(grpc.StatusCode.UNAVAILABLE) == 503
    assert errors.status_for(grpc.StatusCode.INTERNAL) == 500
    assert errors.json_bytes({"message": "é"}) == '{"message":"é"}\n'.encode()


def test_a_local_call_carries_the_certificate_and_turns_an_abort_into_the_http_refusal() -> None:
    ctx = LocalContext(b"PEM", "ipv4:127.0.0.1:5555")
    assert ctx.auth_context() == {"x509_pem_cert": [b"PEM"]}
    assert LocalContext(None, "").auth_context() == {}
    assert ctx.peer() == "ipv4:127.0.0.1:5555"

    async def refuses(request: object, context: LocalContext) -> None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "role shoal-worker may not call this")

    with pytest.raises(DockerError) as caught:
        asyncio.run(call(refuses, None, ctx))
    assert (caught.value.status, caught.value.message) == (403, "role shoal-worker may not call this")
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert issubclass(CallFailed, Exception)


# ------------------------------------------------------------------ TLS


def _ca(name: str) -> CertificateAuthority:
    root = new_root_ca(name)
    return CertificateAuthority(root.cert_pem, root.key_pem)


def _server(ca: CertificateAuthority) -> tuple[bytes, bytes, bytes]:
    cert, key = ca.issue("m1", pki.ROLE_MANAGER, "c1", 3600, ip_addresses=["127.0.0.1"])
    return cert + ca.cert_pem, key, ca.cert_pem


def _client_context(trust: bytes, ca: CertificateAuthority | None, folder: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=trust.decode())
    ctx.check_hostname = False
    if ca is not None:
        key = pki.new_private_key_pem()
        cert = ca.sign_csr(pki.new_csr_pem(key), "admin-1", pki.ROLE_ADMIN, "c1", 3600)
        (folder / "c.pem").write_bytes(cert)
        (folder / "k.pem").write_bytes(key)
        ctx.load_cert_chain(folder / "c.pem", folder / "k.pem")
    return ctx


async def _peer_of(listening: tls.FollowingContext, client: ssl.SSLContext) -> bytes | None:
    """The client certificate the server saw (None: none), or raise if the
    handshake failed."""
    seen: list[bytes | None] = []
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(tls.peer_cert_pem(writer.get_extra_info("ssl_object")))
        writer.write(b"ok")
        await writer.drain()
        writer.close()
        done.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=listening.context)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        # With TLS 1.3 a refused client certificate shows after the client's
        # side of the handshake: as an alert or as the server hanging up.
        if await reader.read() != b"ok":
            raise ConnectionError("the server hung up")
        writer.close()
        await asyncio.wait_for(done.wait(), 5)
    finally:
        server.close()
        await server.wait_closed()
    return seen[0]


def test_the_listener_follows_a_new_certificate_and_new_roots_without_a_restart() -> None:
    old, new = _ca("old"), _ca("new")
    material = [_server(old)]
    following = tls.FollowingContext(lambda: material[0])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        seen = asyncio.run(_peer_of(following, _client_context(old.cert_pem, old, folder)))
        assert seen is not None and b"BEGIN CERTIFICATE" in seen
        # No certificate: the handshake completes, the HTTP layer refuses.
        assert asyncio.run(_peer_of(following, _client_context(old.cert_pem, None, folder))) is None
        # A renewal under a new root (as after a CA rotation): the next
        # handshake presents the new certificate and accepts only new clients.
        material[0] = _server(new)
        seen = asyncio.run(_peer_of(following, _client_context(new.cert_pem, new, folder)))
        assert seen is not None
        assert following.rebuilds == 1
        with pytest.raises((ssl.SSLError, ConnectionError)):
            asyncio.run(_peer_of(following, _client_context(new.cert_pem, old, folder)))
        with pytest.raises(ssl.SSLError):
            asyncio.run(_peer_of(following, _client_context(old.cert_pem, new, folder)))
