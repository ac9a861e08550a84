"""One supervised child process: started in its own process group, its output pumped line by line."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cli.console import Console

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


@dataclass(frozen=True, slots=True)
class ChildSpec:
    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    # Seconds between SIGTERM and SIGKILL when stopping.
    stop_timeout: float = 10.0
    # Stop order: lower tiers stop first (gateway, then workers, then services, then Redis).
    tier: int = 0


def _child_setup(parent_pid: int) -> Callable[[], None]:
    """Runs in the child before exec: if this supervisor dies, even by SIGKILL, the child gets SIGTERM."""

    def setup() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent_pid:  # the supervisor died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return setup


class Child:
    """A child process and its restart history."""

    def __init__(self, spec: ChildSpec, console: Console) -> None:
        self.spec = spec
        self.console = console
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts: deque[float] = deque()
        self.restart_at: float | None = None
        self._pump: threading.Thread | None = None
        console.widen(spec.name)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        """Start (or restart) the process. Call from the main thread only: the death signal follows it."""
        self.restart_at = None
        self.proc = subprocess.Popen(  # noqa: S603 (argv built by us, no shell)
            self.spec.argv,
            env=dict(self.spec.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops children in order
            preexec_fn=_child_setup(os.getpid()),
        )
        self._pump = threading.Thread(target=self._copy_output, args=(self.proc,), name=f"pump-{self.name}")
        self._pump.daemon = True
        self._pump.start()

    def _copy_output(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for raw in proc.stdout:
                self.console.line(self.name, raw.decode("utf-8", "replace").rstrip("\r\n"))

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exited(self) -> int | None:
        """The exit code of a process that has ended, else None (also when never started)."""
        return self.proc.poll() if self.proc is not None else None

    def terminate(self) -> None:
        if self.running():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the process and everything left in its process group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        self.reap_group()

    def reap_group(self) -> None:
        """Kill what the process left behind in its group (pool processes, helpers)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def flush_output(self, timeout: float = 2.0) -> None:
        if self._pump is not None:
            self._pump.join(timeout)

    def note_restart(self, now: float, window: float) -> int:
        """Record a restart; the number of restarts within the last ``window`` seconds."""
        self.restarts.append(now)
        while self.restarts and self.restarts[0] < now - window:
            self.restarts.popleft()
        return len(self.restarts)


def wait_all(children: list[Child], timeout: float, force: threading.Event) -> list[Child]:
    """Wait for the children to exit; those still running after ``timeout`` (or on ``force``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not force.is_set():
        if not any(c.running() for c in children):
            break
        time.sleep(0.05)
    return [c for c in children if c.running()]
