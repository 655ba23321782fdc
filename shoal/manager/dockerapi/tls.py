"""Mutual TLS for the Docker API listener, following the manager's own
certificates.

The listener presents what the gRPC listener presents (the manager's server
certificate and chain, ``ca.manager_certs.ServerTLS``) and accepts only
client certificates signed by one of the cluster's roots
(``auth.trusted_roots``: the current root and, during a CA rotation, the
retiring one). Join roots are not accepted here: nobody joins through the
Docker API.

Python's ssl module fixes a context's certificate when it is made, so a new
context is made whenever the material changes (a renewal, a CA rotation),
and the handshake callback (``sni_callback``, called for every ClientHello,
with or without a server name) hands each new connection the current one.
Connections already open keep theirs, as gRPC's do.

Errors: ``ssl.SSLError`` when the material does not load.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

from shoal.pki.tls import load_cert_chain

log = logging.getLogger(__name__)

# (server chain PEM, server key PEM, client roots PEM)
Material = tuple[bytes, bytes, bytes]


def server_context(chain_pem: bytes, key_pem: bytes, client_roots_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # A certificate, when presented, must chain to a cluster root or the
    # handshake fails. Without one the client gets as far as the HTTP
    # layer, where the ControlAPI's authorization refuses it before anything
    # else is read, with a message saying what is missing (a TLS alert would
    # reach the docker CLI as a bare "EOF").
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(cadata=client_roots_pem.decode())
    ctx.set_alpn_protocols(["http/1.1"])
    load_cert_chain(ctx, chain_pem, key_pem)
    return ctx


class FollowingContext:
    """The SSLContext to serve with; each handshake gets the newest material."""

    def __init__(self, material: Callable[[], Material]) -> None:
        self._material = material
        self._made_from = material()
        self._current = server_context(*self._made_from)
        self.context = self._current
        self.context.sni_callback = self._on_hello
        self.rebuilds = 0

    def current(self) -> ssl.SSLContext:
        wanted = self._material()
        if wanted != self._made_from:
            self._current = server_context(*wanted)
            self._made_from = wanted
            self.rebuilds += 1
            log.info("docker API listener: new certificate or roots in use")
        return self._current

    def _on_hello(self, sslobj: Any, server_name: str | None, ctx: ssl.SSLContext) -> None:
        try:
            fresh = self.current()
        except (ssl.SSLError, OSError, ValueError) as err:
            # Keep serving with what loaded last; the next handshake retries.
            log.warning("docker API listener: the new certificate does not load: %s", err)
            return
        if fresh is not ctx:
            sslobj.context = fresh


def peer_cert_pem(ssl_object: Any) -> bytes | None:
    """The client certificate the handshake verified (leaf), as PEM."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return ssl.DER_cert_to_PEM_cert(der).encode() if der else None
