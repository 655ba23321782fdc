"""Refusals: what a caller asked is not allowed as asked.

``InvalidRequest`` is the one error the API turns into INVALID_ARGUMENT
(with its message, which names the field and the rule). It is a ValueError
so that code checking values can catch both; but a bare ValueError from a bug
is not a refusal, and reaches the caller as an internal error instead.
"""

from __future__ import annotations


class InvalidRequest(ValueError):
    """A request (or a field of one) that breaks a rule; says which."""
