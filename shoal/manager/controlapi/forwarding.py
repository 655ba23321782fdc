"""Exec and commit for a node whose session another manager holds.

The client's manager dials the one holding the session (with its own
certificate: the manager role may call the ControlAPI) and relays the same
messages, with the task already resolved and the original caller named in
them. The far manager relays to the agent as for a client of its own; this
end checks the far one against the exec's window as it checks a node.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from shoal import execflow, pki
from shoal.manager.execsource import Peers
from shoal.protos import control_pb2_grpc as cgrpc
from shoal.protos import taskio_pb2 as tpb

# What the client sees when the exec's exit code cannot be known (the
# connection to the command was lost), as ssh says it.
LOST = 255


def lost(why: str) -> tpb.ExecOutput:
    return tpb.ExecOutput(exit=tpb.ExecExit(exit_code=LOST, error=why))


def _channel(peers: Peers, addr: str) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(addr, peers.credentials(), options=pki.CHANNEL_OPTIONS)


class ForwardedExec:
    """An exec relayed through the manager at addr (an ExecChannel)."""

    def __init__(self, peers: Peers, addr: str) -> None:
        self.addr = addr
        self._channel = _channel(peers, addr)
        self._call = cgrpc.ControlStub(self._channel).Exec()
        self.output_credit = execflow.Credit()
        # grpc.aio takes one write at a time: they queue here, in order
        # (bounded by the client's stdin window).
        self._writes: asyncio.Queue[tpb.ExecInput] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._ended = False

    async def start(self, opened: tpb.ExecOpen) -> None:
        await self._call.write(tpb.ExecInput(open=opened))
        self._writer = asyncio.create_task(self._write_all())

    def send(self, msg: tpb.ExecInput) -> None:
        if msg.WhichOneof("msg") == "output_ack":
            self.output_credit.release(msg.output_ack)
        self._writes.put_nowait(msg)

    async def _write_all(self) -> None:
        with contextlib.suppress(grpc.RpcError, grpc.aio.UsageError):
            while True:
                await self._call.write(await self._writes.get())

    async def next(self) -> tpb.ExecOutput:
        while not self._ended:
            try:
                msg = await self._call.read()
            except grpc.RpcError as err:
                self._ended = True
                return lost(f"relaying through the manager at {self.addr} failed: {_details(err)}")
            if msg is grpc.aio.EOF:
                self._ended = True
                return lost(f"the manager at {self.addr} ended the exec without its exit code")
            kind = msg.WhichOneof("msg")
            if kind == "opened":
                continue  # this end tells its own client
            if kind == "output":
                self.output_credit.charge(len(msg.output.data))
            elif kind == "exit":
                self._ended = True
            out: tpb.ExecOutput = msg
            return out
        return lost(f"the manager at {self.addr} ended the exec")

    async def close(self, hangup: bool) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if hangup and not self._ended:
            # Cancelling the call ends the far manager's relay, which hangs
            # the command up.
            self._call.cancel()
        await self._channel.close()


async def forward_commit(peers: Peers, addr: str, request: tpb.CommitTaskRequest) -> tpb.CommitTaskResponse:
    """A commit asked of the manager at addr; its answer (grpc.RpcError
    as that manager's refusal)."""
    async with _channel(peers, addr) as channel:
        reply: tpb.CommitTaskResponse = await cgrpc.ControlStub(channel).CommitTask(request)
        return reply


def _details(err: grpc.RpcError) -> str:
    details = getattr(err, "details", None)
    text = details() if callable(details) else ""
    return str(text or err)
