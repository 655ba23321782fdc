from shoal.protos import objects_pb2 as _objects_pb2
from shoal.protos import taskio_pb2 as _taskio_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskLogsRequest(_message.Message):
    __slots__ = ("ref", "follow", "tail", "since", "task_ids", "task_only")
    REF_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    TASK_ONLY_FIELD_NUMBER: _ClassVar[int]
    ref: str
    follow: bool
    tail: int
    since: int
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    task_only: bool
    def __init__(self, ref: _Optional[str] = ..., follow: _Optional[bool] = ..., tail: _Optional[int] = ..., since: _Optional[int] = ..., task_ids: _Optional[_Iterable[str]] = ..., task_only: _Optional[bool] = ...) -> None: ...

class TaskLogMessage(_message.Message):
    __slots__ = ("task_id", "task_name", "node_id", "node", "stream", "data", "timestamp", "warning")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task_name: str
    node_id: str
    node: str
    stream: str
    data: bytes
    timestamp: int
    warning: str
    def __init__(self, task_id: _Optional[str] = ..., task_name: _Optional[str] = ..., node_id: _Optional[str] = ..., node: _Optional[str] = ..., stream: _Optional[str] = ..., data: _Optional[bytes] = ..., timestamp: _Optional[int] = ..., warning: _Optional[str] = ...) -> None: ...

class ObjectRef(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ManagerInfo(_message.Message):
    __slots__ = ("id", "addr", "leader")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    id: str
    addr: str
    leader: bool
    def __init__(self, id: _Optional[str] = ..., addr: _Optional[str] = ..., leader: _Optional[bool] = ...) -> None: ...

class GetClusterInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterInfo(_message.Message):
    __slots__ = ("cluster_id", "managers", "spec", "nodes", "nodes_ready", "services", "tasks", "tasks_running", "created_at", "stats", "autolock", "locked", "etcd", "stale_seconds", "version")
    class StatsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    NODES_READY_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    TASKS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    AUTOLOCK_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    ETCD_FIELD_NUMBER: _ClassVar[int]
    STALE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    managers: _containers.RepeatedCompositeFieldContainer[ManagerInfo]
    spec: _objects_pb2.ClusterSpec
    nodes: int
    nodes_ready: int
    services: int
    tasks: int
    tasks_running: int
    created_at: int
    stats: _containers.ScalarMap[str, float]
    autolock: bool
    locked: bool
    etcd: _containers.RepeatedCompositeFieldContainer[EtcdEndpoint]
    stale_seconds: float
    version: str
    def __init__(self, cluster_id: _Optional[str] = ..., managers: _Optional[_Iterable[_Union[ManagerInfo, _Mapping]]] = ..., spec: _Optional[_Union[_objects_pb2.ClusterSpec, _Mapping]] = ..., nodes: _Optional[int] = ..., nodes_ready: _Optional[int] = ..., services: _Optional[int] = ..., tasks: _Optional[int] = ..., tasks_running: _Optional[int] = ..., created_at: _Optional[int] = ..., stats: _Optional[_Mapping[str, float]] = ..., autolock: _Optional[bool] = ..., locked: _Optional[bool] = ..., etcd: _Optional[_Iterable[_Union[EtcdEndpoint, _Mapping]]] = ..., stale_seconds: _Optional[float] = ..., version: _Optional[str] = ...) -> None: ...

class EtcdEndpoint(_message.Message):
    __slots__ = ("target", "healthy", "db_size", "leader", "alarms", "error")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    DB_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    ALARMS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    target: str
    healthy: bool
    db_size: int
    leader: bool
    alarms: _containers.RepeatedScalarFieldContainer[str]
    error: str
    def __init__(self, target: _Optional[str] = ..., healthy: _Optional[bool] = ..., db_size: _Optional[int] = ..., leader: _Optional[bool] = ..., alarms: _Optional[_Iterable[str]] = ..., error: _Optional[str] = ...) -> None: ...

class UpdateClusterRequest(_message.Message):
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

class GetJoinTokenRequest(_message.Message):
    __slots__ = ("role", "rotate")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ROTATE_FIELD_NUMBER: _ClassVar[int]
    role: str
    rotate: bool
    def __init__(self, role: _Optional[str] = ..., rotate: _Optional[bool] = ...) -> None: ...

class JoinTokenResponse(_message.Message):
    __slots__ = ("token", "manager_addrs")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    MANAGER_ADDRS_FIELD_NUMBER: _ClassVar[int]
    token: str
    manager_addrs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, token: _Optional[str] = ..., manager_addrs: _Optional[_Iterable[str]] = ...) -> None: ...

class IssueAdminBundleRequest(_message.Message):
    __slots__ = ("expiry", "issued_to")
    EXPIRY_FIELD_NUMBER: _ClassVar[int]
    ISSUED_TO_FIELD_NUMBER: _ClassVar[int]
    expiry: int
    issued_to: str
    def __init__(self, expiry: _Optional[int] = ..., issued_to: _Optional[str] = ...) -> None: ...

class AdminBundle(_message.Message):
    __slots__ = ("ca_pem", "cert_pem", "key_pem", "record")
    CA_PEM_FIELD_NUMBER: _ClassVar[int]
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    record: _objects_pb2.AdminBundleRecord
    def __init__(self, ca_pem: _Optional[bytes] = ..., cert_pem: _Optional[bytes] = ..., key_pem: _Optional[bytes] = ..., record: _Optional[_Union[_objects_pb2.AdminBundleRecord, _Mapping]] = ...) -> None: ...

class ListAdminBundlesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAdminBundlesResponse(_message.Message):
    __slots__ = ("bundles",)
    BUNDLES_FIELD_NUMBER: _ClassVar[int]
    bundles: _containers.RepeatedCompositeFieldContainer[_objects_pb2.AdminBundleRecord]
    def __init__(self, bundles: _Optional[_Iterable[_Union[_objects_pb2.AdminBundleRecord, _Mapping]]] = ...) -> None: ...

class GetCAStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateCARequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CAStatus(_message.Message):
    __slots__ = ("digest", "not_after", "rotating", "previous_digest", "nodes", "nodes_pending", "rotation_started_at")
    class NodesPendingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    ROTATING_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_DIGEST_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    NODES_PENDING_FIELD_NUMBER: _ClassVar[int]
    ROTATION_STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    digest: str
    not_after: int
    rotating: bool
    previous_digest: str
    nodes: int
    nodes_pending: _containers.ScalarMap[str, str]
    rotation_started_at: int
    def __init__(self, digest: _Optional[str] = ..., not_after: _Optional[int] = ..., rotating: _Optional[bool] = ..., previous_digest: _Optional[str] = ..., nodes: _Optional[int] = ..., nodes_pending: _Optional[_Mapping[str, str]] = ..., rotation_started_at: _Optional[int] = ...) -> None: ...

class SetAutolockRequest(_message.Message):
    __slots__ = ("enabled",)
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    def __init__(self, enabled: _Optional[bool] = ...) -> None: ...

class SetAutolockResponse(_message.Message):
    __slots__ = ("autolock", "unlock_key")
    AUTOLOCK_FIELD_NUMBER: _ClassVar[int]
    UNLOCK_KEY_FIELD_NUMBER: _ClassVar[int]
    autolock: bool
    unlock_key: str
    def __init__(self, autolock: _Optional[bool] = ..., unlock_key: _Optional[str] = ...) -> None: ...

class UnlockManagerRequest(_message.Message):
    __slots__ = ("unlock_key",)
    UNLOCK_KEY_FIELD_NUMBER: _ClassVar[int]
    unlock_key: str
    def __init__(self, unlock_key: _Optional[str] = ...) -> None: ...

class UnlockManagerResponse(_message.Message):
    __slots__ = ("manager_id",)
    MANAGER_ID_FIELD_NUMBER: _ClassVar[int]
    manager_id: str
    def __init__(self, manager_id: _Optional[str] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[_objects_pb2.Node, _Mapping]]] = ...) -> None: ...

class UpdateNodeRequest(_message.Message):
    __slots__ = ("ref", "availability", "label_add", "label_rm")
    class LabelAddEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    LABEL_ADD_FIELD_NUMBER: _ClassVar[int]
    LABEL_RM_FIELD_NUMBER: _ClassVar[int]
    ref: str
    availability: str
    label_add: _containers.ScalarMap[str, str]
    label_rm: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ref: _Optional[str] = ..., availability: _Optional[str] = ..., label_add: _Optional[_Mapping[str, str]] = ..., label_rm: _Optional[_Iterable[str]] = ...) -> None: ...

class RemoveNodeRequest(_message.Message):
    __slots__ = ("ref", "force")
    REF_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    ref: str
    force: bool
    def __init__(self, ref: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class RemoveNodeResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CreateServiceRequest(_message.Message):
    __slots__ = ("spec", "registry_auth", "id", "validate_only", "planned_secrets", "planned_configs", "planned_networks")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_AUTH_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    PLANNED_SECRETS_FIELD_NUMBER: _ClassVar[int]
    PLANNED_CONFIGS_FIELD_NUMBER: _ClassVar[int]
    PLANNED_NETWORKS_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.ServiceSpec
    registry_auth: str
    id: str
    validate_only: bool
    planned_secrets: _containers.RepeatedScalarFieldContainer[str]
    planned_configs: _containers.RepeatedScalarFieldContainer[str]
    planned_networks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, spec: _Optional[_Union[_objects_pb2.ServiceSpec, _Mapping]] = ..., registry_auth: _Optional[str] = ..., id: _Optional[str] = ..., validate_only: _Optional[bool] = ..., planned_secrets: _Optional[_Iterable[str]] = ..., planned_configs: _Optional[_Iterable[str]] = ..., planned_networks: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateServiceRequest(_message.Message):
    __slots__ = ("ref", "version", "spec", "rollback", "force", "registry_auth", "validate_only", "planned_secrets", "planned_configs", "planned_networks")
    REF_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_AUTH_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    PLANNED_SECRETS_FIELD_NUMBER: _ClassVar[int]
    PLANNED_CONFIGS_FIELD_NUMBER: _ClassVar[int]
    PLANNED_NETWORKS_FIELD_NUMBER: _ClassVar[int]
    ref: str
    version: int
    spec: _objects_pb2.ServiceSpec
    rollback: bool
    force: bool
    registry_auth: str
    validate_only: bool
    planned_secrets: _containers.RepeatedScalarFieldContainer[str]
    planned_configs: _containers.RepeatedScalarFieldContainer[str]
    planned_networks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ref: _Optional[str] = ..., version: _Optional[int] = ..., spec: _Optional[_Union[_objects_pb2.ServiceSpec, _Mapping]] = ..., rollback: _Optional[bool] = ..., force: _Optional[bool] = ..., registry_auth: _Optional[str] = ..., validate_only: _Optional[bool] = ..., planned_secrets: _Optional[_Iterable[str]] = ..., planned_configs: _Optional[_Iterable[str]] = ..., planned_networks: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateSecretRequest(_message.Message):
    __slots__ = ("spec", "id", "reuse_same")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REUSE_SAME_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.SecretSpec
    id: str
    reuse_same: bool
    def __init__(self, spec: _Optional[_Union[_objects_pb2.SecretSpec, _Mapping]] = ..., id: _Optional[str] = ..., reuse_same: _Optional[bool] = ...) -> None: ...

class CreateConfigRequest(_message.Message):
    __slots__ = ("spec", "id", "reuse_same")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REUSE_SAME_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.ConfigSpec
    id: str
    reuse_same: bool
    def __init__(self, spec: _Optional[_Union[_objects_pb2.ConfigSpec, _Mapping]] = ..., id: _Optional[str] = ..., reuse_same: _Optional[bool] = ...) -> None: ...

class ListSecretsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSecretsResponse(_message.Message):
    __slots__ = ("secrets",)
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    secrets: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Secret]
    def __init__(self, secrets: _Optional[_Iterable[_Union[_objects_pb2.Secret, _Mapping]]] = ...) -> None: ...

class ListConfigsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListConfigsResponse(_message.Message):
    __slots__ = ("configs",)
    CONFIGS_FIELD_NUMBER: _ClassVar[int]
    configs: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Config]
    def __init__(self, configs: _Optional[_Iterable[_Union[_objects_pb2.Config, _Mapping]]] = ...) -> None: ...

class RemoveObjectResponse(_message.Message):
    __slots__ = ("id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ScaleServiceRequest(_message.Message):
    __slots__ = ("ref", "replicas")
    REF_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ref: str
    replicas: int
    def __init__(self, ref: _Optional[str] = ..., replicas: _Optional[int] = ...) -> None: ...

class RemoveServiceResponse(_message.Message):
    __slots__ = ("id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ListServicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServiceSummary(_message.Message):
    __slots__ = ("service", "replicas_desired", "replicas_running", "completed")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_DESIRED_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    service: _objects_pb2.Service
    replicas_desired: int
    replicas_running: int
    completed: int
    def __init__(self, service: _Optional[_Union[_objects_pb2.Service, _Mapping]] = ..., replicas_desired: _Optional[int] = ..., replicas_running: _Optional[int] = ..., completed: _Optional[int] = ...) -> None: ...

class ListServicesResponse(_message.Message):
    __slots__ = ("services",)
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[ServiceSummary]
    def __init__(self, services: _Optional[_Iterable[_Union[ServiceSummary, _Mapping]]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("service", "node", "desired_state")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    DESIRED_STATE_FIELD_NUMBER: _ClassVar[int]
    service: str
    node: str
    desired_state: str
    def __init__(self, service: _Optional[str] = ..., node: _Optional[str] = ..., desired_state: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "node_hostnames", "node_down", "node_addrs")
    class NodeHostnamesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class NodeDownEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class NodeAddrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NODE_HOSTNAMES_FIELD_NUMBER: _ClassVar[int]
    NODE_DOWN_FIELD_NUMBER: _ClassVar[int]
    NODE_ADDRS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Task]
    node_hostnames: _containers.ScalarMap[str, str]
    node_down: _containers.ScalarMap[str, str]
    node_addrs: _containers.ScalarMap[str, str]
    def __init__(self, tasks: _Optional[_Iterable[_Union[_objects_pb2.Task, _Mapping]]] = ..., node_hostnames: _Optional[_Mapping[str, str]] = ..., node_down: _Optional[_Mapping[str, str]] = ..., node_addrs: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CreateNetworkRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: _objects_pb2.NetworkSpec
    def __init__(self, spec: _Optional[_Union[_objects_pb2.NetworkSpec, _Mapping]] = ...) -> None: ...

class ListNetworksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNetworksResponse(_message.Message):
    __slots__ = ("networks",)
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    networks: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Network]
    def __init__(self, networks: _Optional[_Iterable[_Union[_objects_pb2.Network, _Mapping]]] = ...) -> None: ...
