"""``python -m cli.worker_probe``: is this host's arq worker alive? For Kubernetes exec probes.

A worker's id starts with its host name, which in a pod is the pod's name, and the worker refreshes
its score in the ``ifcflow:workers`` sorted set every IFCFLOW_HEARTBEAT_INTERVAL seconds. The probe
passes when such an entry is younger than IFCFLOW_WORKER_DEAD_AFTER (when the other workers' reaper
would hand its jobs back). ``arq --check`` cannot tell pods apart: every worker of a queue shares one
health-check key, and arq refreshes it once an hour.

A Redis that does not answer fails nothing (the worker rides out a Redis restart by itself, and
restarting every worker would not bring Redis back) unless ``--strict``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Sequence

import redis

from settings import load_settings_or_exit
from store import keys

EXIT_ALIVE, EXIT_SILENT = 0, 1


def fresh_workers(client: redis.Redis, host: str, max_age_s: float) -> list[str]:
    """Ids of this host's workers whose last heartbeat is younger than ``max_age_s``."""
    since = int((time.time() - max_age_s) * 1000)
    members = client.zrangebyscore(keys.WORKERS, since, "+inf")
    ids = [m.decode() if isinstance(m, bytes) else str(m) for m in members]  # type: ignore[union-attr]
    return [worker_id for worker_id in ids if worker_id.startswith(f"{host}:")]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.worker_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=socket.gethostname(), help="worker host name (default: this host's)")
    parser.add_argument("--max-age", type=float, default=None, help="seconds (default: IFCFLOW_WORKER_DEAD_AFTER)")
    parser.add_argument("--strict", action="store_true", help="fail when Redis does not answer, too")
    args = parser.parse_args(argv)
    settings = load_settings_or_exit()
    max_age: float = args.max_age if args.max_age is not None else settings.worker_dead_after
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        alive = fresh_workers(client, args.host, max_age)
    except (redis.RedisError, OSError) as exc:
        print(f"worker probe: Redis did not answer ({type(exc).__name__}: {exc})", file=sys.stderr)
        return EXIT_SILENT if args.strict else EXIT_ALIVE
    finally:
        client.close()
    if alive:
        print(f"alive: {', '.join(alive)}")
        return EXIT_ALIVE
    print(f"worker probe: no heartbeat from {args.host} in the last {max_age:g}s", file=sys.stderr)
    return EXIT_SILENT


if __name__ == "__main__":
    sys.exit(main())
