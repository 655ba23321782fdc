"""shoal.pki and the cluster CA: tokens, certificates, and real TLS over gRPC.

The end-to-end tests run a grpc.aio server laid out as a manager is: one
mutual-TLS port accepting the cluster CA and a token's join root, with dynamic
credentials, answering "who am I" with the identity the CA's signature proves.
"""

from __future__ import annotations

import asyncio
import re
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
from shoal.manager.ca.manager_certs import ServerTLS
from tests.support import forge

CLUSTER = "cluster1"
HOUR = 3600


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
    assert re.fullmatch(rf"O={CLUSTER},CN=shoal-ca-[0-9a-f]{{8}}", cert.subject.rfc4514_string())
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


# ---------------------------------------------------------------- identity by signature


def test_identity_is_read_only_from_certificates_the_ca_signed(cluster: Cluster) -> None:
    roots = [cluster.ca.cert_pem]
    assert pki.verified_identity(cluster.admin.cert, roots) == pki.Identity("admin", pki.ROLE_ADMIN, CLUSTER)
    assert pki.verified_identity(cluster.worker.cert, roots) == pki.Identity("w1", pki.ROLE_WORKER, CLUSTER)
    assert pki.verified_identity(cluster.other_admin.cert, roots) is None
    assert pki.verified_identity(cluster.admin.cert, [cluster.other_ca.cert_pem]) is None


@pytest.mark.parametrize("role", [pki.ROLE_ADMIN, pki.ROLE_MANAGER, pki.ROLE_WORKER])
@pytest.mark.parametrize("via_lookalike", [True, False])
def test_forged_certificates_carry_no_identity(cluster: Cluster, role: str, via_lookalike: bool) -> None:
    """An intermediate named exactly like the cluster CA (or a leaf naming it
    as issuer) is refused: the check is the CA's signature, not its name."""
    token = pki.new_join_token(pki.cert_digest(cluster.ca.cert_pem))
    for signer in (forge.own_signer(), forge.join_signer(token)):
        chain, _ = forge.forged_chain(signer, cluster.ca.cert_pem, role, "w1", via_lookalike=via_lookalike)
        leaf = pki.split_pems(chain)[0]
        assert pki.identity_from_cert(leaf).role == role  # the subject claims it...
        assert pki.verified_identity(leaf, [cluster.ca.cert_pem]) is None  # ...and is not believed


def test_an_expired_certificate_carries_no_identity(cluster: Cluster) -> None:
    later = datetime.now(UTC) + timedelta(hours=2)
    assert pki.verified_identity(cluster.admin.cert, [cluster.ca.cert_pem], now=later) is None


def test_renewal_falls_between_half_and_four_fifths_of_the_lifetime(cluster: Cluster) -> None:
    # Issued now (not_before is backdated an hour) for one hour.
    delays = [pki.renewal_delay(cluster.admin.cert) for _ in range(200)]
    assert all(0.5 * HOUR - 5 <= d <= 0.8 * HOUR for d in delays)
    assert max(delays) - min(delays) > 0.1 * HOUR  # spread, so nodes do not renew together


def test_a_cross_signed_root_chains_the_new_root_to_the_old_one(cluster: Cluster) -> None:
    new_root = new_root_ca(CLUSTER)
    cross = cluster.ca.cross_sign(new_root.cert_pem)
    cross_cert = x509.load_pem_x509_certificate(cross)
    new_cert = x509.load_pem_x509_certificate(new_root.cert_pem)
    assert cross_cert.subject == new_cert.subject
    assert cross_cert.public_key() == new_cert.public_key()
    assert pki.issuer_of(cross, (cluster.ca.cert_pem,)) == cluster.ca.cert_pem
    new_ca = CertificateAuthority(new_root.cert_pem, new_root.key_pem)
    leaf = new_ca.issue("m9", pki.ROLE_MANAGER, CLUSTER, HOUR)[0]
    assert pki.issuer_of(leaf, (cross,)) == cross  # so old-root clients can follow the chain


# ---------------------------------------------------------------- join certificates


def test_join_certificates_chain_to_their_tokens_root_only(cluster: Cluster) -> None:
    digest = pki.cert_digest(cluster.ca.cert_pem)
    token, other = pki.new_join_token(digest), pki.new_join_token(digest)
    cert, _ = pki.join_client_bundle(token)
    assert pki.issuer_of(cert, (pki.join_root_pem(token),)) is not None
    assert pki.issuer_of(cert, (pki.join_root_pem(other),)) is None
    assert pki.join_root_pem(token) == pki.join_root_pem(f" {token}\n")  # one root per token
    # A join certificate names nobody.
    assert pki.verified_identity(cert, [pki.join_root_pem(token), cluster.ca.cert_pem]) is None


def test_the_chain_a_manager_presents_yields_the_root_its_token_names(cluster: Cluster) -> None:
    digest = pki.cert_digest(cluster.ca.cert_pem)
    chain = [cluster.manager.cert, cluster.ca.cert_pem]
    assert pki.ca_matching_token(chain, pki.new_join_token(digest)) == cluster.ca.cert_pem
    with pytest.raises(pki.InvalidJoinToken, match="does not match the join token's digest"):
        pki.ca_matching_token(chain, pki.new_join_token(pki.cert_digest(cluster.other_ca.cert_pem)))


# ---------------------------------------------------------------- TLS end to end

WHO = "shoal.test.Who"


def _raw(data: bytes) -> bytes:
    return data


def _whoami_handler(cluster: Cluster) -> Any:
    def handler(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        pem = pki.peer_cert_pem(context)
        identity = pki.verified_identity(pem, [cluster.ca.cert_pem]) if pem else None
        return b"anonymous" if identity is None else identity.role.encode()

    return handler


@dataclass
class Listener:
    port: int
    tls: ServerTLS


@asynccontextmanager
async def _manager(cluster: Cluster, token: str, server: Bundle | None = None) -> AsyncIterator[Listener]:
    """A server laid out as a manager's: one port, mutual TLS, client roots
    = the cluster CA and the token's join root, dynamic credentials."""
    cert = server or cluster.manager
    srv = grpc.aio.server(options=pki.server_options(pki.ServerLimits()))
    handler = grpc.unary_unary_rpc_method_handler(
        _whoami_handler(cluster), request_deserializer=_raw, response_serializer=_raw
    )
    srv.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(WHO, {"Am": handler})])
    roots = cluster.ca.cert_pem + pki.join_root_pem(token)
    tls = ServerTLS(cert.cert + cluster.ca.cert_pem, cert.key, roots)
    port = srv.add_secure_port("127.0.0.1:0", tls.credentials())
    await srv.start()
    try:
        yield Listener(port, tls)
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
        call = channel.unary_unary(f"/{WHO}/Am", request_serializer=_raw, response_deserializer=_raw)
        reply: bytes = await call(b"", timeout=5)
        return reply.decode()


def _creds(ca_pem: bytes, cert: bytes | None = None, key: bytes | None = None) -> grpc.ChannelCredentials:
    return pki.channel_credentials(ca_pem, cert, key)


async def _refused(port: int, creds: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _whoami(port, creds)
    code: grpc.StatusCode = err.value.code()
    return code


@pytest.fixture(scope="module")
def token(cluster: Cluster) -> str:
    return pki.new_join_token(pki.cert_digest(cluster.ca.cert_pem))


def test_callers_are_identified_by_role_and_joiners_are_anonymous(cluster: Cluster, token: str) -> None:
    async def scenario() -> list[str]:
        async with _manager(cluster, token) as m:
            ca = cluster.ca.cert_pem
            return [
                await _whoami(m.port, _creds(ca, cluster.admin.cert, cluster.admin.key)),
                await _whoami(m.port, _creds(ca, cluster.worker.cert, cluster.worker.key)),
                await _whoami(m.port, _creds(ca, *pki.join_client_bundle(token))),
            ]

    assert asyncio.run(scenario()) == [pki.ROLE_ADMIN, pki.ROLE_WORKER, "anonymous"]


def test_certificates_a_token_holder_can_sign_name_nobody(cluster: Cluster, token: str) -> None:
    """A leaf the join key signed passes the handshake but is anonymous, even
    when it claims the admin role; a look-alike CA below the join root fails
    the handshake itself (the join root allows no intermediates)."""

    async def scenario() -> tuple[str, grpc.StatusCode]:
        async with _manager(cluster, token) as m:
            ca = cluster.ca.cert_pem
            signer = forge.join_signer(token)
            leaf, key = forge.forged_chain(signer, ca, pki.ROLE_ADMIN, "x", via_lookalike=False)
            lookalike, key2 = forge.forged_chain(signer, ca, pki.ROLE_ADMIN, "x")
            return await _whoami(m.port, _creds(ca, leaf, key)), await _refused(
                m.port, _creds(ca, lookalike, key2)
            )

    assert asyncio.run(scenario()) == ("anonymous", grpc.StatusCode.UNAVAILABLE)


def test_without_a_current_token_or_certificate_there_is_no_handshake(cluster: Cluster, token: str) -> None:
    other_token = pki.new_join_token(pki.cert_digest(cluster.ca.cert_pem))

    async def scenario() -> list[grpc.StatusCode]:
        async with _manager(cluster, token) as m:
            ca = cluster.ca.cert_pem
            forged, key = forge.forged_chain(forge.own_signer(), ca, pki.ROLE_ADMIN, "x")
            return [
                await _refused(m.port, None),  # plaintext
                await _refused(m.port, _creds(ca)),  # no client certificate
                await _refused(m.port, _creds(ca, *pki.join_client_bundle(other_token))),
                await _refused(m.port, _creds(ca, cluster.other_admin.cert, cluster.other_admin.key)),
                await _refused(m.port, _creds(ca, forged, key)),
            ]

    assert asyncio.run(scenario()) == [grpc.StatusCode.UNAVAILABLE] * 5


def test_a_rotated_token_stops_working_at_the_next_handshake(cluster: Cluster, token: str) -> None:
    new_token = pki.new_join_token(pki.cert_digest(cluster.ca.cert_pem))

    async def scenario() -> tuple[str, grpc.StatusCode, str]:
        async with _manager(cluster, token) as m:
            ca = cluster.ca.cert_pem
            before = await _whoami(m.port, _creds(ca, *pki.join_client_bundle(token)))
            m.tls.update(cluster.manager.cert + ca, cluster.manager.key, ca + pki.join_root_pem(new_token))
            return (
                before,
                await _refused(m.port, _creds(ca, *pki.join_client_bundle(token))),
                await _whoami(m.port, _creds(ca, *pki.join_client_bundle(new_token))),
            )

    assert asyncio.run(scenario()) == ("anonymous", grpc.StatusCode.UNAVAILABLE, "anonymous")


def test_a_joiner_reads_the_chain_and_learns_whether_its_token_is_accepted(
    cluster: Cluster, token: str
) -> None:
    other_token = pki.new_join_token(pki.cert_digest(cluster.ca.cert_pem))

    async def scenario() -> tuple[list[bytes], bool, bool]:
        async with _manager(cluster, token) as m:
            chain = await asyncio.to_thread(pki.fetch_remote_chain, "127.0.0.1", m.port)
            ok = await asyncio.to_thread(
                pki.join_accepted, "127.0.0.1", m.port, cluster.ca.cert_pem, *pki.join_client_bundle(token)
            )
            refused = await asyncio.to_thread(
                pki.join_accepted,
                "127.0.0.1",
                m.port,
                cluster.ca.cert_pem,
                *pki.join_client_bundle(other_token),
            )
            return chain, ok, refused

    chain, ok, refused = asyncio.run(scenario())
    assert pki.ca_matching_token(chain, token) == cluster.ca.cert_pem
    assert (ok, refused) == (True, False)


def test_client_trusting_another_ca_refuses_the_manager(cluster: Cluster, token: str) -> None:
    async def scenario() -> grpc.StatusCode:
        async with _manager(cluster, token) as m:
            other = cluster.other_ca.cert_pem
            return await _refused(m.port, _creds(other, cluster.other_admin.cert, cluster.other_admin.key))

    assert asyncio.run(scenario()) == grpc.StatusCode.UNAVAILABLE


def test_worker_certificate_cannot_serve_as_a_manager(cluster: Cluster, token: str) -> None:
    async def scenario() -> grpc.StatusCode:
        async with _manager(cluster, token, server=cluster.worker) as m:
            return await _refused(m.port, _creds(cluster.ca.cert_pem, cluster.admin.cert, cluster.admin.key))

    assert asyncio.run(scenario()) == grpc.StatusCode.UNAVAILABLE
