"""``ifcflow up``: Redis, the IFC services, N workers and the gateway as children of one process."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from types import FrameType

from cli import plan
from cli.console import Console
from cli.probes import free_port, http_get, port_is_free, redis_pings, url_host
from cli.redis_local import HOW_TO_GET_REDIS, adopt_old_workdir, find_redis_server, redis_argv, redis_workdir
from cli.supervisor import GaveUp, Supervisor
from contracts.operations import SERVICES
from service.http_limits import raise_open_file_limit
from settings import load_settings_or_exit

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stopped(Exception):
    """A stop signal arrived while starting up."""


class Up:
    def __init__(self, opts: plan.UpOptions, console: Console) -> None:
        self.opts = opts
        self.console = console
        self.stop = threading.Event()
        self.force = threading.Event()
        self.sup = Supervisor(console, self.force)
        self.services = False

    # Signals only set events: the handler may interrupt the main thread while it holds the console lock.
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            self.force.set()
        self.stop.set()

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
        try:
            return self._run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self) -> int:
        code = 0
        try:
            code = self._start_everything()
            if code == 0:
                self.console.say("running; press Ctrl-C to stop (twice to kill at once)")
                while not self.stop.wait(0.2):
                    self.sup.tick()
        except _Stopped:
            pass
        except GaveUp as exc:
            self.console.say(str(exc))
            code = 1
        finally:  # whatever happened, nothing started here outlives us
            if self.stop.is_set():
                self.console.say("stopping (Ctrl-C again to kill everything at once)")
            if self.sup.children:
                self.sup.stop_all()
                self.console.say("stopped")
        return code

    def _wait(self, ready: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self.stop.is_set():
                raise _Stopped
            self.sup.tick()
            if ready():
                return True
            if time.monotonic() >= deadline:
                return False
            self.stop.wait(interval)

    def _start_everything(self) -> int:
        opts = replace(self.opts, data_dir=self.opts.data_dir.expanduser().resolve())
        self.opts = opts
        for name in ("redis", "services", "gateway", f"worker-{opts.workers}"):
            self.console.widen(name)  # aligned prefixes from the first line on
        for what, host, port, flag in (
            ("gateway", opts.host, opts.port, "--port"),
            ("IFC services", "127.0.0.1", opts.services_port, "--services-port"),
        ):
            if not port_is_free(host, port):
                self.console.say(f"port {port} on {host} ({what}) is in use; choose another with {flag}")
                return 1
        # The settings the children will read (environment and .env): a bad value stops us here, clearly.
        settings = load_settings_or_exit()
        # Every child inherits it: the gateway's sockets, Redis's clients, the workers' service calls.
        raise_open_file_limit()
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        configured = [k.get_secret_value() for k in settings.api_keys]
        api_keys, key_source = plan.resolve_api_keys(opts.api_key, configured, settings.allow_anonymous)
        env = plan.base_env(opts, api_keys, os.environ, tty=sys.stdout.isatty())

        given = settings.redis_url if "redis_url" in settings.model_fields_set else None
        redis_url = self._start_redis(env, given)
        if redis_url is None:
            return 1
        env["IFCFLOW_REDIS_URL"] = redis_url

        problem = plan.ifc_services_problem(env)
        if problem is None:
            env.update(plan.service_urls(opts.services_port))
            self.sup.start(plan.services_spec(opts, env))
            self.services = True
            # Workers check the services as they start: let those checks find them up.
            if not self._wait(lambda: not self._services_down(), 60, interval=0.5):
                self.console.say(f"WARNING: IFC services not answering yet: {', '.join(self._services_down())}")
        else:
            self.console.say(f"WARNING: not starting the IFC services: {problem}")
            self.console.say("WARNING: jobs will fail until IFC services answer at IFCFLOW_<TOOL>_URL")

        for spec in plan.worker_specs(opts, env):
            self.sup.start(spec)
        self.sup.start(plan.gateway_spec(opts, env))

        missing = self._wait_ready()
        if missing:
            self.console.say(f"WARNING: not ready after {opts.ready_timeout:.0f}s: {'; '.join(missing)}")
        self._banner(api_keys[0] if api_keys else None, key_source, redis_url)
        return 0

    def _start_redis(self, env: dict[str, str], given: str | None) -> str | None:
        if given:
            shown = given if "@" not in given else f"{given.partition('://')[0]}://***@{given.rpartition('@')[2]}"
            self.console.say(f"using the Redis at IFCFLOW_REDIS_URL ({shown})")
            if not self._wait(lambda: redis_pings(given), 10):
                self.console.say("WARNING: that Redis does not answer yet; the gateway answers 503 until it does")
            return given
        binary = find_redis_server()
        if binary is None:
            for text in HOW_TO_GET_REDIS.splitlines():
                self.console.say(text)
            return None
        workdir = redis_workdir(self.opts.data_dir)
        if (moved := adopt_old_workdir(self.opts.data_dir, workdir)) is not None:
            self.console.say(moved)
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0"
        self.sup.start(plan.redis_spec(redis_argv(binary, port, workdir), env))
        if not self._wait(lambda: redis_pings(url), 20):
            self.console.say(f"redis-server did not answer on port {port} within 20s")
            return None
        return url

    def _wait_ready(self) -> list[str]:
        """Wait for the gateway, every worker and every service to answer; what is still missing."""
        base = f"http://{url_host(self.opts.host)}:{self.opts.port}"
        missing: list[str] = []

        def ready() -> bool:
            missing.clear()
            answer = http_get(f"{base}/health")
            if answer is None or answer[0] != 200:
                missing.append(f"gateway /health ({'no answer' if answer is None else f'HTTP {answer[0]}'})")
            else:
                body = answer[1] if isinstance(answer[1], dict) else {}
                alive = int(body.get("workers", {}).get("alive", 0))
                if alive < self.opts.workers:
                    missing.append(f"workers alive {alive}/{self.opts.workers}")
            if self.services and (down := self._services_down()):
                missing.append(f"services not answering /health: {', '.join(down)}")
            return not missing

        self._wait(ready, self.opts.ready_timeout, interval=0.5)
        return missing

    def _services_down(self) -> list[str]:
        base = f"http://127.0.0.1:{self.opts.services_port}"
        return [tool for tool in SERVICES if (a := http_get(f"{base}/{tool}/health")) is None or a[0] != 200]

    def _banner(self, api_key: str | None, key_source: str, redis_url: str) -> None:
        base = f"http://{url_host(self.opts.host)}:{self.opts.port}"
        services = f"http://127.0.0.1:{self.opts.services_port}/<tool>" if self.services else "not running"
        self.console.block(
            [
                "ifcflow is up",
                f"  API      {base}",
                f"  docs     {base}/docs",
                f"  health   {base}/health",
                f"  API key  {api_key}   ({key_source}; send it as the X-API-Key header)"
                if api_key
                else f"  API key  none: open to anyone who reaches {base} ({key_source})",
                f"  data     {self.opts.data_dir}",
                f"  redis    {redis_url if '@' not in redis_url else 'from IFCFLOW_REDIS_URL'}",
                f"  workers  {self.opts.workers}",
                f"  services {services}",
            ]
        )




def run_up(opts: plan.UpOptions) -> int:
    return Up(opts, Console()).run()
