"""shoal.pki and the cluster CA: tokens, certificates, and real TLS over gRPC.

The end-to-end tests run a grpc.aio server laid out as a manager is: one server,
a mutual-TLS port and a join port, answering "who am I" with the caller's role.
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from shoal import pki
from shoal.manager.ca.authority import CertificateAuthority, check_token, new_root_ca

CLUSTER = "cluster1"
HOUR = 3600
WHOAMI = "/shoal.test.Who/Am"


@dataclass(frozen=True)
class Bundle:
    cert: bytes
    key: bytes


@dataclass(frozen=True)
class Cluster:
    ca: CertificateAuthority
    manager: Bundle
    admin: Bundle
    worker: Bundle
    # A second cluster: nothing from it may be trusted by the first.
    other_ca: CertificateAuthority
    other_admin: Bundle


def _signed_node(ca: CertificateAuthority, node_id: str, role: str) -> Bundle:
    key = pki.new_private_key_pem()
    return Bundle(ca.sign_csr(pki.new_csr_pem(key), node_id, role, CLUSTER, HOUR), key)


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    root = new_root_ca(CLUSTER)
    ca = CertificateAuthority(root.cert_pem, root.key_pem)
    other_root = new_root_ca("cluster2")
    other_ca = CertificateAuthority(other_root.cert_pem, other_root.key_pem)
    return Cluster(
        ca=ca,
        manager=Bundle(*ca.issue("m1", pki.ROLE_MANAGER, CLUSTER, HOUR)),
        admin=Bundle(*ca.issue("admin", pki.ROLE_ADMIN, CLUSTER, HOUR)),
        worker=_signed_node(ca, "w1", pki.ROLE_WORKER),
        other_ca=other_ca,
        other_admin=Bundle(*other_ca.issue("admin", pki.ROLE_ADMIN, "cluster2", HOUR)),
    )


# ---------------------------------------------------------------- join tokens

DIGEST = "a" * 50
SECRET = "b" * 25
SHAPE = "SHOAL-1-<50-char CA digest>-<25-char secret>"


def test_join_token_round_trips(cluster: Cluster) -> None:
    digest = pki.cert_digest(cluster.ca.cert_pem)
    token = pki.new_join_token(digest)
    parsed = pki.parse_join_token(token)
    assert parsed.digest == digest
    assert token == f"SHOAL-1-{digest}-{parsed.secret}"
    assert len(parsed.secret) == 25
    assert set(parsed.secret) <= set(string.digits + string.ascii_lowercase)


def test_join_tokens_have_fresh_secrets() -> None:
    assert len({pki.new_join_token(DIGEST) for _ in range(20)}) == 20


def test_join_token_surrounding_whitespace_is_ignored() -> None:
    assert pki.parse_join_token(f"  SHOAL-1-{DIGEST}-{SECRET}\n") == pki.JoinToken(DIGEST, SECRET)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", f"invalid join token: expected {SHAPE}"),
        ("garbage", f"invalid join token: expected {SHAPE}"),
        (f"SWMTKN-1-{DIGEST}-{SECRET}", f"invalid join token: expected {SHAPE}"),
        (f"SHOAL-1-{DIGEST}-{SECRET}-extra", f"invalid join token: expected {SHAPE}"),
        (
            f"SHOAL-2-{DIGEST}-{SECRET}",
            f"invalid join token: version '2' is not supported (expected {SHAPE})",
        ),
        (
            f"SHOAL-1-{DIGEST[:-1]}-{SECRET}",
            f"invalid join token: the CA digest must be 50 characters of 0-9a-z, got 49 (expected {SHAPE})",
        ),
        (
            f"SHOAL-1-{DIGEST.upper()}-{SECRET}",
            f"invalid join token: the CA digest must be 50 characters of 0-9a-z, got 50 (expected {SHAPE})",
        ),
        (
            f"SHOAL-1-{DIGEST}-{SECRET}c",
            f"invalid join token: the secret must be 25 characters of 0-9a-z, got 26 (expected {SHAPE})",
        ),
        (
            f"SHOAL-1-{DIGEST}-{SECRET[:-1]}!",
            f"invalid join token: the secret must be 25 characters of 0-9a-z, got 25 (expected {SHAPE})",
        ),
    ],
)
def test_malformed_join_token_is_refused_with_its_reason(token: str, message: str) -> None:
    with pytest.raises(pki.InvalidJoinToken) as err:
        pki.parse_join_token(token)
    assert str(err.value) == message
    assert isinstance(err.value, ValueError)


def test_new_join_token_refuses_a_bad_digest() -> None:
    with pytest.raises(ValueError, match="CA digest must be 50 base36 characters"):
        pki.new_join_token("abc")


def test_check_token_compares_whole_tokens_and_never_matches_an_unset_one() -> None:
    token = pki.new_join_token(DIGEST)
    assert check_token(token, token)
    flipped = token[:-1] + ("1" if token[-1] == "0" else "0")
    assert not check_token(flipped, token)
    assert not check_token("", "")
    assert not check_token(token, "")


# ---------------------------------------------------------------- digests and the CA


def test_cert_digest_is_50_base36_characters_and_names_one_certificate(cluster: Cluster) -> None:
    digest = pki.cert_digest(cluster.ca.cert_pem)
    assert len(digest) == 50
    assert set(digest) <= set(string.digits + string.ascii_lowercase)
    assert digest == pki.cert_digest(cluster.ca.cert_pem)
    assert digest != pki.cert_digest(cluster.other_ca.cert_pem)


def test_root_ca_is_a_long_lived_ca_for_its_cluster(cluster: Cluster) -> None:
    cert = x509.load_pem_x509_certificate(cluster.ca.cert_pem)
    assert cert.subject.rfc4514_string() == f"O={CLUSTER},CN=shoal-ca"
    assert cert.issuer == cert.subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert cert.not_valid_after_utc - datetime.now(UTC) > timedelta(days=19 * 365)


def test_ca_signed_csr_carries_the_identity_the_ca_chose(cluster: Cluster) -> None:
    assert pki.identity_from_cert(cluster.worker.cert) == pki.Identity(
        node_id="w1", role=pki.ROLE_WORKER, cluster_id=CLUSTER
    )
    cert = x509.load_pem_x509_certificate(cluster.worker.cert)
    now = datetime.now(UTC)
    # Backdated an hour for clock skew; valid for exactly the requested time.
    assert now - cert.not_valid_before_utc > timedelta(minutes=59)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(hours=2)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # The certificate holds the key the node made, so the node can use it.
    node_key = serialization.load_pem_private_key(cluster.worker.key, None)
    assert cert.public_key() == node_key.public_key()


def test_only_manager_certificates_carry_the_server_name(cluster: Cluster) -> None:
    def dns_names(cert_pem: bytes) -> list[str]:
        cert = x509.load_pem_x509_certificate(cert_pem)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return san.get_values_for_type(x509.DNSName)

    assert pki.SERVER_NAME in dns_names(cluster.manager.cert)
    assert "localhost" in dns_names(cluster.manager.cert)
    assert pki.SERVER_NAME not in dns_names(cluster.worker.cert)
    assert pki.SERVER_NAME not in dns_names(cluster.admin.cert)
    manager_node = _signed_node(cluster.ca, "m2", pki.ROLE_MANAGER)
    assert dns_names(manager_node.cert) == [pki.SERVER_NAME, "m2"]


def test_tampered_csr_is_refused(cluster: Cluster) -> None:
    csr = x509.load_pem_x509_csr(pki.new_csr_pem(pki.new_private_key_pem()))
    der = csr.public_bytes(serialization.Encoding.DER)
    # Rewrite the signed subject: the signature no longer covers what is sent.
    tampered = der.replace(b"shoal-node", b"shoal-nodf")
    assert tampered != der
    pem = x509.load_der_x509_csr(tampered).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ValueError, match=r"^certificate signing request signature is invalid$"):
        cluster.ca.sign_csr(pem, "w2", pki.ROLE_WORKER, CLUSTER, HOUR)


def test_garbage_csr_is_refused(cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="is not a valid PEM CSR"):
        cluster.ca.sign_csr(b"not a csr", "w2", pki.ROLE_WORKER, CLUSTER, HOUR)


def test_unknown_role_and_bad_expiry_are_refused(cluster: Cluster) -> None:
    csr = pki.new_csr_pem(pki.new_private_key_pem())
    with pytest.raises(ValueError, match=r"role: must be one of .* got 'root'"):
        cluster.ca.sign_csr(csr, "w2", "root", CLUSTER, HOUR)
    with pytest.raises(ValueError, match="expiry_seconds: must be > 0, got 0"):
        cluster.ca.sign_csr(csr, "w2", pki.ROLE_WORKER, CLUSTER, 0)


def test_ca_refuses_a_key_that_is_not_its_own(cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="does not belong to the CA certificate"):
        CertificateAuthority(cluster.ca.cert_pem, pki.new_private_key_pem())


def test_a_certificate_without_a_role_has_no_identity(cluster: Cluster) -> None:
    with pytest.raises(ValueError, match=r"no OU \(role\)"):
        pki.identity_from_cert(cluster.ca.cert_pem)


def test_ca_from_another_cluster_does_not_match_the_token(cluster: Cluster) -> None:
    token = pki.new_join_token(pki.cert_digest(cluster.ca.cert_pem))
    pki.verify_ca_against_token(cluster.ca.cert_pem, token)
    with pytest.raises(pki.InvalidJoinToken, match="does not match the join token's digest"):
        pki.verify_ca_against_token(cluster.other_ca.cert_pem, token)


def test_client_certificate_needs_its_key(cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="needs its private key"):
        pki.channel_credentials(cluster.ca.cert_pem, cluster.admin.cert)


# ---------------------------------------------------------------- TLS end to end


@dataclass(frozen=True)
class Ports:
    mtls: int
    join: int


def _raw(data: bytes) -> bytes:
    return data


def _whoami_handler(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    identity = pki.peer_identity(context)
    return b"anonymous" if identity is None else identity.role.encode()


@asynccontextmanager
async def _manager(cluster: Cluster, server: Bundle | None = None) -> AsyncIterator[Ports]:
    cert = server or cluster.manager
    srv = grpc.aio.server(options=pki.SERVER_OPTIONS)
    handler = grpc.unary_unary_rpc_method_handler(
        _whoami_handler, request_deserializer=_raw, response_serializer=_raw
    )
    srv.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("shoal.test.Who", {"Am": handler})])
    ca = cluster.ca.cert_pem
    ports = Ports(
        mtls=srv.add_secure_port(
            "127.0.0.1:0", pki.server_credentials(ca, cert.cert, cert.key, require_client_auth=True)
        ),
        join=srv.add_secure_port(
            "127.0.0.1:0",
            pki.server_credentials(ca, cert.cert, cert.key, require_client_auth=False),
        ),
    )
    await srv.start()
    try:
        yield ports
    finally:
        await srv.stop(None)


async def _whoami(port: int, creds: grpc.ChannelCredentials | None) -> str:
    target = f"127.0.0.1:{port}"
    channel = (
        grpc.aio.insecure_channel(target)
        if creds is None
        else grpc.aio.secure_channel(target, creds, options=pki.CHANNEL_OPTIONS)
    )
    async with channel:
        call = channel.unary_unary(WHOAMI, request_serializer=_raw, response_deserializer=_raw)
        reply: bytes = await call(b"", timeout=5)
        return reply.decode()


def _creds(ca_pem: bytes, client: Bundle | None = None) -> grpc.ChannelCredentials:
    if client is None:
        return pki.channel_credentials(ca_pem)
    return pki.channel_credentials(ca_pem, client.cert, client.key)


async def _refused(port: int, creds: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _whoami(port, creds)
    code: grpc.StatusCode = err.value.code()
    return code


def test_fetched_remote_ca_is_the_cluster_ca_and_matches_the_token(cluster: Cluster) -> None:
    async def scenario() -> list[bytes]:
        async with _manager(cluster) as ports:
            return [
                await asyncio.to_thread(pki.fetch_remote_ca, "127.0.0.1", port)
                for port in (ports.join, ports.mtls)
            ]

    token = pki.new_join_token(pki.cert_digest(cluster.ca.cert_pem))
    for fetched in asyncio.run(scenario()):
        assert fetched == cluster.ca.cert_pem
        pki.verify_ca_against_token(fetched, token)


def test_callers_with_certificates_are_identified_by_role_on_the_mtls_port(
    cluster: Cluster,
) -> None:
    async def scenario(port: str) -> list[str]:
        async with _manager(cluster) as ports:
            p = getattr(ports, port)
            ca = cluster.ca.cert_pem
            return [
                await _whoami(p, _creds(ca, cluster.admin)),
                await _whoami(p, _creds(ca, cluster.worker)),
            ]

    assert asyncio.run(scenario("mtls")) == [pki.ROLE_ADMIN, pki.ROLE_WORKER]
    # grpcio does not even request a client certificate where it is not required.
    assert asyncio.run(scenario("join")) == ["anonymous", "anonymous"]


def test_caller_without_a_certificate_is_anonymous_on_the_join_port_only(
    cluster: Cluster,
) -> None:
    async def scenario() -> tuple[str, grpc.StatusCode]:
        async with _manager(cluster) as ports:
            creds = _creds(cluster.ca.cert_pem)
            return await _whoami(ports.join, creds), await _refused(ports.mtls, creds)

    assert asyncio.run(scenario()) == ("anonymous", grpc.StatusCode.UNAVAILABLE)


def test_plaintext_client_is_refused(cluster: Cluster) -> None:
    async def scenario() -> list[grpc.StatusCode]:
        async with _manager(cluster) as ports:
            return [await _refused(ports.join, None), await _refused(ports.mtls, None)]

    assert asyncio.run(scenario()) == [grpc.StatusCode.UNAVAILABLE] * 2


def test_client_trusting_another_ca_refuses_the_manager(cluster: Cluster) -> None:
    async def scenario() -> list[grpc.StatusCode]:
        async with _manager(cluster) as ports:
            other = cluster.other_ca.cert_pem
            return [
                await _refused(ports.join, _creds(other)),
                await _refused(ports.mtls, _creds(other, cluster.other_admin)),
            ]

    assert asyncio.run(scenario()) == [grpc.StatusCode.UNAVAILABLE] * 2


def test_certificate_from_another_cluster_is_refused_on_the_mtls_port(cluster: Cluster) -> None:
    async def scenario() -> grpc.StatusCode:
        async with _manager(cluster) as ports:
            return await _refused(ports.mtls, _creds(cluster.ca.cert_pem, cluster.other_admin))

    assert asyncio.run(scenario()) == grpc.StatusCode.UNAVAILABLE


def test_worker_certificate_cannot_serve_as_a_manager(cluster: Cluster) -> None:
    async def scenario() -> grpc.StatusCode:
        async with _manager(cluster, server=cluster.worker) as ports:
            return await _refused(ports.join, _creds(cluster.ca.cert_pem))

    assert asyncio.run(scenario()) == grpc.StatusCode.UNAVAILABLE
