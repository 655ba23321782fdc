"""A manager's own certificates, kept current while it runs (leader or not).

- Its server certificate: issued at start, renewed at a random point between
  50 % and 80 % of its lifetime (the cluster's certificate expiry) and at once
  when the cluster's root changes (a CA rotation starts). The listener's
  credentials are dynamic (``ServerTLS``): gRPC asks for them before every
  handshake, so a new certificate or a new set of accepted roots applies to
  the next connection without a restart.
- The roots its listener accepts client certificates from: the cluster's
  roots (``auth.trusted_roots``) and the join roots of the current join
  tokens, so a rotated token stops working at the handshake.
- The admin bundle in STATE_DIR/admin: issued when missing, renewed when two
  thirds of its life have passed or when it is not from the current root,
  and its ca.pem kept equal to the roots clients should trust.

The server certificate is also kept in STATE_DIR/server, so that a manager of
an autolocked cluster can serve (the unlock call only) before it has the CA
key again.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from shoal import defaults, pki
from shoal.manager.auth import ca_bundle, trusted_roots
from shoal.manager.ca.admin_bundles import DEFAULT_EXPIRY, issue_admin_bundle
from shoal.manager.keyring import KeyRing, Locked
from shoal.manager.store import Store, StoreError, View
from shoal.protos import objects_pb2 as pb

log = logging.getLogger(__name__)

SECOND = 1_000_000_000
# After a failed attempt (etcd away, locked), try again this soon.
RETRY = 5.0


class ServerTLS:
    """Listener credentials whose certificate and client roots can change."""

    def __init__(self, chain_pem: bytes, key_pem: bytes, client_roots: bytes) -> None:
        self._current = (chain_pem, key_pem, client_roots)
        self._initial = self._config(*self._current)
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _config(chain: bytes, key: bytes, roots: bytes) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=roots)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._initial, self._fetch, require_client_authentication=True
        )

    def update(self, chain_pem: bytes, key_pem: bytes, client_roots: bytes) -> None:
        wanted = (chain_pem, key_pem, client_roots)
        if wanted == self._current:
            return
        config = self._config(*wanted)
        with self._lock:
            self._current = wanted
            self._pending = config

    def current(self) -> tuple[bytes, bytes, bytes]:
        """What the listener serves now: (chain, key, client roots); other
        listeners of this manager (the Docker API) follow it."""
        with self._lock:
            return self._current

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC's threads before each handshake: a new configuration
        # once after each change, None (keep the current one) otherwise.
        with self._lock:
            config, self._pending = self._pending, None
        return config


def client_roots(cluster: pb.Cluster) -> bytes:
    roots = list(trusted_roots(cluster))
    for token in (cluster.join_tokens.worker, cluster.join_tokens.manager):
        if token:
            roots.append(pki.join_root_pem(token))
    return b"".join(r.rstrip() + b"\n" for r in roots)


def server_chain(cluster: pb.Cluster, leaf_pem: bytes) -> bytes:
    """The leaf, then (while rotating) the new root signed by the old key,
    then the root: clients that trust either root accept it, and a joining
    node finds the root its token names."""
    parts = [leaf_pem]
    if cluster.root_ca.cross_signed_pem:
        parts.append(cluster.root_ca.cross_signed_pem)
    parts.append(cluster.root_ca.cert_pem)
    return b"".join(p.rstrip() + b"\n" for p in parts)


def _expiry_seconds(cluster: pb.Cluster) -> int:
    return max(60, defaults.cert_expiry(cluster.spec) // SECOND)


class ManagerCertificates:
    def __init__(
        self,
        view: View,
        store: Store,
        keyring: KeyRing,
        manager_id: str,
        state_dir: Path,
        dns_names: list[str],
        ip_addresses: list[str],
    ) -> None:
        self.view = view
        self.store = store
        self.keyring = keyring
        self.manager_id = manager_id
        self.server_dir = state_dir / "server"
        self.admin_dir = state_dir / "admin"
        self.dns_names = dns_names
        self.ip_addresses = ip_addresses
        self.tls: ServerTLS | None = None
        self._leaf: pki.TLSFiles | None = None
        self._renew_at = 0.0
        self.renewals = 0

    def _cluster(self) -> pb.Cluster:
        cluster = self.view.cluster()
        assert cluster is not None, "the view holds the cluster before certificates are made"
        return cluster

    # -------------------------------------------------------------- start

    def start(self) -> ServerTLS:
        """The listener's credentials: a fresh certificate when the CA key is
        at hand, else the one kept from the last run (a locked manager)."""
        cluster = self._cluster()
        if not self.keyring.locked:
            self._issue(cluster)
        else:
            kept = pki.read_tls_dir(self.server_dir)
            if kept is None or pki.verified_identity(kept.cert_pem, trusted_roots(cluster)) is None:
                raise Locked()
            self._leaf = kept
            self._renew_at = 0.0  # renew as soon as the CA key is at hand
        assert self._leaf is not None
        self.tls = ServerTLS(
            server_chain(cluster, self._leaf.cert_pem), self._leaf.key_pem, client_roots(cluster)
        )
        return self.tls

    def _issue(self, cluster: pb.Cluster) -> None:
        ca = self.keyring.ca()
        cert, key = ca.issue(
            self.manager_id,
            pki.ROLE_MANAGER,
            cluster.meta.id,
            _expiry_seconds(cluster),
            dns_names=self.dns_names,
            ip_addresses=self.ip_addresses,
        )
        self._leaf = pki.TLSFiles(ca_bundle(cluster), cert, key)
        pki.write_tls_dir(self.server_dir, self._leaf)
        self._renew_at = time.monotonic() + pki.renewal_delay(cert)

    def peer_credentials(self) -> grpc.ChannelCredentials:
        """For calls to other managers, as this manager."""
        assert self._leaf is not None
        return pki.channel_credentials(ca_bundle(self._cluster()), self._leaf.cert_pem, self._leaf.key_pem)

    # -------------------------------------------------------------- upkeep

    async def run(self) -> None:
        sub = self.view.subscribe(["clusters", "keys"])
        try:
            while True:
                try:
                    await self.refresh()
                    wait = max(0.05, self._renew_at - time.monotonic())
                except (StoreError, Locked) as err:
                    log.warning("keeping this manager's certificates current: %s; retrying", err)
                    wait = RETRY
                await sub.get_batch(min(wait, 60.0))
        finally:
            sub.close()

    async def refresh(self) -> None:
        cluster = self._cluster()
        assert self._leaf is not None and self.tls is not None
        from_current_root = pki.issuer_of(self._leaf.cert_pem, (cluster.root_ca.cert_pem,)) is not None
        if (not from_current_root or time.monotonic() >= self._renew_at) and not self.keyring.locked:
            self._issue(cluster)
            self.renewals += 1
            log.info("manager %s renewed its server certificate", self.manager_id)
        self.tls.update(server_chain(cluster, self._leaf.cert_pem), self._leaf.key_pem, client_roots(cluster))
        await self._keep_admin_bundle(cluster)

    async def _keep_admin_bundle(self, cluster: pb.Cluster) -> None:
        current = pki.read_tls_dir(self.admin_dir)
        trust = ca_bundle(cluster)
        if current is not None and self._admin_bundle_fresh(cluster, current):
            if current.ca_pem != trust:
                pki.write_tls_dir(self.admin_dir, pki.TLSFiles(trust, current.cert_pem, current.key_pem))
            return
        if self.keyring.locked:
            return
        files, record = await issue_admin_bundle(
            self.view,
            self.store,
            self.keyring.ca(),
            int(DEFAULT_EXPIRY.total_seconds()),
            f"manager {self.manager_id} state dir",
        )
        pki.write_tls_dir(self.admin_dir, files)
        log.info("wrote admin bundle %s to %s", record.id, self.admin_dir)

    @staticmethod
    def _admin_bundle_fresh(cluster: pb.Cluster, bundle: pki.TLSFiles) -> bool:
        try:
            info = pki.cert_info(bundle.cert_pem)
        except ValueError:
            return False
        if pki.issuer_of(bundle.cert_pem, (cluster.root_ca.cert_pem,)) is None:
            return False
        renew_at = info.issued_at + timedelta(
            seconds=(info.not_after - info.issued_at).total_seconds() * 2 / 3
        )
        return datetime.now(UTC) < renew_at
