"""Settings: defaults, env parsing, and one clear line for a bad value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from contracts.operations import Operation
from settings import DEFAULT_QUEUE, Settings
from tests.conftest import ARQ_WORKER_COMMAND, REPO, WORKER_COMMAND


def test_defaults_match_the_documented_ones(monkeypatch):
    for k in list(os.environ):
        if k.startswith("IFCFLOW_"):
            monkeypatch.delenv(k)
    s = Settings(_env_file=None)
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.timeout_for(Operation.ifcclash) == 7200
    assert all(s.timeout_for(op) == 3600 for op in Operation if op is not Operation.ifcclash)
    assert s.max_jobs >= 100
    assert {s.queue_for(op) for op in Operation} == {DEFAULT_QUEUE}
    assert s.operation_url(Operation.calculate_qtos) == "http://localhost:7007/calculate-qtos"


def test_env_vars_set_keys_urls_timeouts_and_queues(monkeypatch):
    monkeypatch.setenv("IFCFLOW_API_KEYS", " a , b,,c ")
    monkeypatch.setenv("IFCFLOW_IFCCLASH_URL", "http://clash:9000/")
    monkeypatch.setenv("IFCFLOW_JOB_TIMEOUTS", '{"ifcclash": 10, "ifcconvert": 20}')
    monkeypatch.setenv("IFCFLOW_QUEUES", '{"ifcclash": "clash"}')
    s = Settings(_env_file=None)
    assert s.api_key_values() == [b"a", b"b", b"c"]
    assert s.operation_url(Operation.ifcclash) == "http://clash:9000/ifcclash"
    assert s.timeout_for(Operation.ifcconvert) == 20
    assert s.queue_for(Operation.ifcclash) == "clash" and s.queue_for(Operation.ifcdiff) == DEFAULT_QUEUE
    assert "a" not in repr(s.api_keys)  # secrets never printed


GATEWAY = [sys.executable, "-m", "uvicorn", "service.app:app", "--port", "1"]
# The worker's entry point and, when that is not arq's CLI, arq's CLI too: both read the same settings.
COMMANDS = {"worker": WORKER_COMMAND, "gateway": GATEWAY}
if WORKER_COMMAND != ARQ_WORKER_COMMAND:
    COMMANDS["arq-worker"] = ARQ_WORKER_COMMAND


@pytest.mark.parametrize("command", list(COMMANDS.values()), ids=list(COMMANDS))
@pytest.mark.parametrize(
    "var,value",
    [("IFCFLOW_MAX_JOBS", "lots"), ("IFCFLOW_IFCCONVERT_URL", "not a url"), ("IFCFLOW_JOB_TIMEOUTS", '{"nope": 1}')],
)
def test_a_bad_value_stops_the_process_with_one_line_naming_the_variable(command, var, value):
    env = {**os.environ, var: value, "IFCFLOW_REDIS_URL": "redis://127.0.0.1:1/0", "IFCFLOW_API_KEYS": "k"}
    proc = subprocess.run(command, env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert var in lines[0] and "Traceback" not in proc.stderr


def test_the_gateway_refuses_to_start_without_api_keys_unless_open_mode_is_asked_for(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IFCFLOW_")}
    env["PYTHONPATH"] = str(REPO)
    code = "from settings import load_settings_or_exit as l; l(require_api_keys=True); print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "IFCFLOW_API_KEYS" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", code], env={**env, "IFCFLOW_ALLOW_ANONYMOUS": "true"},
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("command", ["worker", "gateway"])
def test_a_redis_that_evicts_keys_stops_gateway_and_worker_with_one_line_unless_allowed(
    command, tmp_path
):
    from tests.conftest import free_port, start_redis

    port = free_port()
    server = start_redis(port, tmp_path, "--maxmemory-policy", "allkeys-lru")
    try:
        env = {**os.environ, "IFCFLOW_REDIS_URL": f"redis://127.0.0.1:{port}/0", "IFCFLOW_API_KEYS": "k",
               "IFCFLOW_DATA_DIR": str(tmp_path / "data")}
        argv = WORKER_COMMAND if command == "worker" else [
            sys.executable, "-m", "uvicorn", "service.app:app", "--port", str(free_port())]
        done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr[-2000:]
        lines = [line for line in done.stderr.splitlines() if line.startswith("ifcflow:")]
        assert len(lines) == 1 and "maxmemory-policy allkeys-lru" in lines[0] and "NOEVICTION" not in lines[0]
        assert "IFCFLOW_REDIS_ALLOW_EVICTION" in lines[0] and "Traceback" not in done.stderr
        if command == "gateway":
            return
        # Allowed by name: the worker runs, and says what it risks.
        allowed = subprocess.Popen(WORKER_COMMAND, env={**env, "IFCFLOW_REDIS_ALLOW_EVICTION": "true",
                                                        "IFCFLOW_LOG_JSON": "true"},
                                   cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert allowed.stdout is not None
            for line in allowed.stdout:
                if '"redis.evicting"' in line:
                    break
            assert allowed.poll() is None
        finally:
            allowed.terminate()
            allowed.wait(15)
    finally:
        server.terminate()
        server.wait(10)
