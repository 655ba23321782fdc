"""Upper (and lower) bounds on everything a caller can send, in one place.

The ControlAPI (with ``shoal.rules.validate``) and the Dispatcher check every
request against these before anything is stored; each refusal names the
field and the rule. The reason for each bound is beside it. Most are far
above what anyone declares on purpose: they exist so that no request, typed
by mistake or sent by an attacker, can make a manager build millions of
objects, fill etcd, or hand agents values they cannot use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shoal.defaults import CLUSTER
from shoal.durations import format_duration
from shoal.rules.errors import InvalidRequest

KIB = 1024
MIB = 1024 * KIB
MS = 1_000_000
SECOND = 1_000_000_000
DAY = 86_400 * SECOND

# ---------------------------------------------------------------- services

# Replicas (and a job's max-concurrent) per service, unless the cluster says
# otherwise (`shoal cluster update --max-replicas N`): a thousand nodes with a
# hundred tasks each. Never above the ceiling, where one spec alone would
# hold gigabytes of task objects in etcd.
DEFAULT_MAX_REPLICAS = 100_000
MAX_REPLICAS_CEILING = 10_000_000

# A whole service spec, serialized. A service keeps its previous spec too and
# every task a copy of the task spec, so this keeps each etcd value well
# under etcd's 1.5 MiB request limit.
MAX_SPEC_BYTES = 256 * KIB
# Any ControlAPI request (the server refuses larger messages before parsing).
MAX_REQUEST_BYTES = 4 * MIB

MAX_IMAGE = 512  # Docker's reference grammar allows 255 per name; with tag and digest
MAX_PATH = 4096  # PATH_MAX
MAX_ITEMS = 4096  # command and args entries, env entries
MAX_ITEM_BYTES = 128 * KIB  # one argument or env entry (Linux's MAX_ARG_STRLEN)
MAX_ENV_KEY = 1024
MAX_LABELS = 256
MAX_LABEL_KEY = 256
MAX_LABEL_VALUE = 4 * KIB
MAX_CONSTRAINTS = 64
MAX_CONSTRAINT = 512
MAX_PREFERENCES = 8
MAX_PORTS = 1024
MAX_MOUNTS = 128
MAX_SIGNAL = 32
MAX_REGISTRY_AUTH = 16 * KIB
MAX_REF = 256  # an object reference: an ID, a prefix or a name

# Durations: nothing a person means is longer than a year, and int64
# nanoseconds overflow after 292 years.
MAX_DURATION = 365 * DAY
# Docker's minimum for health-check intervals and timeouts.
MIN_HEALTH_INTERVAL = 1 * MS
MAX_HEALTH_RETRIES = 10_000
MAX_RESTART_ATTEMPTS = 1_000_000

# Memory limits below this leave no room for a process at all (the kernel
# and runtimes fail in confusing ways); Docker refuses below 6 MiB.
MIN_MEMORY_LIMIT = 4 * MIB
MAX_MEMORY = 1 << 60  # an exbibyte
MAX_NANO_CPUS = 1_000_000 * SECOND  # a million CPUs

# ---------------------------------------------------------------- secrets and configs

# One secret's or config's value (Docker's bound for secrets). etcd holds it
# (sealed, for a secret) and every task that uses it carries it to its node.
MAX_FILE_DATA = 500 * KIB
# Each kind in the whole cluster: etcd's default quota is 2 GiB, and every
# manager keeps them all in memory.
MAX_FILE_TOTAL = 256 * MIB
# Secrets, and configs, one service may use, and their total size: what one
# task carries to its node in its assignment, and its node keeps on tmpfs.
MAX_FILE_REFS = 64
MAX_TASK_FILE_BYTES = 4 * MIB
MAX_FILE_NAME = 64  # Docker's bound for secret and config names
MAX_USER = 256  # USER[:GROUP] of a container

# ---------------------------------------------------------------- cluster

MIN_HEARTBEAT = CLUSTER.min_heartbeat_period
MAX_HEARTBEAT = 1 * 3600 * SECOND
MAX_TASK_HISTORY = 1000
MIN_CERT_EXPIRY = 60 * SECOND  # short enough for tests to watch renewals
MAX_CERT_EXPIRY = 10 * 365 * DAY

# ---------------------------------------------------------------- agents

MAX_STATUS_TEXT = 1 * KIB  # a task status's message and error, cut beyond
MAX_STATUS_UPDATES = 10_000  # in one message
MAX_HOSTNAME = 253  # a DNS name
MAX_NODE_LABELS = 64
MAX_PLATFORM = 64
MAX_RUNTIME_NAME = 32
MAX_LOG_LINE = 64 * KIB  # cut beyond
MAX_LOG_LINES = 10_000  # in one chunk
# A node's mesh report: one entry per published port of the cluster (the
# ControlAPI keeps each port one service's, so MAX_PORTS per protocol pair
# is plenty: 65,535 ports exist per protocol).
MAX_MESH_PORTS = 2 * 65_535
MAX_NETWORKS = 64  # per service (Compose files name a handful)


def check_text(field: str, value: str, max_bytes: int, *, allow_empty: bool = True) -> None:
    """No NUL (the kernel and etcd tooling stop at it), at most max_bytes."""
    if not value and not allow_empty:
        raise InvalidRequest(f"{field}: must not be empty")
    if "\0" in value:
        raise InvalidRequest(f"{field}: must not contain NUL characters")
    size = len(value.encode())
    if size > max_bytes:
        raise InvalidRequest(f"{field}: at most {max_bytes} bytes, got {size}")


def check_texts(field: str, values: Iterable[str], max_items: int, max_bytes: int) -> None:
    items = list(values)
    if len(items) > max_items:
        raise InvalidRequest(f"{field}: at most {max_items} entries, got {len(items)}")
    for i, value in enumerate(items):
        check_text(f"{field}[{i}]", value, max_bytes)


def check_labels(field: str, labels: Mapping[str, str], max_items: int = MAX_LABELS) -> None:
    if len(labels) > max_items:
        raise InvalidRequest(f"{field}: at most {max_items} labels, got {len(labels)}")
    for key, value in labels.items():
        check_text(f"{field} key", key, MAX_LABEL_KEY, allow_empty=False)
        if any(c.isspace() or c == "=" for c in key):
            raise InvalidRequest(f'{field} key "{key}": must not contain spaces or "="')
        check_text(f'{field} "{key}"', value, MAX_LABEL_VALUE)


def check_range(field: str, value: float, low: float, high: float, unit: str = "") -> None:
    if value != value:  # NaN
        raise InvalidRequest(f"{field}: must be a number, got NaN")
    if not low <= value <= high:
        raise InvalidRequest(
            f"{field}: must be between {low:g}{unit} and {high:g}{unit}, got {value:g}{unit}"
        )


def _spell(ns: int) -> str:
    if ns < 0:
        return f"{ns}ns"
    if ns >= 2 * DAY and ns % DAY == 0:
        return f"{ns // DAY} days"
    return format_duration(ns)


def check_span(field: str, ns: int, low: int, high: int) -> None:
    """A duration (ns) that must lie between low and high (ns)."""
    if not low <= ns <= high:
        raise InvalidRequest(f"{field}: must be between {_spell(low)} and {_spell(high)}, got {_spell(ns)}")


def check_duration(field: str, ns: int, minimum: int = 0) -> None:
    """0 (unset or none) or between minimum and MAX_DURATION."""
    if ns < 0:
        raise InvalidRequest(f"{field}: must be >= 0, got {ns}ns")
    if ns and ns < minimum:
        raise InvalidRequest(f"{field}: must be 0 or at least {minimum // MS}ms, got {ns}ns")
    if ns > MAX_DURATION:
        raise InvalidRequest(f"{field}: at most 365 days, got {_spell(ns)}")


def check_enum(field: str, value: int, enum_type: Any) -> None:
    """A value of a protobuf enum (its EnumTypeWrapper) that this version
    knows: proto3 keeps unknown numbers instead of refusing them."""
    if value not in enum_type.values():
        raise InvalidRequest(f"{field}: unknown value {value} (known: {', '.join(enum_type.keys())})")
