"""Admin bundles: issued with an expiry, listed, revoked.

Each bundle is a certificate with OU=shoal-admin and CN ``admin-<id>``; the
cluster object keeps a record of every bundle not yet expired
(``Cluster.admin_bundles``), and the Authorizer refuses a revoked one on its
next call. Expired records are dropped whenever a new bundle is issued.
"""

from __future__ import annotations

from datetime import timedelta

from shoal import pki
from shoal.ids import new_id
from shoal.manager.auth import ADMIN_CN_PREFIX, ca_bundle
from shoal.manager.ca.authority import CertificateAuthority
from shoal.manager.store import NotFound, Store, View, now_ns, update_with_retry
from shoal.protos import objects_pb2 as pb
from shoal.rules.errors import InvalidRequest

SECOND = 1_000_000_000
DEFAULT_EXPIRY = timedelta(days=90)  # as a node certificate's default
MIN_EXPIRY = timedelta(minutes=1)
MAX_EXPIRY = timedelta(days=10 * 365)
# Records of live bundles live in the cluster object: keep it small.
MAX_BUNDLES = 1000
ID_LENGTH = 12


def check_expiry(seconds: float) -> None:
    low, high = MIN_EXPIRY.total_seconds(), MAX_EXPIRY.total_seconds()
    if not low <= seconds <= high:
        raise InvalidRequest(f"expiry: must be between 1m and {int(high // 86400)} days, got {seconds:g}s")


async def issue_admin_bundle(
    view: View, store: Store, ca: CertificateAuthority, expiry_seconds: int, issued_to: str
) -> tuple[pki.TLSFiles, pb.AdminBundleRecord]:
    """A new admin bundle, recorded in the cluster object."""
    check_expiry(expiry_seconds)
    cluster = view.cluster()
    if cluster is None:
        raise NotFound("the cluster is not initialised yet")
    bundle_id = new_id()[:ID_LENGTH]
    cert, key = ca.issue(ADMIN_CN_PREFIX + bundle_id, pki.ROLE_ADMIN, cluster.meta.id, expiry_seconds)
    now = now_ns()
    record = pb.AdminBundleRecord(
        id=bundle_id,
        issued_at=now,
        expires_at=int(pki.cert_info(cert).not_after.timestamp() * SECOND),
        issued_to=issued_to[:200],
    )

    def add(c: pb.Cluster) -> None:
        live = [b for b in c.admin_bundles if b.expires_at > now]
        if len(live) >= MAX_BUNDLES:
            raise InvalidRequest(
                f"admin bundles: at most {MAX_BUNDLES} may be live at once; "
                "revoke some with `shoal cluster admin-bundle revoke ID`"
            )
        del c.admin_bundles[:]
        c.admin_bundles.extend(live)
        c.admin_bundles.append(record)

    await update_with_retry(view, store, pb.Cluster, cluster.meta.id, add)
    return pki.TLSFiles(ca_bundle(cluster), cert, key), record


async def revoke_admin_bundle(view: View, store: Store, ref: str) -> pb.AdminBundleRecord:
    """Revoke the bundle whose ID (or unique ID prefix) is ref."""
    cluster = view.cluster()
    if cluster is None:
        raise NotFound("the cluster is not initialised yet")
    ref = ref.removeprefix(ADMIN_CN_PREFIX)
    matches = [b for b in cluster.admin_bundles if ref and b.id.startswith(ref)]
    if not matches:
        raise NotFound(f"admin bundle {ref} not found (see `shoal cluster admin-bundle ls`)")
    if len(matches) > 1:
        raise InvalidRequest(f'admin bundle "{ref}" is ambiguous: it matches {len(matches)} bundles')
    bundle_id = matches[0].id
    revoked = pb.AdminBundleRecord()

    def mark(c: pb.Cluster) -> None:
        for b in c.admin_bundles:
            if b.id == bundle_id:
                b.revoked_at = b.revoked_at or now_ns()
                revoked.CopyFrom(b)

    await update_with_retry(view, store, pb.Cluster, cluster.meta.id, mark)
    return revoked
