"""Keeps the children running: restarts a crashed one with backoff, stops them all in order."""

from __future__ import annotations

import threading
import time
from itertools import groupby

from cli.children import Child, ChildSpec, wait_all
from cli.console import Console


class GaveUp(RuntimeError):
    """A child crashed more often than the restart budget allows."""


class Supervisor:
    """The children of one ``ifcflow up``; every method runs on the main thread."""

    def __init__(
        self,
        console: Console,
        force: threading.Event,
        max_restarts: int = 5,
        window: float = 60.0,
        backoff_max: float = 10.0,
    ) -> None:
        self.console = console
        self.force = force
        self.max_restarts = max_restarts
        self.window = window
        self.backoff_max = backoff_max
        self.children: list[Child] = []

    def start(self, spec: ChildSpec) -> Child:
        child = Child(spec, self.console)
        self.children.append(child)
        child.start()
        self.console.say(f"started {spec.name} (pid {child.pid})")
        return child

    def tick(self) -> None:
        """Notice crashed children and restart those whose backoff is over; raises GaveUp."""
        now = time.monotonic()
        for child in self.children:
            code = child.exited()
            if code is None:
                continue
            if child.restart_at is None:
                child.reap_group()
                child.flush_output(0.5)
                recent = child.note_restart(now, self.window)
                if recent > self.max_restarts:
                    raise GaveUp(
                        f"{child.name} exited (code {code}) {recent} times within {self.window:.0f}s; giving up"
                    )
                delay = min(self.backoff_max, 2.0 ** (recent - 1))
                child.restart_at = now + delay
                self.console.say(f"{child.name} exited with code {code}; restarting in {delay:.0f}s")
            elif now >= child.restart_at:
                child.start()
                self.console.say(f"restarted {child.name} (pid {child.pid})")

    def stop_all(self) -> None:
        """SIGTERM tier by tier (gateway, workers, services, Redis), SIGKILL what outlives its timeout."""
        by_tier = sorted(self.children, key=lambda c: c.spec.tier)
        for _, group in groupby(by_tier, key=lambda c: c.spec.tier):
            tier = list(group)
            running = [c for c in tier if c.running()]
            for child in running:
                child.terminate()
            if running:
                timeout = max(c.spec.stop_timeout for c in running)
                names = ", ".join(c.name for c in running)
                self.console.say(f"stopping {names} (up to {timeout:.0f}s)")
                for child in wait_all(running, timeout, self.force):
                    self.console.say(f"{child.name} did not stop in time; killing it")
            for child in tier:
                child.kill()
        for child in self.children:
            child.flush_output()

    def pids(self) -> list[int]:
        return [c.pid for c in self.children if c.pid is not None and c.running()]
