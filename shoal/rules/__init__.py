"""The rules a request must follow, shared by the manager (which enforces
them on every call) and clients (which check a whole stack before sending
any of it): bounds (``limits``), placement constraints (``constraints``),
service specs (``validate``) and the refusal they raise (``errors``).

Pure functions over protobuf messages: nothing here imports the manager,
the agent or the CLI.
"""
