"""How an agent runs tasks: the runtime seam and its backends.

    base       the seam: Runtime / TaskController and the optional abilities
               (HealthReporting, LogReading), their errors and values
    common     what the backends share: the stop protocol, its timeouts,
               the task logger
    process/   tasks as host process groups
    docker/    tasks as containers on a Docker Engine
    fake       tasks as scripted records in memory (tests, benchmarks)

Backends never import each other (tests/unit/test_layers.py); the agent picks
one in ``shoal.agent.daemon.make_runtime``.
"""
