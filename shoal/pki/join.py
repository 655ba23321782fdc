"""Join certificates: how a node without a certificate gets through mutual TLS.

Each join token determines a *join root*: an ECDSA key derived from the whole
token (so only its holders can compute it) and a self-signed certificate for
it. Managers add the join roots of the cluster's current tokens to the roots
they accept client certificates from; a joining node signs itself a
short-lived certificate with the derived key (``join_client_bundle``).

So a caller without a current token cannot even finish a TLS handshake, and a
rotated token stops working at the handshake. A join certificate carries no
identity (it is not signed by the cluster CA): it reaches only the NodeCA
call, which checks the token once more and signs the node's CSR.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from hashlib import sha256

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shoal.pki.certs import load_private_key, new_private_key_pem, self_signed

# The order of the P-256 group: a private scalar must lie in [1, n - 1].
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_DOMAIN = b"shoal join root v1\0"


@functools.lru_cache(maxsize=16)
def _join_key(token: str) -> ec.EllipticCurvePrivateKey:
    seed = int.from_bytes(sha256(_DOMAIN + token.strip().encode()).digest(), "big")
    return ec.derive_private_key(seed % (_P256_ORDER - 1) + 1, ec.SECP256R1())


def _join_name(token: str) -> x509.Name:
    # A hash of the token tells the roots of two tokens apart without saying
    # anything about the token.
    tag = sha256(b"shoal join name v1\0" + token.strip().encode()).hexdigest()[:16]
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"shoal-join-{tag}")])


def join_root_pem(token: str) -> bytes:
    """The self-signed root that a token's join certificates chain to (the
    same bytes for the same token, within one process)."""
    return _join_root_pem(token.strip())


@functools.lru_cache(maxsize=16)
def _join_root_pem(token: str) -> bytes:
    key = _join_key(token)
    name = _join_name(token)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    cert = (
        self_signed(key, name, 1, start, start + timedelta(days=365 * 100))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def join_client_bundle(token: str) -> tuple[bytes, bytes]:
    """A fresh (cert_pem, key_pem) that passes a manager's handshake while
    the token is current. Valid for an hour: it is used for one call."""
    key_pem = new_private_key_pem()
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "joining-node")]))
        .issuer_name(_join_name(token))
        .public_key(load_private_key(key_pem).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(_join_key(token), hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
