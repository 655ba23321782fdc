from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_ROLE_WORKER: _ClassVar[NodeRole]
    NODE_ROLE_MANAGER: _ClassVar[NodeRole]

class NodeAvailability(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_AVAILABILITY_ACTIVE: _ClassVar[NodeAvailability]
    NODE_AVAILABILITY_PAUSE: _ClassVar[NodeAvailability]
    NODE_AVAILABILITY_DRAIN: _ClassVar[NodeAvailability]

class NodeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATE_UNKNOWN: _ClassVar[NodeState]
    NODE_STATE_DOWN: _ClassVar[NodeState]
    NODE_STATE_READY: _ClassVar[NodeState]
    NODE_STATE_DISCONNECTED: _ClassVar[NodeState]

class ServiceMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVICE_MODE_REPLICATED: _ClassVar[ServiceMode]
    SERVICE_MODE_GLOBAL: _ClassVar[ServiceMode]
    SERVICE_MODE_REPLICATED_JOB: _ClassVar[ServiceMode]
    SERVICE_MODE_GLOBAL_JOB: _ClassVar[ServiceMode]

class RestartCondition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESTART_CONDITION_ANY: _ClassVar[RestartCondition]
    RESTART_CONDITION_ON_FAILURE: _ClassVar[RestartCondition]
    RESTART_CONDITION_NONE: _ClassVar[RestartCondition]

class FailureAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAILURE_ACTION_PAUSE: _ClassVar[FailureAction]
    FAILURE_ACTION_CONTINUE: _ClassVar[FailureAction]
    FAILURE_ACTION_ROLLBACK: _ClassVar[FailureAction]

class UpdateOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPDATE_ORDER_STOP_FIRST: _ClassVar[UpdateOrder]
    UPDATE_ORDER_START_FIRST: _ClassVar[UpdateOrder]

class UpdateState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPDATE_STATE_UNKNOWN: _ClassVar[UpdateState]
    UPDATE_STATE_UPDATING: _ClassVar[UpdateState]
    UPDATE_STATE_PAUSED: _ClassVar[UpdateState]
    UPDATE_STATE_COMPLETED: _ClassVar[UpdateState]
    UPDATE_STATE_ROLLBACK_STARTED: _ClassVar[UpdateState]
    UPDATE_STATE_ROLLBACK_PAUSED: _ClassVar[UpdateState]
    UPDATE_STATE_ROLLBACK_COMPLETED: _ClassVar[UpdateState]

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_NEW: _ClassVar[TaskState]
    TASK_STATE_PENDING: _ClassVar[TaskState]
    TASK_STATE_ASSIGNED: _ClassVar[TaskState]
    TASK_STATE_ACCEPTED: _ClassVar[TaskState]
    TASK_STATE_PREPARING: _ClassVar[TaskState]
    TASK_STATE_READY: _ClassVar[TaskState]
    TASK_STATE_STARTING: _ClassVar[TaskState]
    TASK_STATE_RUNNING: _ClassVar[TaskState]
    TASK_STATE_COMPLETE: _ClassVar[TaskState]
    TASK_STATE_SHUTDOWN: _ClassVar[TaskState]
    TASK_STATE_FAILED: _ClassVar[TaskState]
    TASK_STATE_REJECTED: _ClassVar[TaskState]
    TASK_STATE_REMOVE: _ClassVar[TaskState]
    TASK_STATE_ORPHANED: _ClassVar[TaskState]

class Health(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_NONE: _ClassVar[Health]
    HEALTH_STARTING: _ClassVar[Health]
    HEALTH_HEALTHY: _ClassVar[Health]
    HEALTH_UNHEALTHY: _ClassVar[Health]
NODE_ROLE_WORKER: NodeRole
NODE_ROLE_MANAGER: NodeRole
NODE_AVAILABILITY_ACTIVE: NodeAvailability
NODE_AVAILABILITY_PAUSE: NodeAvailability
NODE_AVAILABILITY_DRAIN: NodeAvailability
NODE_STATE_UNKNOWN: NodeState
NODE_STATE_DOWN: NodeState
NODE_STATE_READY: NodeState
NODE_STATE_DISCONNECTED: NodeState
SERVICE_MODE_REPLICATED: ServiceMode
SERVICE_MODE_GLOBAL: ServiceMode
SERVICE_MODE_REPLICATED_JOB: ServiceMode
SERVICE_MODE_GLOBAL_JOB: ServiceMode
RESTART_CONDITION_ANY: RestartCondition
RESTART_CONDITION_ON_FAILURE: RestartCondition
RESTART_CONDITION_NONE: RestartCondition
FAILURE_ACTION_PAUSE: FailureAction
FAILURE_ACTION_CONTINUE: FailureAction
FAILURE_ACTION_ROLLBACK: FailureAction
UPDATE_ORDER_STOP_FIRST: UpdateOrder
UPDATE_ORDER_START_FIRST: UpdateOrder
UPDATE_STATE_UNKNOWN: UpdateState
UPDATE_STATE_UPDATING: UpdateState
UPDATE_STATE_PAUSED: UpdateState
UPDATE_STATE_COMPLETED: UpdateState
UPDATE_STATE_ROLLBACK_STARTED: UpdateState
UPDATE_STATE_ROLLBACK_PAUSED: UpdateState
UPDATE_STATE_ROLLBACK_COMPLETED: UpdateState
TASK_STATE_NEW: TaskState
TASK_STATE_PENDING: TaskState
TASK_STATE_ASSIGNED: TaskState
TASK_STATE_ACCEPTED: TaskState
TASK_STATE_PREPARING: TaskState
TASK_STATE_READY: TaskState
TASK_STATE_STARTING: TaskState
TASK_STATE_RUNNING: TaskState
TASK_STATE_COMPLETE: TaskState
TASK_STATE_SHUTDOWN: TaskState
TASK_STATE_FAILED: TaskState
TASK_STATE_REJECTED: TaskState
TASK_STATE_REMOVE: TaskState
TASK_STATE_ORPHANED: TaskState
HEALTH_NONE: Health
HEALTH_STARTING: Health
HEALTH_HEALTHY: Health
HEALTH_UNHEALTHY: Health

class Meta(_message.Message):
    __slots__ = ("id", "version", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    created_at: int
    updated_at: int
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ..., created_at: _Optional[int] = ..., updated_at: _Optional[int] = ...) -> None: ...

class ClusterSpec(_message.Message):
    __slots__ = ("heartbeat_period", "task_history_limit", "cert_expiry", "max_replicas")
    HEARTBEAT_PERIOD_FIELD_NUMBER: _ClassVar[int]
    TASK_HISTORY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CERT_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    heartbeat_period: int
    task_history_limit: int
    cert_expiry: int
    max_replicas: int
    def __init__(self, heartbeat_period: _Optional[int] = ..., task_history_limit: _Optional[int] = ..., cert_expiry: _Optional[int] = ..., max_replicas: _Optional[int] = ...) -> None: ...

class JoinTokens(_message.Message):
    __slots__ = ("worker", "manager")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    MANAGER_FIELD_NUMBER: _ClassVar[int]
    worker: str
    manager: str
    def __init__(self, worker: _Optional[str] = ..., manager: _Optional[str] = ...) -> None: ...

class RootCA(_message.Message):
    __slots__ = ("cert_pem", "key_pem", "cert_digest", "previous_cert_pem", "cross_signed_pem", "rotation_started_at")
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    CERT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    CROSS_SIGNED_PEM_FIELD_NUMBER: _ClassVar[int]
    ROTATION_STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    cert_pem: bytes
    key_pem: bytes
    cert_digest: str
    previous_cert_pem: bytes
    cross_signed_pem: bytes
    rotation_started_at: int
    def __init__(self, cert_pem: _Optional[bytes] = ..., key_pem: _Optional[bytes] = ..., cert_digest: _Optional[str] = ..., previous_cert_pem: _Optional[bytes] = ..., cross_signed_pem: _Optional[bytes] = ..., rotation_started_at: _Optional[int] = ...) -> None: ...

class AdminBundleRecord(_message.Message):
    __slots__ = ("id", "issued_at", "expires_at", "revoked_at", "issued_to")
    ID_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    ISSUED_TO_FIELD_NUMBER: _ClassVar[int]
    id: str
    issued_at: int
    expires_at: int
    revoked_at: int
    issued_to: str
    def __init__(self, id: _Optional[str] = ..., issued_at: _Optional[int] = ..., expires_at: _Optional[int] = ..., revoked_at: _Optional[int] = ..., issued_to: _Optional[str] = ...) -> None: ...

class Cluster(_message.Message):
    __slots__ = ("meta", "spec", "root_ca", "join_tokens", "removed_nodes", "seal_key", "admin_bundles")
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ROOT_CA_FIELD_NUMBER: _ClassVar[int]
    JOIN_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_NODES_FIELD_NUMBER: _ClassVar[int]
    SEAL_KEY_FIELD_NUMBER: _ClassVar[int]
    ADMIN_BUNDLES_FIELD_NUMBER: _ClassVar[int]
    meta: Meta
    spec: ClusterSpec
    root_ca: RootCA
    join_tokens: JoinTokens
    removed_nodes: _containers.RepeatedScalarFieldContainer[str]
    seal_key: bytes
    admin_bundles: _containers.RepeatedCompositeFieldContainer[AdminBundleRecord]
    def __init__(self, meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[ClusterSpec, _Mapping]] = ..., root_ca: _Optional[_Union[RootCA, _Mapping]] = ..., join_tokens: _Optional[_Union[JoinTokens, _Mapping]] = ..., removed_nodes: _Optional[_Iterable[str]] = ..., seal_key: _Optional[bytes] = ..., admin_bundles: _Optional[_Iterable[_Union[AdminBundleRecord, _Mapping]]] = ...) -> None: ...

class ClusterKeys(_message.Message):
    __slots__ = ("meta", "autolock", "material", "material_digest")
    META_FIELD_NUMBER: _ClassVar[int]
    AUTOLOCK_FIELD_NUMBER: _ClassVar[int]
    MATERIAL_FIELD_NUMBER: _ClassVar[int]
    MATERIAL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    meta: Meta
    autolock: bool
    material: bytes
    material_digest: bytes
    def __init__(self, meta: _Optional[_Union[Meta, _Mapping]] = ..., autolock: _Optional[bool] = ..., material: _Optional[bytes] = ..., material_digest: _Optional[bytes] = ...) -> None: ...

class KeyMaterial(_message.Message):
    __slots__ = ("ca_key_pem", "seal_key")
    CA_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    SEAL_KEY_FIELD_NUMBER: _ClassVar[int]
    ca_key_pem: bytes
    seal_key: bytes
    def __init__(self, ca_key_pem: _Optional[bytes] = ..., seal_key: _Optional[bytes] = ...) -> None: ...

class NodeSpec(_message.Message):
    __slots__ = ("availability", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    availability: NodeAvailability
    labels: _containers.ScalarMap[str, str]
    def __init__(self, availability: _Optional[_Union[NodeAvailability, str]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Platform(_message.Message):
    __slots__ = ("os", "arch")
    OS_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    os: str
    arch: str
    def __init__(self, os: _Optional[str] = ..., arch: _Optional[str] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("nano_cpus", "memory_bytes")
    NANO_CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    nano_cpus: int
    memory_bytes: int
    def __init__(self, nano_cpus: _Optional[int] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class NodeDescription(_message.Message):
    __slots__ = ("hostname", "platform", "resources", "runtime", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    platform: Platform
    resources: Resources
    runtime: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, hostname: _Optional[str] = ..., platform: _Optional[_Union[Platform, _Mapping]] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., runtime: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("state", "message", "addr", "manager_id", "timestamp")
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    MANAGER_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    state: NodeState
    message: str
    addr: str
    manager_id: str
    timestamp: int
    def __init__(self, state: _Optional[_Union[NodeState, str]] = ..., message: _Optional[str] = ..., addr: _Optional[str] = ..., manager_id: _Optional[str] = ..., timestamp: _Optional[int] = ...) -> None: ...

class NodeCertificate(_message.Message):
    __slots__ = ("serial", "not_after", "ca_digest", "issued_at")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    CA_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    serial: str
    not_after: int
    ca_digest: str
    issued_at: int
    def __init__(self, serial: _Optional[str] = ..., not_after: _Optional[int] = ..., ca_digest: _Optional[str] = ..., issued_at: _Optional[int] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("meta", "spec", "description", "status", "role", "certificate", "mesh")
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    MESH_FIELD_NUMBER: _ClassVar[int]
    meta: Meta
    spec: NodeSpec
    description: NodeDescription
    status: NodeStatus
    role: NodeRole
    certificate: NodeCertificate
    mesh: NodeMesh
    def __init__(self, meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[NodeSpec, _Mapping]] = ..., description: _Optional[_Union[NodeDescription, _Mapping]] = ..., status: _Optional[_Union[NodeStatus, _Mapping]] = ..., role: _Optional[_Union[NodeRole, str]] = ..., certificate: _Optional[_Union[NodeCertificate, _Mapping]] = ..., mesh: _Optional[_Union[NodeMesh, _Mapping]] = ...) -> None: ...

class MeshPortState(_message.Message):
    __slots__ = ("protocol", "port", "service_id", "path", "backends", "local_backends", "error")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_BACKENDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    protocol: str
    port: int
    service_id: str
    path: str
    backends: int
    local_backends: int
    error: str
    def __init__(self, protocol: _Optional[str] = ..., port: _Optional[int] = ..., service_id: _Optional[str] = ..., path: _Optional[str] = ..., backends: _Optional[int] = ..., local_backends: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class NodeMesh(_message.Message):
    __slots__ = ("path", "ports", "updated_at", "error")
    PATH_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    path: str
    ports: _containers.RepeatedCompositeFieldContainer[MeshPortState]
    updated_at: int
    error: str
    def __init__(self, path: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[MeshPortState, _Mapping]]] = ..., updated_at: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class RestartPolicy(_message.Message):
    __slots__ = ("condition", "delay", "max_attempts", "window")
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    condition: RestartCondition
    delay: int
    max_attempts: int
    window: int
    def __init__(self, condition: _Optional[_Union[RestartCondition, str]] = ..., delay: _Optional[int] = ..., max_attempts: _Optional[int] = ..., window: _Optional[int] = ...) -> None: ...

class HealthCheck(_message.Message):
    __slots__ = ("test", "interval", "timeout", "retries", "start_period")
    TEST_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    START_PERIOD_FIELD_NUMBER: _ClassVar[int]
    test: _containers.RepeatedScalarFieldContainer[str]
    interval: int
    timeout: int
    retries: int
    start_period: int
    def __init__(self, test: _Optional[_Iterable[str]] = ..., interval: _Optional[int] = ..., timeout: _Optional[int] = ..., retries: _Optional[int] = ..., start_period: _Optional[int] = ...) -> None: ...

class Mount(_message.Message):
    __slots__ = ("type", "source", "target", "readonly", "tmpfs_size")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    READONLY_FIELD_NUMBER: _ClassVar[int]
    TMPFS_SIZE_FIELD_NUMBER: _ClassVar[int]
    type: str
    source: str
    target: str
    readonly: bool
    tmpfs_size: int
    def __init__(self, type: _Optional[str] = ..., source: _Optional[str] = ..., target: _Optional[str] = ..., readonly: _Optional[bool] = ..., tmpfs_size: _Optional[int] = ...) -> None: ...

class FileReference(_message.Message):
    __slots__ = ("id", "name", "target", "uid", "gid", "mode")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    target: str
    uid: str
    gid: str
    mode: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., target: _Optional[str] = ..., uid: _Optional[str] = ..., gid: _Optional[str] = ..., mode: _Optional[int] = ...) -> None: ...

class ContainerSpec(_message.Message):
    __slots__ = ("image", "command", "args", "env", "workdir", "stop_grace_period", "stop_signal", "healthcheck", "labels", "mounts", "secrets", "configs", "user")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WORKDIR_FIELD_NUMBER: _ClassVar[int]
    STOP_GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    STOP_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    HEALTHCHECK_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    CONFIGS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    image: str
    command: _containers.RepeatedScalarFieldContainer[str]
    args: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.RepeatedScalarFieldContainer[str]
    workdir: str
    stop_grace_period: int
    stop_signal: str
    healthcheck: HealthCheck
    labels: _containers.ScalarMap[str, str]
    mounts: _containers.RepeatedCompositeFieldContainer[Mount]
    secrets: _containers.RepeatedCompositeFieldContainer[FileReference]
    configs: _containers.RepeatedCompositeFieldContainer[FileReference]
    user: str
    def __init__(self, image: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., args: _Optional[_Iterable[str]] = ..., env: _Optional[_Iterable[str]] = ..., workdir: _Optional[str] = ..., stop_grace_period: _Optional[int] = ..., stop_signal: _Optional[str] = ..., healthcheck: _Optional[_Union[HealthCheck, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., mounts: _Optional[_Iterable[_Union[Mount, _Mapping]]] = ..., secrets: _Optional[_Iterable[_Union[FileReference, _Mapping]]] = ..., configs: _Optional[_Iterable[_Union[FileReference, _Mapping]]] = ..., user: _Optional[str] = ...) -> None: ...

class ResourceRequirements(_message.Message):
    __slots__ = ("limits", "reservations")
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    limits: Resources
    reservations: Resources
    def __init__(self, limits: _Optional[_Union[Resources, _Mapping]] = ..., reservations: _Optional[_Union[Resources, _Mapping]] = ...) -> None: ...

class PlacementPreference(_message.Message):
    __slots__ = ("spread",)
    SPREAD_FIELD_NUMBER: _ClassVar[int]
    spread: str
    def __init__(self, spread: _Optional[str] = ...) -> None: ...

class Placement(_message.Message):
    __slots__ = ("constraints", "preferences", "max_replicas_per_node")
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    constraints: _containers.RepeatedScalarFieldContainer[str]
    preferences: _containers.RepeatedCompositeFieldContainer[PlacementPreference]
    max_replicas_per_node: int
    def __init__(self, constraints: _Optional[_Iterable[str]] = ..., preferences: _Optional[_Iterable[_Union[PlacementPreference, _Mapping]]] = ..., max_replicas_per_node: _Optional[int] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("container", "resources", "restart", "placement", "force_update")
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    FORCE_UPDATE_FIELD_NUMBER: _ClassVar[int]
    container: ContainerSpec
    resources: ResourceRequirements
    restart: RestartPolicy
    placement: Placement
    force_update: int
    def __init__(self, container: _Optional[_Union[ContainerSpec, _Mapping]] = ..., resources: _Optional[_Union[ResourceRequirements, _Mapping]] = ..., restart: _Optional[_Union[RestartPolicy, _Mapping]] = ..., placement: _Optional[_Union[Placement, _Mapping]] = ..., force_update: _Optional[int] = ...) -> None: ...

class UpdateConfig(_message.Message):
    __slots__ = ("parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order")
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    FAILURE_ACTION_FIELD_NUMBER: _ClassVar[int]
    MONITOR_FIELD_NUMBER: _ClassVar[int]
    MAX_FAILURE_RATIO_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    parallelism: int
    delay: int
    failure_action: FailureAction
    monitor: int
    max_failure_ratio: float
    order: UpdateOrder
    def __init__(self, parallelism: _Optional[int] = ..., delay: _Optional[int] = ..., failure_action: _Optional[_Union[FailureAction, str]] = ..., monitor: _Optional[int] = ..., max_failure_ratio: _Optional[float] = ..., order: _Optional[_Union[UpdateOrder, str]] = ...) -> None: ...

class PortConfig(_message.Message):
    __slots__ = ("protocol", "target_port", "published_port", "publish_mode", "proxy_protocol")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_PORT_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_MODE_FIELD_NUMBER: _ClassVar[int]
    PROXY_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    protocol: str
    target_port: int
    published_port: int
    publish_mode: str
    proxy_protocol: str
    def __init__(self, protocol: _Optional[str] = ..., target_port: _Optional[int] = ..., published_port: _Optional[int] = ..., publish_mode: _Optional[str] = ..., proxy_protocol: _Optional[str] = ...) -> None: ...

class ServiceSpec(_message.Message):
    __slots__ = ("name", "labels", "mode", "replicas", "max_concurrent", "task", "update", "rollback", "ports", "networks", "expose")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    EXPOSE_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    mode: ServiceMode
    replicas: int
    max_concurrent: int
    task: TaskSpec
    update: UpdateConfig
    rollback: UpdateConfig
    ports: _containers.RepeatedCompositeFieldContainer[PortConfig]
    networks: _containers.RepeatedScalarFieldContainer[str]
    expose: _containers.RepeatedCompositeFieldContainer[PortConfig]
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., mode: _Optional[_Union[ServiceMode, str]] = ..., replicas: _Optional[int] = ..., max_concurrent: _Optional[int] = ..., task: _Optional[_Union[TaskSpec, _Mapping]] = ..., update: _Optional[_Union[UpdateConfig, _Mapping]] = ..., rollback: _Optional[_Union[UpdateConfig, _Mapping]] = ..., ports: _Optional[_Iterable[_Union[PortConfig, _Mapping]]] = ..., networks: _Optional[_Iterable[str]] = ..., expose: _Optional[_Iterable[_Union[PortConfig, _Mapping]]] = ...) -> None: ...

class UpdateStatus(_message.Message):
    __slots__ = ("state", "message", "started_at", "completed_at")
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    state: UpdateState
    message: str
    started_at: int
    completed_at: int
    def __init__(self, state: _Optional[_Union[UpdateState, str]] = ..., message: _Optional[str] = ..., started_at: _Optional[int] = ..., completed_at: _Optional[int] = ...) -> None: ...

class Service(_message.Message):
    __slots__ = ("meta", "spec", "spec_version", "previous_spec", "previous_spec_version", "update_status", "registry_auth_sealed", "virtual_ip")
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SPEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SPEC_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SPEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_STATUS_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_AUTH_SEALED_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_IP_FIELD_NUMBER: _ClassVar[int]
    meta: Meta
    spec: ServiceSpec
    spec_version: int
    previous_spec: ServiceSpec
    previous_spec_version: int
    update_status: UpdateStatus
    registry_auth_sealed: bytes
    virtual_ip: str
    def __init__(self, meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[ServiceSpec, _Mapping]] = ..., spec_version: _Optional[int] = ..., previous_spec: _Optional[_Union[ServiceSpec, _Mapping]] = ..., previous_spec_version: _Optional[int] = ..., update_status: _Optional[_Union[UpdateStatus, _Mapping]] = ..., registry_auth_sealed: _Optional[bytes] = ..., virtual_ip: _Optional[str] = ...) -> None: ...

class TaskStatus(_message.Message):
    __slots__ = ("state", "timestamp", "message", "err", "exit_code", "pid", "health", "endpoints")
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    state: TaskState
    timestamp: int
    message: str
    err: str
    exit_code: int
    pid: int
    health: Health
    endpoints: _containers.RepeatedCompositeFieldContainer[TaskEndpoint]
    def __init__(self, state: _Optional[_Union[TaskState, str]] = ..., timestamp: _Optional[int] = ..., message: _Optional[str] = ..., err: _Optional[str] = ..., exit_code: _Optional[int] = ..., pid: _Optional[int] = ..., health: _Optional[_Union[Health, str]] = ..., endpoints: _Optional[_Iterable[_Union[TaskEndpoint, _Mapping]]] = ...) -> None: ...

class TaskEndpoint(_message.Message):
    __slots__ = ("protocol", "target_port", "host_port")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_FIELD_NUMBER: _ClassVar[int]
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    protocol: str
    target_port: int
    host_port: int
    def __init__(self, protocol: _Optional[str] = ..., target_port: _Optional[int] = ..., host_port: _Optional[int] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("meta", "service_id", "service_name", "slot", "node_id", "spec", "spec_version", "desired_state", "status", "restart_at", "attempt", "ports", "registry_auth", "files", "expose")
    class FilesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    META_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SPEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    DESIRED_STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESTART_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_AUTH_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    EXPOSE_FIELD_NUMBER: _ClassVar[int]
    meta: Meta
    service_id: str
    service_name: str
    slot: int
    node_id: str
    spec: TaskSpec
    spec_version: int
    desired_state: TaskState
    status: TaskStatus
    restart_at: int
    attempt: int
    ports: _containers.RepeatedCompositeFieldContainer[PortConfig]
    registry_auth: str
    files: _containers.ScalarMap[str, bytes]
    expose: _containers.RepeatedCompositeFieldContainer[PortConfig]
    def __init__(self, meta: _Optional[_Union[Meta, _Mapping]] = ..., service_id: _Optional[str] = ..., service_name: _Optional[str] = ..., slot: _Optional[int] = ..., node_id: _Optional[str] = ..., spec: _Optional[_Union[TaskSpec, _Mapping]] = ..., spec_version: _Optional[int] = ..., desired_state: _Optional[_Union[TaskState, str]] = ..., status: _Optional[_Union[TaskStatus, _Mapping]] = ..., restart_at: _Optional[int] = ..., attempt: _Optional[int] = ..., ports: _Optional[_Iterable[_Union[PortConfig, _Mapping]]] = ..., registry_auth: _Optional[str] = ..., files: _Optional[_Mapping[str, bytes]] = ..., expose: _Optional[_Iterable[_Union[PortConfig, _Mapping]]] = ...) -> None: ...

class SecretSpec(_message.Message):
    __slots__ = ("name", "labels", "data")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    data: bytes
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Secret(_message.Message):
    __slots__ = ("meta", "spec", "sealed_data", "size")
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SEALED_DATA_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    meta: Meta
    spec: SecretSpec
    sealed_data: bytes
    size: int
    def __init__(self, meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[SecretSpec, _Mapping]] = ..., sealed_data: _Optional[bytes] = ..., size: _Optional[int] = ...) -> None: ...

class ConfigSpec(_message.Message):
    __slots__ = ("name", "labels", "data")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    data: bytes
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Config(_message.Message):
    __slots__ = ("meta", "spec", "size")
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    meta: Meta
    spec: ConfigSpec
    size: int
    def __init__(self, meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[ConfigSpec, _Mapping]] = ..., size: _Optional[int] = ...) -> None: ...

class NetworkSpec(_message.Message):
    __slots__ = ("name", "labels", "driver")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    driver: str
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., driver: _Optional[str] = ...) -> None: ...

class Network(_message.Message):
    __slots__ = ("meta", "spec")
    META_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    meta: Meta
    spec: NetworkSpec
    def __init__(self, meta: _Optional[_Union[Meta, _Mapping]] = ..., spec: _Optional[_Union[NetworkSpec, _Mapping]] = ...) -> None: ...
