"""The swarm part of the Docker Engine HTTP API, served by a manager, so
that the unmodified ``docker`` CLI (``docker service``, ``docker node``...)
drives a shoal cluster.

A translation layer, not a second implementation: every request becomes
calls of the manager's own ControlAPI servicer, in process (``calls``), so
authorization (admin certificates only), validation, conflicts and limits
are the ControlAPI's. The modules:

- ``server``: the aiohttp listener in the manager's loop, the engine's
  middleware (``/vX.Y`` prefixes, headers, errors, 501 for the rest);
  ``tls``: mutual TLS following the manager's certificates;
- one module per resource: ``system`` (ping, version, info), ``services``,
  ``tasks``, ``nodes``, ``logs``, ``files`` (secrets and configs),
  ``networks`` (shoal's networks, and ``ingress``); ``handlers``: what
  they share;
- pure translation, unit-tested: ``spec_in`` / ``spec_out`` (ServiceSpec
  both ways, with a warning for every field shoal cannot honour),
  ``objects`` (services, tasks, nodes), ``updates`` (an update against the
  stored spec), ``filespecs`` (secrets, configs),
  ``netspecs`` (networks, and what a create may ask),
  ``fields`` (reading a request's JSON key by key), ``engine`` (version, info),
  ``filters``, ``framing`` (the multiplexed log stream), ``versions``,
  ``words``, ``wire``; ``errors`` (the one mapping of ControlAPI status
  codes to HTTP statuses).
"""

from __future__ import annotations

from shoal.manager.dockerapi.server import DockerAPI

__all__ = ["DockerAPI"]
