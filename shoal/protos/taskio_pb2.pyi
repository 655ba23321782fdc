from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExecStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXEC_STREAM_STDOUT: _ClassVar[ExecStream]
    EXEC_STREAM_STDERR: _ClassVar[ExecStream]
EXEC_STREAM_STDOUT: ExecStream
EXEC_STREAM_STDERR: ExecStream

class WindowSize(_message.Message):
    __slots__ = ("rows", "cols")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ...) -> None: ...

class ExecOpen(_message.Message):
    __slots__ = ("task", "command", "env", "workdir", "tty", "stdin", "size", "task_id", "caller")
    TASK_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WORKDIR_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    task: str
    command: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.RepeatedScalarFieldContainer[str]
    workdir: str
    tty: bool
    stdin: bool
    size: WindowSize
    task_id: str
    caller: str
    def __init__(self, task: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., env: _Optional[_Iterable[str]] = ..., workdir: _Optional[str] = ..., tty: _Optional[bool] = ..., stdin: _Optional[bool] = ..., size: _Optional[_Union[WindowSize, _Mapping]] = ..., task_id: _Optional[str] = ..., caller: _Optional[str] = ...) -> None: ...

class ExecInput(_message.Message):
    __slots__ = ("exec_id", "open", "stdin", "stdin_eof", "resize", "output_ack", "hangup")
    EXEC_ID_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    STDIN_EOF_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ACK_FIELD_NUMBER: _ClassVar[int]
    HANGUP_FIELD_NUMBER: _ClassVar[int]
    exec_id: str
    open: ExecOpen
    stdin: bytes
    stdin_eof: bool
    resize: WindowSize
    output_ack: int
    hangup: bool
    def __init__(self, exec_id: _Optional[str] = ..., open: _Optional[_Union[ExecOpen, _Mapping]] = ..., stdin: _Optional[bytes] = ..., stdin_eof: _Optional[bool] = ..., resize: _Optional[_Union[WindowSize, _Mapping]] = ..., output_ack: _Optional[int] = ..., hangup: _Optional[bool] = ...) -> None: ...

class ExecOpened(_message.Message):
    __slots__ = ("task_id", "task_name", "node_id", "node")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task_name: str
    node_id: str
    node: str
    def __init__(self, task_id: _Optional[str] = ..., task_name: _Optional[str] = ..., node_id: _Optional[str] = ..., node: _Optional[str] = ...) -> None: ...

class ExecChunk(_message.Message):
    __slots__ = ("stream", "data")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    stream: ExecStream
    data: bytes
    def __init__(self, stream: _Optional[_Union[ExecStream, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ExecExit(_message.Message):
    __slots__ = ("exit_code", "error")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    error: str
    def __init__(self, exit_code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class ExecOutput(_message.Message):
    __slots__ = ("exec_id", "opened", "output", "stdin_ack", "exit")
    EXEC_ID_FIELD_NUMBER: _ClassVar[int]
    OPENED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    STDIN_ACK_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    exec_id: str
    opened: ExecOpened
    output: ExecChunk
    stdin_ack: int
    exit: ExecExit
    def __init__(self, exec_id: _Optional[str] = ..., opened: _Optional[_Union[ExecOpened, _Mapping]] = ..., output: _Optional[_Union[ExecChunk, _Mapping]] = ..., stdin_ack: _Optional[int] = ..., exit: _Optional[_Union[ExecExit, _Mapping]] = ...) -> None: ...

class CommitTaskRequest(_message.Message):
    __slots__ = ("task", "repository", "tag", "message", "changes", "author", "no_pause", "push", "registry_auth", "task_id", "caller", "request_id")
    TASK_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    NO_PAUSE_FIELD_NUMBER: _ClassVar[int]
    PUSH_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_AUTH_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    task: str
    repository: str
    tag: str
    message: str
    changes: _containers.RepeatedScalarFieldContainer[str]
    author: str
    no_pause: bool
    push: bool
    registry_auth: str
    task_id: str
    caller: str
    request_id: str
    def __init__(self, task: _Optional[str] = ..., repository: _Optional[str] = ..., tag: _Optional[str] = ..., message: _Optional[str] = ..., changes: _Optional[_Iterable[str]] = ..., author: _Optional[str] = ..., no_pause: _Optional[bool] = ..., push: _Optional[bool] = ..., registry_auth: _Optional[str] = ..., task_id: _Optional[str] = ..., caller: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CommitTaskResponse(_message.Message):
    __slots__ = ("image_id", "reference", "node_id", "node", "task_id", "push_error", "pushed", "error", "request_id")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PUSH_ERROR_FIELD_NUMBER: _ClassVar[int]
    PUSHED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    reference: str
    node_id: str
    node: str
    task_id: str
    push_error: str
    pushed: bool
    error: str
    request_id: str
    def __init__(self, image_id: _Optional[str] = ..., reference: _Optional[str] = ..., node_id: _Optional[str] = ..., node: _Optional[str] = ..., task_id: _Optional[str] = ..., push_error: _Optional[str] = ..., pushed: _Optional[bool] = ..., error: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...
