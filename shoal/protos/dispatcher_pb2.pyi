from shoal.protos import objects_pb2 as _objects_pb2
from shoal.protos import taskio_pb2 as _taskio_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentMessage(_message.Message):
    __slots__ = ("register", "heartbeat", "statuses", "log_chunk", "cert_request", "mesh_report", "exec", "commit")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    LOG_CHUNK_FIELD_NUMBER: _ClassVar[int]
    CERT_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MESH_REPORT_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    register: Register
    heartbeat: Heartbeat
    statuses: TaskStatusBatch
    log_chunk: LogChunk
    cert_request: CertificateRequest
    mesh_report: MeshReport
    exec: _taskio_pb2.ExecOutput
    commit: _taskio_pb2.CommitTaskResponse
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., statuses: _Optional[_Union[TaskStatusBatch, _Mapping]] = ..., log_chunk: _Optional[_Union[LogChunk, _Mapping]] = ..., cert_request: _Optional[_Union[CertificateRequest, _Mapping]] = ..., mesh_report: _Optional[_Union[MeshReport, _Mapping]] = ..., exec: _Optional[_Union[_taskio_pb2.ExecOutput, _Mapping]] = ..., commit: _Optional[_Union[_taskio_pb2.CommitTaskResponse, _Mapping]] = ...) -> None: ...

class MeshReport(_message.Message):
    __slots__ = ("mesh",)
    MESH_FIELD_NUMBER: _ClassVar[int]
    mesh: _objects_pb2.NodeMesh
    def __init__(self, mesh: _Optional[_Union[_objects_pb2.NodeMesh, _Mapping]] = ...) -> None: ...

class CertificateRequest(_message.Message):
    __slots__ = ("csr_pem",)
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    csr_pem: bytes
    def __init__(self, csr_pem: _Optional[bytes] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("stream", "data", "timestamp")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    stream: str
    data: bytes
    timestamp: int
    def __init__(self, stream: _Optional[str] = ..., data: _Optional[bytes] = ..., timestamp: _Optional[int] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("request_id", "task_id", "lines", "done", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    task_id: str
    lines: _containers.RepeatedCompositeFieldContainer[LogLine]
    done: bool
    error: str
    def __init__(self, request_id: _Optional[str] = ..., task_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ..., done: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class LogRequest(_message.Message):
    __slots__ = ("request_id", "task_ids", "follow", "tail", "since")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    follow: bool
    tail: int
    since: int
    def __init__(self, request_id: _Optional[str] = ..., task_ids: _Optional[_Iterable[str]] = ..., follow: _Optional[bool] = ..., tail: _Optional[int] = ..., since: _Optional[int] = ...) -> None: ...

class LogCancel(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class Register(_message.Message):
    __slots__ = ("description", "addr", "session_id")
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    description: _objects_pb2.NodeDescription
    addr: str
    session_id: str
    def __init__(self, description: _Optional[_Union[_objects_pb2.NodeDescription, _Mapping]] = ..., addr: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TaskStatusUpdate(_message.Message):
    __slots__ = ("task_id", "status")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    status: _objects_pb2.TaskStatus
    def __init__(self, task_id: _Optional[str] = ..., status: _Optional[_Union[_objects_pb2.TaskStatus, _Mapping]] = ...) -> None: ...

class TaskStatusBatch(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[TaskStatusUpdate]
    def __init__(self, updates: _Optional[_Iterable[_Union[TaskStatusUpdate, _Mapping]]] = ...) -> None: ...

class ManagerMessage(_message.Message):
    __slots__ = ("started", "assignments", "log_request", "log_cancel", "certificate", "trust", "heartbeat_ack", "managers", "mesh", "exec", "commit")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    LOG_REQUEST_FIELD_NUMBER: _ClassVar[int]
    LOG_CANCEL_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    TRUST_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_ACK_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_FIELD_NUMBER: _ClassVar[int]
    MESH_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    started: SessionStarted
    assignments: Assignments
    log_request: LogRequest
    log_cancel: LogCancel
    certificate: IssuedCertificate
    trust: TrustUpdate
    heartbeat_ack: HeartbeatAck
    managers: ManagerList
    mesh: MeshUpdate
    exec: _taskio_pb2.ExecInput
    commit: _taskio_pb2.CommitTaskRequest
    def __init__(self, started: _Optional[_Union[SessionStarted, _Mapping]] = ..., assignments: _Optional[_Union[Assignments, _Mapping]] = ..., log_request: _Optional[_Union[LogRequest, _Mapping]] = ..., log_cancel: _Optional[_Union[LogCancel, _Mapping]] = ..., certificate: _Optional[_Union[IssuedCertificate, _Mapping]] = ..., trust: _Optional[_Union[TrustUpdate, _Mapping]] = ..., heartbeat_ack: _Optional[_Union[HeartbeatAck, _Mapping]] = ..., managers: _Optional[_Union[ManagerList, _Mapping]] = ..., mesh: _Optional[_Union[MeshUpdate, _Mapping]] = ..., exec: _Optional[_Union[_taskio_pb2.ExecInput, _Mapping]] = ..., commit: _Optional[_Union[_taskio_pb2.CommitTaskRequest, _Mapping]] = ...) -> None: ...

class MeshService(_message.Message):
    __slots__ = ("service_id", "name", "ports", "virtual_ip", "networks", "targets", "stack", "short_name")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_IP_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    STACK_FIELD_NUMBER: _ClassVar[int]
    SHORT_NAME_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    name: str
    ports: _containers.RepeatedCompositeFieldContainer[_objects_pb2.PortConfig]
    virtual_ip: str
    networks: _containers.RepeatedScalarFieldContainer[str]
    targets: _containers.RepeatedCompositeFieldContainer[_objects_pb2.PortConfig]
    stack: str
    short_name: str
    def __init__(self, service_id: _Optional[str] = ..., name: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[_objects_pb2.PortConfig, _Mapping]]] = ..., virtual_ip: _Optional[str] = ..., networks: _Optional[_Iterable[str]] = ..., targets: _Optional[_Iterable[_Union[_objects_pb2.PortConfig, _Mapping]]] = ..., stack: _Optional[str] = ..., short_name: _Optional[str] = ...) -> None: ...

class MeshBackend(_message.Message):
    __slots__ = ("task_id", "service_id", "addr", "endpoints", "slot")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    service_id: str
    addr: str
    endpoints: _containers.RepeatedCompositeFieldContainer[_objects_pb2.TaskEndpoint]
    slot: int
    def __init__(self, task_id: _Optional[str] = ..., service_id: _Optional[str] = ..., addr: _Optional[str] = ..., endpoints: _Optional[_Iterable[_Union[_objects_pb2.TaskEndpoint, _Mapping]]] = ..., slot: _Optional[int] = ...) -> None: ...

class MeshUpdate(_message.Message):
    __slots__ = ("full", "services", "removed_services", "backends", "removed_backends", "more")
    FULL_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_SERVICES_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_BACKENDS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    full: bool
    services: _containers.RepeatedCompositeFieldContainer[MeshService]
    removed_services: _containers.RepeatedScalarFieldContainer[str]
    backends: _containers.RepeatedCompositeFieldContainer[MeshBackend]
    removed_backends: _containers.RepeatedScalarFieldContainer[str]
    more: bool
    def __init__(self, full: _Optional[bool] = ..., services: _Optional[_Iterable[_Union[MeshService, _Mapping]]] = ..., removed_services: _Optional[_Iterable[str]] = ..., backends: _Optional[_Iterable[_Union[MeshBackend, _Mapping]]] = ..., removed_backends: _Optional[_Iterable[str]] = ..., more: _Optional[bool] = ...) -> None: ...

class HeartbeatAck(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ManagerList(_message.Message):
    __slots__ = ("managers",)
    MANAGERS_FIELD_NUMBER: _ClassVar[int]
    managers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, managers: _Optional[_Iterable[str]] = ...) -> None: ...

class IssuedCertificate(_message.Message):
    __slots__ = ("cert_pem", "ca_pem", "error")
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_PEM_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    cert_pem: bytes
    ca_pem: bytes
    error: str
    def __init__(self, cert_pem: _Optional[bytes] = ..., ca_pem: _Optional[bytes] = ..., error: _Optional[str] = ...) -> None: ...

class TrustUpdate(_message.Message):
    __slots__ = ("ca_pem", "renew")
    CA_PEM_FIELD_NUMBER: _ClassVar[int]
    RENEW_FIELD_NUMBER: _ClassVar[int]
    ca_pem: bytes
    renew: bool
    def __init__(self, ca_pem: _Optional[bytes] = ..., renew: _Optional[bool] = ...) -> None: ...

class SessionStarted(_message.Message):
    __slots__ = ("node_id", "heartbeat_period", "managers")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_PERIOD_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    heartbeat_period: int
    managers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node_id: _Optional[str] = ..., heartbeat_period: _Optional[int] = ..., managers: _Optional[_Iterable[str]] = ...) -> None: ...

class Assignments(_message.Message):
    __slots__ = ("full", "tasks", "removed", "more")
    FULL_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    full: bool
    tasks: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Task]
    removed: _containers.RepeatedScalarFieldContainer[str]
    more: bool
    def __init__(self, full: _Optional[bool] = ..., tasks: _Optional[_Iterable[_Union[_objects_pb2.Task, _Mapping]]] = ..., removed: _Optional[_Iterable[str]] = ..., more: _Optional[bool] = ...) -> None: ...

class IssueNodeCertificateRequest(_message.Message):
    __slots__ = ("csr_pem", "token")
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    csr_pem: bytes
    token: str
    def __init__(self, csr_pem: _Optional[bytes] = ..., token: _Optional[str] = ...) -> None: ...

class IssueNodeCertificateResponse(_message.Message):
    __slots__ = ("node_id", "cert_pem", "ca_pem")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_PEM_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    cert_pem: bytes
    ca_pem: bytes
    def __init__(self, node_id: _Optional[str] = ..., cert_pem: _Optional[bytes] = ..., ca_pem: _Optional[bytes] = ...) -> None: ...
