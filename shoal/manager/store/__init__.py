"""etcd-backed object store: typed objects, revisions, watch, batches, view."""

from shoal.manager.store.errors import (
    AlreadyExists,
    Compacted,
    LeadershipLost,
    NotFound,
    StoreError,
    StoreUnavailable,
    VersionConflict,
)
from shoal.manager.store.etcd import Etcd, EtcdTLS
from shoal.manager.store.events import Event, Subscription
from shoal.manager.store.retry import on_conflict, until_available, update_with_retry
from shoal.manager.store.store import Batch, BatchResult, Store, clone, kind_of, now_ns
from shoal.manager.store.view import View

__all__ = [
    "AlreadyExists",
    "Batch",
    "BatchResult",
    "Compacted",
    "Etcd",
    "EtcdTLS",
    "Event",
    "LeadershipLost",
    "NotFound",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Subscription",
    "VersionConflict",
    "View",
    "clone",
    "kind_of",
    "now_ns",
    "on_conflict",
    "until_available",
    "update_with_retry",
]
