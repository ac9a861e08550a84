"""What ``ifcflow up`` runs: the options, the children's environment and their command lines."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cli.children import ChildSpec
from contracts.operations import SERVICES
from service.http_limits import UVICORN_OPTIONS

# The directory holding the project's packages (service/, jobs/, ...), whatever the current directory.
PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Stop order: the gateway first (no new work), then workers (finish or hand back jobs), then the
# services the workers were calling, and Redis last so everything before it could write its state.
TIER_GATEWAY, TIER_WORKERS, TIER_SERVICES, TIER_REDIS = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class UpOptions:
    workers: int = 1
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8000
    services_port: int = 8100
    api_key: str | None = None
    ready_timeout: float = 90.0
    stop_timeout: float = 60.0


def resolve_api_keys(flag: str | None, configured: list[str], anonymous: bool = False) -> tuple[list[str], str]:
    """``(keys, where the first came from)``: the flag, else IFCFLOW_API_KEYS (env or .env), else a new one.

    The first key is the one printed; keys already configured stay valid beside a ``--api-key``. No key at
    all only when open mode was asked for by name (IFCFLOW_ALLOW_ANONYMOUS=true) and none is configured.
    """
    if flag:
        return [flag, *(k for k in configured if k != flag)], "--api-key"
    if configured:
        return list(configured), "IFCFLOW_API_KEYS"
    if anonymous:
        return [], "IFCFLOW_ALLOW_ANONYMOUS=true"
    return [secrets.token_urlsafe(24)], "generated for this run"


def base_env(opts: UpOptions, api_keys: list[str], environ: Mapping[str, str], tty: bool) -> dict[str, str]:
    """The environment every child starts from."""
    env = dict(environ)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), path) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["IFCFLOW_DATA_DIR"] = str(opts.data_dir)
    if api_keys:
        env["IFCFLOW_API_KEYS"] = ",".join(api_keys)
    if tty and "IFCFLOW_LOG_JSON" not in env:
        env["IFCFLOW_LOG_JSON"] = "false"  # children write to a pipe, but a person reads it
    return env


def service_urls(services_port: int) -> dict[str, str]:
    """IFCFLOW_<TOOL>_URL of every tool served by one ``ifcservices all`` process."""
    return {f"IFCFLOW_{tool.upper()}_URL": f"http://127.0.0.1:{services_port}/{tool}" for tool in SERVICES}


_IFC_CHECK = """\
import importlib.util, sys
try:
    import ifcopenshell  # noqa
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}"); sys.exit(3)
sys.exit(0 if importlib.util.find_spec("ifcservices") else 4)
"""


def ifc_services_problem(env: Mapping[str, str]) -> str | None:
    """Why the IFC services cannot run here (checked in a child, with the children's environment)."""
    try:
        done = subprocess.run(  # noqa: S603
            [sys.executable, "-c", _IFC_CHECK], env=dict(env), capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        return "importing ifcopenshell took over 120s"
    if done.returncode == 3:
        reason = done.stdout.strip()
        return f"ifcopenshell cannot be imported ({reason}); install the [ifc] extra: pip install 'ifcflow[ifc]'"
    if done.returncode == 4:
        return "the ifcservices package is not installed next to ifcflow"
    if done.returncode != 0:
        return f"checking ifcopenshell failed: {(done.stderr or done.stdout).strip()[-300:]}"
    return None


def redis_spec(argv: tuple[str, ...], env: Mapping[str, str]) -> ChildSpec:
    return ChildSpec("redis", argv, env, stop_timeout=15.0, tier=TIER_REDIS)


def services_spec(opts: UpOptions, env: Mapping[str, str]) -> ChildSpec:
    argv = (sys.executable, "-m", "ifcservices", "all", "--host", "127.0.0.1", "--port", str(opts.services_port))
    return ChildSpec("services", argv, env, stop_timeout=15.0, tier=TIER_SERVICES)


def worker_specs(opts: UpOptions, env: Mapping[str, str]) -> list[ChildSpec]:
    argv = (sys.executable, "-m", "jobs")
    return [
        ChildSpec(f"worker-{i}", argv, env, stop_timeout=opts.stop_timeout, tier=TIER_WORKERS)
        for i in range(1, opts.workers + 1)
    ]


def gateway_spec(opts: UpOptions, env: Mapping[str, str]) -> ChildSpec:
    argv = (
        sys.executable, "-m", "uvicorn", "service.app:app",
        "--host", opts.host, "--port", str(opts.port),
        "--timeout-graceful-shutdown", "10",
        # Live-status messages are small; compressing them cost ~40 KB per socket and CPU per send.
        "--ws-per-message-deflate", "false",
        # The limits it keeps without a proxy: header deadline, connection cap, WebSocket message size.
        *UVICORN_OPTIONS,
    )  # fmt: skip
    return ChildSpec("gateway", argv, env, stop_timeout=15.0, tier=TIER_GATEWAY)
