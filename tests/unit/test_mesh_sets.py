"""Endpoint sets, on both sides: the manager's table (which tasks are
backends, what a diff and a full set say) and the agent's (which ports
change, and how). A small stand-in for the view holds the objects."""

from __future__ import annotations

from dataclasses import dataclass, field

from shoal.agent.mesh.table import MeshTable
from shoal.manager.dispatcher import endpoints
from shoal.manager.dispatcher.endpoints import EndpointTable
from shoal.manager.store import Event
from shoal.protos import dispatcher_pb2 as dpb
from shoal.protos import objects_pb2 as pb


@dataclass
class FakeView:
    """The parts of the view the table reads."""

    services: dict[str, pb.Service] = field(default_factory=dict)
    nodes: dict[str, pb.Node] = field(default_factory=dict)
    tasks_by_node: dict[str, dict[str, pb.Task]] = field(default_factory=dict)
    tasks_by_service: dict[str, dict[str, pb.Task]] = field(default_factory=dict)

    def put_task(self, task: pb.Task) -> Event:
        old = self.tasks_by_service.get(task.service_id, {}).get(task.meta.id)
        self.tasks_by_node.setdefault(task.node_id, {})[task.meta.id] = task
        self.tasks_by_service.setdefault(task.service_id, {})[task.meta.id] = task
        return Event("tasks", task.meta.id, old, task)


def service(service_id: str = "s1", port: int = 8080, mode: str = "ingress") -> pb.Service:
    svc = pb.Service(meta=pb.Meta(id=service_id))
    svc.spec.name = "web"
    svc.spec.ports.add(protocol="tcp", target_port=80, published_port=port, publish_mode=mode)
    return svc


def node(node_id: str, addr: str, state: int = pb.NODE_STATE_READY) -> pb.Node:
    n = pb.Node(meta=pb.Meta(id=node_id))
    n.status.state = state  # type: ignore[assignment]
    n.status.addr = addr
    return n


def task(
    task_id: str, node_id: str, slot: int, state: int = pb.TASK_STATE_RUNNING, host_port: int = 20001
) -> pb.Task:
    t = pb.Task(meta=pb.Meta(id=task_id), service_id="s1", node_id=node_id, slot=slot)
    t.desired_state = pb.TASK_STATE_RUNNING
    t.status.state = state  # type: ignore[assignment]
    t.status.endpoints.add(protocol="tcp", target_port=80, host_port=host_port)
    return t


def test_running_tasks_on_ready_nodes_are_backends_and_leave_when_they_stop_or_their_node_dies() -> None:
    view = FakeView(
        services={"s1": service()}, nodes={"n1": node("n1", "10.0.0.1"), "n2": node("n2", "10.0.0.2")}
    )
    table = EndpointTable(view)  # type: ignore[arg-type]
    table.load()
    table.apply(view.put_task(task("t1", "n1", 1)))
    table.apply(view.put_task(task("t2", "n2", 2)))
    table.apply(view.put_task(task("t3", "n2", 3, state=pb.TASK_STATE_STARTING)))  # not healthy yet
    (msg,) = table.take()
    assert [s.service_id for s in msg.mesh.services] == ["s1"]
    assert {(b.task_id, b.addr) for b in msg.mesh.backends} == {("t1", "10.0.0.1"), ("t2", "10.0.0.2")}
    assert table.take() == [], "nothing changed since"

    stopped = task("t1", "n1", 1)
    stopped.desired_state = pb.TASK_STATE_SHUTDOWN
    table.apply(view.put_task(stopped))
    old = view.nodes["n2"]
    view.nodes["n2"] = node("n2", "10.0.0.2", pb.NODE_STATE_DOWN)
    table.apply(Event("nodes", "n2", old, view.nodes["n2"]))
    (msg,) = table.take()
    assert sorted(msg.mesh.removed_backends) == ["t1", "t2"] and not msg.mesh.backends

    down, view.nodes["n2"] = view.nodes["n2"], node("n2", "10.0.0.2")
    table.apply(Event("nodes", "n2", down, view.nodes["n2"]))
    (msg,) = table.take()
    assert [b.task_id for b in msg.mesh.backends] == ["t2"], "back with its node"

    full = table.full()
    assert full[-1].mesh.full and [b.task_id for m in full for b in m.mesh.backends] == ["t2"]
    removed = view.services.pop("s1")
    table.apply(Event("services", "s1", removed, None))
    (msg,) = table.take()
    assert list(msg.mesh.removed_services) == ["s1"] and list(msg.mesh.removed_backends) == ["t2"]


def test_a_large_set_goes_in_pieces_and_the_agent_applies_it_whole() -> None:
    diff = endpoints.Diff(services={"s1": endpoints.mesh_service(service())})  # type: ignore[dict-item]
    for i in range(5000):
        diff.backends[f"t{i:05d}"] = dpb.MeshBackend(
            task_id=f"t{i:05d}" + "x" * 300, service_id="s1", addr="10.0.0.1",
            endpoints=[pb.TaskEndpoint(protocol="tcp", target_port=80, host_port=20000 + i)], slot=i + 1,
        )  # fmt: skip
    msgs = endpoints.messages(diff, full=True)
    assert len(msgs) > 1 and [m.mesh.more for m in msgs] == [True] * (len(msgs) - 1) + [False]
    assert all(m.ByteSize() <= endpoints.CHUNK_BYTES + 1024 for m in msgs)
    agent = MeshTable()
    for m in msgs[:-1]:
        agent.apply(m.mesh)
        assert agent.take_changes() == {}, "nothing is applied before the last piece"
    agent.apply(msgs[-1].mesh)
    changes = agent.take_changes()
    assert len(changes[("tcp", 8080)].backends) == 5000  # type: ignore[union-attr]


def test_the_agent_table_says_which_ports_changed() -> None:
    agent = MeshTable()
    svc = endpoints.mesh_service(service())
    assert svc is not None
    agent.apply(dpb.MeshUpdate(full=True, services=[svc]))
    (change,) = agent.take_changes().values()
    assert change is not None and change.backends == () and change.target == 80
    b1 = dpb.MeshBackend(task_id="t1", service_id="s1", addr="10.0.0.1", slot=1)
    b1.endpoints.add(protocol="tcp", target_port=80, host_port=20001)
    odd = dpb.MeshBackend(task_id="t2", service_id="s1", addr="10.0.0.2", slot=2)
    odd.endpoints.add(protocol="tcp", target_port=9999, host_port=20002)  # not this port's target
    agent.apply(dpb.MeshUpdate(backends=[b1, odd]))
    (change,) = agent.take_changes().values()
    assert change is not None
    assert [(b.addr, b.port, b.name) for b in change.backends] == [("10.0.0.1", 20001, "web.1")]
    agent.apply(dpb.MeshUpdate(backends=[b1]))
    assert agent.take_changes() == {}, "the same backend again changes nothing"
    # The port moves to another service in one update: one change, the new set.
    moved = endpoints.mesh_service(service("s2"))
    assert moved is not None
    agent.apply(dpb.MeshUpdate(services=[moved], removed_services=["s1"]))
    changes = agent.take_changes()
    assert list(changes) == [("tcp", 8080)] and changes[("tcp", 8080)].service_id == "s2"  # type: ignore[union-attr]
    agent.apply(dpb.MeshUpdate(full=True))
    assert agent.take_changes() == {("tcp", 8080): None}, "a full set without it: no longer published"


def test_a_backend_that_comes_or_goes_changes_only_its_own_entry() -> None:
    agent = MeshTable()
    svc = endpoints.mesh_service(service())
    assert svc is not None
    many = []
    for i in range(2000):
        b = dpb.MeshBackend(task_id=f"t{i}", service_id="s1", addr="10.0.0.1", slot=i + 1)
        b.endpoints.add(protocol="tcp", target_port=80, host_port=20000 + i)
        many.append(b)
    agent.apply(dpb.MeshUpdate(full=True, services=[svc], backends=many))
    (ps,) = agent.take_changes().values()
    assert ps is not None and len(ps.joined) == 2000
    ps.reported()
    extra = dpb.MeshBackend(task_id="new", service_id="s1", addr="10.0.0.2", slot=9999)
    extra.endpoints.add(protocol="tcp", target_port=80, host_port=30000)
    agent.apply(dpb.MeshUpdate(backends=[extra], removed_backends=["t7"]))
    (same,) = agent.take_changes().values()
    assert same is ps, "the port's set is kept and changed in place"
    assert [b.task_id for b in ps.joined] == ["new"] and [b.task_id for b in ps.left] == ["t7"]
    assert len(ps.backends) == 2000
    # The service itself changes (a second port): the first keeps its set.
    svc.ports.add(protocol="udp", target_port=80, published_port=53, publish_mode="ingress")
    ps.reported()
    agent.apply(dpb.MeshUpdate(services=[svc]))
    changes = agent.take_changes()
    assert set(changes) == {("udp", 53)}, "only the new port changed"
