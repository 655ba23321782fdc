"""The routing mesh on a node: published ports answered here, sent to tasks
anywhere in the cluster.

Data flow: the session hands the manager's ``MeshUpdate``s to ``Mesh.receive``;
``MeshTable`` (``table.py``) keeps the endpoint sets and says which published
ports changed; ``Mesh.run`` gathers changes for ``MESH.apply_delay`` and
gives them to the data path (``paths.py``: ``KernelPath`` in ``kernel.py``,
nftables; ``UserspacePath``, relays in ``relay.py``), logs each backend that
joins or leaves a port's rotation, and keeps the summary the session reports
to the manager (``report``: ``node inspect`` shows it).
"""

from shoal.agent.mesh.mesh import Mesh, make_path

__all__ = ["Mesh", "make_path"]
