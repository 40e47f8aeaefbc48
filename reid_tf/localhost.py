"""Several workers on this one machine (MultiWorkerMirroredStrategy over localhost): free ports and
each worker's TF_CONFIG, to try a multi-worker run before a cluster, and for tests and benchmarks."""

from __future__ import annotations

import json
import os
import socket


def free_ports(n: int) -> list[int]:
    """n ports nobody listens on now."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def worker_envs(workers: int, **extra: str) -> list[dict]:
    """The environment of each of `workers` localhost workers: TF_CONFIG naming them all."""
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(workers)]}
    return [{**os.environ, **extra,
             "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
            for index in range(workers)]
