"""The service side of child processes: start one per operation, relay its progress, detect crashes.

Children are forked from a fork server that has ifcopenshell and the tools already imported: starting
one costs milliseconds, and the service process itself (an event loop, maybe threads) is never forked.
Waiting happens through the event loop's readers on the child's pipe and exit sentinel, so a service
keeps answering while its children work, and never blocks on a child's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import multiprocessing
import multiprocessing.forkserver
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

import structlog

from ifcservices.child import ERROR_FILE, RESULT_FILE, ChildJob, child_main
from ifcservices.errors import Crashed, LimitExceeded, ServiceError
from ifcservices.limits import NEAR_MEMORY_LIMIT, cpu_message, memory_message
from ifcservices.staging import remove_listed
from ifcservices.usage import ChildUsage

ProgressCallback = Callable[[float, str], None]

log = structlog.get_logger("ifcservices.runner")

_CONTEXT = multiprocessing.get_context("forkserver")
_preload: set[str] = {"ifcservices.child", "ifcopenshell", "ifcopenshell.geom"}
_KILL_GRACE = 5.0
# How often the service samples a child's memory and CPU: often enough that the last sample before a
# limit kills it is close to the limit, cheap enough (two /proc reads) to do for every child.
_SAMPLE_SECONDS = 0.2
# A fork-server child's exit status is one message on its sentinel, read by whoever polls first; and
# Process.start() polls every earlier child. Unserialized, two threads could race for the message and
# one would see a bogus exit code 255 instead of the signal that killed the child.
_reap_lock = threading.Lock()


def _start(process: BaseProcess) -> None:
    with _reap_lock:
        process.start()


def _reap(process: BaseProcess, timeout: float | None = None) -> None:
    with _reap_lock:
        process.join(timeout)


def add_preload(modules: list[str]) -> None:
    """Modules the fork server imports once, before it starts (later additions load per child)."""
    _preload.update(modules)
    _CONTEXT.set_forkserver_preload(sorted(_preload))


def warm_up() -> None:
    """Start the fork server now (it imports ifcopenshell) rather than on the first request. Blocking."""
    _CONTEXT.set_forkserver_preload(sorted(_preload))
    multiprocessing.forkserver.ensure_running()


def _signal_name(number: int) -> str:
    with contextlib.suppress(ValueError):
        return signal.Signals(number).name
    return f"signal {number}"


class ProcessRunner:
    """Runs ``ChildJob``s in child processes and turns their end into a raw JSON result or an error."""

    def __init__(self) -> None:
        self._children: set[BaseProcess] = set()

    @property
    def running(self) -> int:
        return len(self._children)

    async def run(self, job: ChildJob, *, crash_subject: str, on_progress: ProgressCallback | None) -> bytes:
        """Run ``job``; return the tool's result as compact JSON bytes, or raise ``ServiceError``.

        ``crash_subject`` ("converting uploads/a.ifc") completes the message of a crash. Cancelling
        the call kills the child.
        """
        workdir = Path(tempfile.mkdtemp(prefix="ifcservices-job-"))
        job = dataclasses.replace(job, workdir=str(workdir))
        reader, writer = _CONTEXT.Pipe(duplex=False)
        process = _CONTEXT.Process(target=child_main, args=(job, writer), name=f"ifcservices-{job.operation}")
        process.daemon = True
        try:
            # Blocking only while the fork server forks (or starts, the first time): off the loop.
            starting = asyncio.ensure_future(asyncio.to_thread(_start, process))
            try:
                await asyncio.shield(starting)
            except asyncio.CancelledError:
                await starting  # the thread goes on starting the child: it must not outlive the request
                await asyncio.to_thread(self._kill, process, "request cancelled")
                raise
            self._children.add(process)
            writer.close()
            usage = ChildUsage(process.pid or 0)
            await self._wait(process, reader, on_progress, usage)
            return await asyncio.to_thread(self._outcome, process, workdir, crash_subject, job, usage)
        finally:
            self._children.discard(process)
            reader.close()
            with contextlib.suppress(OSError):
                writer.close()
            # A killed child (abort, timeout, crash) left its staging folders in output/: ours to remove.
            if removed := remove_listed(workdir, Path(job.data_dir)):
                log.info("staging removed", pid=process.pid, folders=[str(p) for p in removed])
            shutil.rmtree(workdir, ignore_errors=True)

    async def _wait(
        self, process: BaseProcess, reader: Connection, on_progress: ProgressCallback | None, usage: ChildUsage
    ) -> None:
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()
        pipe_fd = reader.fileno()
        sampler: asyncio.TimerHandle | None = None

        def sample() -> None:
            nonlocal sampler
            usage.sample()
            sampler = loop.call_later(_SAMPLE_SECONDS, sample)

        def drain() -> None:
            try:
                while reader.poll():
                    percent, phase = reader.recv()
                    if on_progress is not None:
                        on_progress(float(percent), str(phase))
            except (EOFError, OSError):
                loop.remove_reader(pipe_fd)

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pipe_fd, drain)
        loop.add_reader(process.sentinel, on_exit)
        sample()
        try:
            await exited
        except asyncio.CancelledError:
            await asyncio.to_thread(self._kill, process, "request cancelled")
            raise
        finally:
            if sampler is not None:
                sampler.cancel()
            loop.remove_reader(process.sentinel)
            loop.remove_reader(pipe_fd)
        drain()

    @staticmethod
    def _kill(process: BaseProcess, reason: str) -> None:
        if process.pid is None:
            return  # never started
        with _reap_lock:
            running = process.exitcode is None  # polls the sentinel: under the lock too
        if running:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            log.info("child killed", pid=process.pid, reason=reason)
        _reap(process, _KILL_GRACE)

    @staticmethod
    def _outcome(process: BaseProcess, workdir: Path, crash_subject: str, job: ChildJob, usage: ChildUsage) -> bytes:
        _reap(process)
        code = process.exitcode
        result, error = workdir / RESULT_FILE, workdir / ERROR_FILE
        # What each job took, for tuning the limits and the admission estimates to real models.
        log.info("child ended", pid=process.pid, operation=job.operation, exit_code=code,
                 cpu_seconds=round(usage.cpu_seconds, 2), grown_bytes=usage.grown)
        if code == 0 and result.exists():
            return result.read_bytes()
        if code == 0 and error.exists():
            raise _error_from_file(error)
        if (limit := _limit_hit(code, job, usage)) is not None:
            log.warning("child stopped by a limit", pid=process.pid, limit=limit, subject=crash_subject,
                        cpu_seconds=round(usage.cpu_seconds, 1), grown_bytes=usage.grown)
            raise LimitExceeded(f"stopped {crash_subject}: {limit}")
        if code is not None and code < 0:
            log.warning("child crashed", pid=process.pid, signal=_signal_name(-code), subject=crash_subject)
            raise Crashed(f"ifcopenshell crashed while {crash_subject}: signal {-code}")
        log.warning("child exited without a result", pid=process.pid, exit_code=code, subject=crash_subject)
        raise Crashed(f"ifcopenshell crashed while {crash_subject}: exit code {code}")

    def kill_all(self) -> None:
        """Kill every running child (service shutdown): their requests fail, nothing is left behind."""
        for process in list(self._children):
            self._kill(process, "service shutting down")


def _limit_hit(code: int | None, job: ChildJob, usage: ChildUsage) -> str | None:
    """Which limit ended a child that left no result, if one did (``None``: a plain crash)."""
    # SIGXCPU at the soft limit; SIGKILL at the hard one (a child that survived SIGXCPU) has the time too.
    out_of_cpu = code == -signal.SIGXCPU or (code == -signal.SIGKILL and usage.cpu_seconds >= job.cpu_limit)
    if job.cpu_limit > 0 and out_of_cpu:
        return cpu_message(job.cpu_limit)
    if job.memory_limit > 0 and usage.grown >= NEAR_MEMORY_LIMIT * job.memory_limit:
        return memory_message(job.memory_limit)
    return None


def _error_from_file(path: Path) -> ServiceError:
    data = json.loads(path.read_text(encoding="utf-8"))
    return ServiceError(str(data["message"]), error_type=str(data["type"]), status_code=int(data["status_code"]))
