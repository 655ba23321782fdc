"""shoal: a multi-host container orchestrator in the spirit of Docker swarm mode."""

import os as _os

# gRPC's C core logs every refused TLS handshake at info level (a joining
# agent's CA fetch is one of them). Keep its own log to errors unless the
# user asks otherwise; this must happen before grpc is first imported.
_os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
