"""What a docker client's update sends, set against the stored spec.

A docker client updates a service by sending back the spec it read, changed
(``docker service scale``, ``update``, a repeated ``docker stack deploy``).
Two things follow, both pure: what the Engine API has no field for would be
lost, so it is kept as stored (``keep_what_the_engine_cannot_say``); and a
template that means the same may not have the same bytes, which would roll
every task, so the stored one is kept (``keep_unchanged_template``).
"""

from __future__ import annotations

from typing import Any

from shoal import specs
from shoal.protos import objects_pb2 as pb


def keep_unchanged_template(spec: pb.ServiceSpec, current: pb.ServiceSpec) -> None:
    """Give spec the current task template when it asks for the same one.

    The ControlAPI rolls every task when the template's bytes change, and
    bytes can differ where meaning does not: an empty message set or not, a
    default left out (a docker client that sends back what it read, or only
    part of it). Compared with Swarm's defaults applied and empty messages
    dropped; a template that differs in meaning is left as it is.
    """
    wanted, have = clone_spec(spec), clone_spec(current)
    specs.apply_defaults(wanted)
    specs.apply_defaults(have)
    if _bare(wanted.task) == _bare(have.task) and list(wanted.ports) == list(have.ports):
        spec.task.CopyFrom(current.task)
        del spec.ports[:]
        spec.ports.extend(current.ports)


def keep_what_the_engine_cannot_say(spec: pb.ServiceSpec, current: pb.ServiceSpec) -> None:
    """Give spec what the Engine API has no field for, as stored: the ports
    the service exposes to discovery (``--expose``), and each published
    port's PROXY protocol. A docker client sends back what it read, which
    cannot hold them; without this an update would drop them."""
    del spec.expose[:]
    spec.expose.extend(current.expose)
    proxies = {_port_key(p): p.proxy_protocol for p in current.ports if p.proxy_protocol}
    for port in spec.ports:
        port.proxy_protocol = proxies.get(_port_key(port), port.proxy_protocol)


def _port_key(p: pb.PortConfig) -> tuple[str, int, int, str]:
    return (p.protocol or "tcp", p.target_port, p.published_port, p.publish_mode or "ingress")


def clone_spec(spec: pb.ServiceSpec) -> pb.ServiceSpec:
    out = pb.ServiceSpec()
    out.CopyFrom(spec)
    return out


def _bare(message: Any) -> bytes:
    """A message's bytes with every empty sub-message dropped."""
    copy = type(message)()
    copy.CopyFrom(message)
    _drop_empty(copy)
    return bytes(copy.SerializeToString(deterministic=True))


def _drop_empty(message: Any) -> None:
    for field, value in message.ListFields():
        if field.message_type is None or field.is_repeated:  # maps are repeated too
            continue
        _drop_empty(value)
        if value.ByteSize() == 0:
            message.ClearField(field.name)
