"""gRPC metadata keys that managers and clients share."""

from __future__ import annotations

# Trailing metadata on an answer served from a manager's view while that view
# has lost its watch on etcd: how many seconds ago, so the client can warn
# that what it shows may be stale.
STALE_SECONDS = "shoal-stale-seconds"
