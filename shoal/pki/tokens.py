"""Join tokens: ``SHOAL-1-<CA digest>-<secret>``.

The digest (``certs.cert_digest`` of the cluster's root CA) lets a joining
node check the CA a manager shows before trusting it; the secret admits it
(it also derives the join certificate's key, see ``shoal.pki.join``).

Errors: ``InvalidJoinToken`` (a ``ValueError``) for a malformed token or a CA
that does not match it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from shoal.pki.certs import _BASE36, DIGEST_LEN, _base36, cert_digest

SECRET_LEN = 25  # 36**25 > 2**128
_TOKEN_PREFIX = "SHOAL"
_TOKEN_VERSION = "1"
_TOKEN_SHAPE = f"SHOAL-1-<{DIGEST_LEN}-char CA digest>-<{SECRET_LEN}-char secret>"


class InvalidJoinToken(ValueError):
    """The join token is malformed, or the manager's CA does not match it."""


def _is_base36(text: str, width: int) -> bool:
    return len(text) == width and all(c in _BASE36 for c in text)


@dataclass(frozen=True)
class JoinToken:
    digest: str  # cert_digest() of the cluster's root CA
    secret: str


def new_join_token(digest: str) -> str:
    if not _is_base36(digest, DIGEST_LEN):
        raise ValueError(f"CA digest must be {DIGEST_LEN} base36 characters, got {digest!r}")
    secret = _base36(int.from_bytes(secrets.token_bytes(16), "big"), SECRET_LEN)
    return f"{_TOKEN_PREFIX}-{_TOKEN_VERSION}-{digest}-{secret}"


def parse_join_token(token: str) -> JoinToken:
    parts = token.strip().split("-")
    if len(parts) != 4 or parts[0] != _TOKEN_PREFIX:
        raise InvalidJoinToken(f"invalid join token: expected {_TOKEN_SHAPE}")
    _, version, digest, secret = parts
    if version != _TOKEN_VERSION:
        raise InvalidJoinToken(
            f"invalid join token: version {version!r} is not supported (expected {_TOKEN_SHAPE})"
        )
    if not _is_base36(digest, DIGEST_LEN):
        raise InvalidJoinToken(
            f"invalid join token: the CA digest must be {DIGEST_LEN} characters of 0-9a-z, "
            f"got {len(digest)} (expected {_TOKEN_SHAPE})"
        )
    if not _is_base36(secret, SECRET_LEN):
        raise InvalidJoinToken(
            f"invalid join token: the secret must be {SECRET_LEN} characters of 0-9a-z, "
            f"got {len(secret)} (expected {_TOKEN_SHAPE})"
        )
    return JoinToken(digest=digest, secret=secret)


def verify_ca_against_token(ca_pem: bytes, token: JoinToken | str) -> None:
    parsed = parse_join_token(token) if isinstance(token, str) else token
    if cert_digest(ca_pem) != parsed.digest:
        raise InvalidJoinToken("the manager's CA certificate does not match the join token's digest")


def ca_matching_token(chain: Iterable[bytes], token: JoinToken | str) -> bytes:
    """The certificate of a manager's presented chain that the token names.

    A manager presents its leaf, then (during a CA rotation) the new CA signed
    by the old one, then its root; the token's digest picks the root out.
    """
    parsed = parse_join_token(token) if isinstance(token, str) else token
    for pem in chain:
        if cert_digest(pem) == parsed.digest:
            return pem
    raise InvalidJoinToken(
        "the manager's CA certificate does not match the join token's digest "
        "(a token of another cluster, a mistyped token, or one from before a CA rotation)"
    )
