"""Identifiers: 25 random base-36 characters, as SwarmKit's, for every object."""

from __future__ import annotations

import secrets

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 25


def new_id() -> str:
    # 16 random bytes (128 bits) fit in 25 base-36 digits; one call to the OS
    # random source instead of one per character (IDs are made by the 100,000).
    value = int.from_bytes(secrets.token_bytes(16), "big")
    digits = []
    for _ in range(ID_LENGTH):
        value, rem = divmod(value, 36)
        digits.append(_ALPHABET[rem])
    return "".join(digits)


def is_id(text: str) -> bool:
    return len(text) == ID_LENGTH and all(c in _ALPHABET for c in text)
