"""Errors of the store, the one exception tree the rest of the manager sees.

    StoreError
    ├── NotFound          the object does not exist
    ├── AlreadyExists     create of an ID (or unique name) that exists
    ├── VersionConflict   the object changed since it was read: re-read, retry
    ├── LeadershipLost    a fenced write by a manager that is no longer leader
    ├── Compacted         a watch asked for history etcd no longer has: relist
    └── StoreUnavailable  etcd did not answer; temporary, retried with backoff

The ControlAPI maps these to gRPC status codes; nothing else does.
"""

from __future__ import annotations


class StoreError(Exception):
    pass


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class VersionConflict(StoreError):
    pass


class LeadershipLost(StoreError):
    pass


class Compacted(StoreError):
    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"etcd history is compacted up to revision {compact_revision}")
        self.compact_revision = compact_revision


class StoreUnavailable(StoreError):
    pass
