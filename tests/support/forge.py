"""Certificates an attacker would make, for tests that prove they are refused.

``forged_chain`` signs, with a key the attacker holds, an intermediate whose
subject is a copy of the cluster CA's (the name a careless check compares),
and with that intermediate a leaf claiming any role and node ID. The key the
attacker holds is either their own (the chain then reaches no root the
manager trusts) or one a manager does accept for handshakes: a join root's,
which anyone holding a worker token can derive.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shoal import pki
from shoal.pki import join as join_roots


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def join_signer(token: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Name]:
    """The key and name of a token's join root, as a token holder derives them."""
    return join_roots._join_key(token), join_roots._join_name(token)


def own_signer() -> tuple[ec.EllipticCurvePrivateKey, x509.Name]:
    return ec.generate_private_key(ec.SECP256R1()), x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "attacker-root")]
    )


def forged_chain(
    signer: tuple[ec.EllipticCurvePrivateKey, x509.Name],
    cluster_ca_pem: bytes,
    role: str,
    node_id: str,
    *,
    via_lookalike: bool = True,
) -> tuple[bytes, bytes]:
    """(certificate chain PEM, key PEM) of a leaf claiming role and node_id in
    the cluster of cluster_ca_pem. With via_lookalike, the leaf is signed by
    an intermediate named exactly like the cluster CA, itself signed by the
    signer; else by the signer directly."""
    signer_key, signer_name = signer
    ca = x509.load_pem_x509_certificate(cluster_ca_pem)
    cluster_name = ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    now = datetime.now(UTC)
    chain: list[bytes] = []
    issuer_key, issuer_name = signer_key, signer_name
    if via_lookalike:
        inter_key = ec.generate_private_key(ec.SECP256R1())
        inter = (
            x509.CertificateBuilder()
            .subject_name(ca.subject)
            .issuer_name(signer_name)
            .public_key(inter_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(signer_key, hashes.SHA256())
        )
        chain.append(_pem(inter))
        issuer_key, issuer_name = inter_key, ca.subject
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, node_id),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(cluster_name)),
        ]
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(role), x509.DNSName(node_id)]), critical=False
        )
        .sign(issuer_key, hashes.SHA256())
    )
    return _pem(leaf) + b"".join(chain), _key_pem(leaf_key)


def write_bundle(directory: Path, ca_pem: bytes, chain_pem: bytes, key_pem: bytes) -> Path:
    pki.write_tls_dir(directory, pki.TLSFiles(ca_pem, chain_pem, key_pem))
    return directory
