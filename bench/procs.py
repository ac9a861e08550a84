"""Child processes of a run: redis-server, the stand-in service, gateways and workers, each with a log file."""

from __future__ import annotations

import asyncio
import ctypes
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the bench dies, so a killed run leaves nothing behind."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class BenchError(RuntimeError):
    """The harness could not set something up; the message says what and where its log is."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_fd_limit(wanted: int = 65_536) -> int:
    """Lift this process's open-file limit (children inherit it) as far as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Proc:
    """A child process whose stdout and stderr go to ``log_path``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and redis-server
            args,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.name} exited with {self.proc.returncode}; log {self.log_path}:\n{self.tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


async def wait_until(
    check: Callable[[], Awaitable[bool]], what: str, within: float = 30.0, procs: tuple[Proc, ...] = ()
) -> None:
    """Await ``check()`` until true; fail early when one of ``procs`` dies."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for p in procs:
            p.check()
        if await check():
            return
        await asyncio.sleep(0.05)
    raise BenchError(f"timed out after {within:.0f}s waiting for {what}")


def redis_args(port: int, workdir: Path) -> list[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server not found on PATH (apt-get install redis-server)")
    return [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        "--maxclients", "20000",
        # What the gateway would switch on at start; set here so every scenario runs with the same flags.
        "--notify-keyspace-events", "Kg$hxz",
    ]


def python_args(*args: str) -> list[str]:
    return [sys.executable, *args]
