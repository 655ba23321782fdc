"""The Engine API's words for shoal's enums, both ways.

Most are the same words shoal's CLI uses (Swarm's); the tables live here so
that the translation in both directions reads one table.
"""

from __future__ import annotations

from shoal import specs
from shoal.protos import objects_pb2 as pb

# ServiceSpec.Mode has one key per mode.
MODE_KEYS = {
    pb.SERVICE_MODE_REPLICATED: "Replicated",
    pb.SERVICE_MODE_GLOBAL: "Global",
    pb.SERVICE_MODE_REPLICATED_JOB: "ReplicatedJob",
    pb.SERVICE_MODE_GLOBAL_JOB: "GlobalJob",
}
MODES_BY_KEY = {word: mode for mode, word in MODE_KEYS.items()}
# The `mode` filter of GET /services, and the policies' words: the words
# shoal's CLI and Compose files use (shoal.specs), read the other way too.
MODE_FILTER_WORDS = {mode: word for word, mode in specs.MODES.items()}
JOB_MODES = specs.JOB_MODES

CONDITIONS_BY_WORD = specs.CONDITIONS
CONDITIONS = {value: word for word, value in CONDITIONS_BY_WORD.items()}

FAILURE_ACTIONS_BY_WORD = specs.FAILURE_ACTIONS
FAILURE_ACTIONS = {value: word for word, value in FAILURE_ACTIONS_BY_WORD.items()}

ORDERS_BY_WORD = specs.ORDERS
ORDERS = {value: word for word, value in ORDERS_BY_WORD.items()}

UPDATE_STATES = {
    pb.UPDATE_STATE_UPDATING: "updating",
    pb.UPDATE_STATE_PAUSED: "paused",
    pb.UPDATE_STATE_COMPLETED: "completed",
    pb.UPDATE_STATE_ROLLBACK_STARTED: "rollback_started",
    pb.UPDATE_STATE_ROLLBACK_PAUSED: "rollback_paused",
    pb.UPDATE_STATE_ROLLBACK_COMPLETED: "rollback_completed",
}

NODE_STATES = {
    pb.NODE_STATE_UNKNOWN: "unknown",
    pb.NODE_STATE_DOWN: "down",
    pb.NODE_STATE_READY: "ready",
    pb.NODE_STATE_DISCONNECTED: "disconnected",
}
AVAILABILITY = {
    pb.NODE_AVAILABILITY_ACTIVE: "active",
    pb.NODE_AVAILABILITY_PAUSE: "pause",
    pb.NODE_AVAILABILITY_DRAIN: "drain",
}
ROLES = {pb.NODE_ROLE_WORKER: "worker", pb.NODE_ROLE_MANAGER: "manager"}

# Every task state's word: "running", "shutdown", ... (the enum's own names).
TASK_STATES = {value: name.removeprefix("TASK_STATE_").lower() for name, value in pb.TaskState.items()}
TASK_STATES_BY_WORD = {word: value for value, word in TASK_STATES.items()}
