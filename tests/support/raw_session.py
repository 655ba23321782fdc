"""A Dispatcher session opened by hand, as a misbehaving node would: real
gRPC over real TLS, with whatever certificate and messages a test gives."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc

from shoal import pki
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import dispatcher_pb2_grpc as dgrpc
from shoal.protos import objects_pb2 as pb


@dataclass
class SessionOutcome:
    received: list[dpb.ManagerMessage] = field(default_factory=list)
    code: grpc.StatusCode | None = None  # None: still open when we left
    details: str = ""


def register(
    hostname: str, labels: dict[str, str] | None = None, addr: str = "127.0.0.99"
) -> dpb.AgentMessage:
    msg = dpb.AgentMessage()
    desc = msg.register.description
    desc.hostname = hostname
    desc.runtime = "process"
    desc.platform.os, desc.platform.arch = "linux", "amd64"
    desc.resources.nano_cpus = 10**9
    desc.resources.memory_bytes = 1 << 30
    desc.labels.update(labels or {})
    msg.register.addr = addr
    return msg


def status(task_id: str, state: int, message: str = "") -> dpb.AgentMessage:
    msg = dpb.AgentMessage()
    msg.statuses.updates.add(task_id=task_id, status=pb.TaskStatus(state=state, message=message))  # type: ignore[arg-type]
    return msg


async def run_session(
    addr: str, files: pki.TLSFiles, messages: list[dpb.AgentMessage], linger: float = 2.0
) -> SessionOutcome:
    """Open a session with files' certificate, send messages (a pause between
    each), and read what comes back for linger seconds after the last one."""
    outcome = SessionOutcome()
    done = asyncio.Event()

    async def outgoing() -> AsyncIterator[dpb.AgentMessage]:
        for msg in messages:
            yield msg
            await asyncio.sleep(0.3)
        await done.wait()

    creds = pki.channel_credentials(files.ca_pem, files.cert_pem, files.key_pem)
    async with grpc.aio.secure_channel(addr, creds, options=pki.CHANNEL_OPTIONS) as channel:
        call = dgrpc.DispatcherStub(channel).Session(outgoing())

        async def read() -> None:
            async for msg in call:
                outcome.received.append(msg)

        reader = asyncio.ensure_future(read())
        try:
            await asyncio.wait_for(asyncio.shield(reader), 0.3 * len(messages) + linger)
        except TimeoutError:
            pass
        except grpc.aio.AioRpcError as err:
            outcome.code, outcome.details = err.code(), err.details() or ""
        finally:
            done.set()
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await reader
    return outcome


def session(
    addr: str, files: pki.TLSFiles, messages: list[dpb.AgentMessage], linger: float = 2.0
) -> SessionOutcome:
    return asyncio.run(run_session(addr, files, messages, linger))
