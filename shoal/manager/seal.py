"""Sealing small secrets (registry credentials) before they reach etcd.

AES-256-GCM with the cluster's seal key. The key lives in the cluster object
(like the CA key); what this buys is that credentials never appear in plain
text in etcd, its snapshots or its watch streams, and that a reader needs the
cluster key as well as the sealed value.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE = 12


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, plain: bytes, context: bytes) -> bytes:
    """Encrypt plain, bound to context (e.g. the service ID)."""
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plain, context)


def unseal(key: bytes, sealed: bytes, context: bytes) -> bytes:
    return AESGCM(key).decrypt(sealed[:NONCE], sealed[NONCE:], context)
