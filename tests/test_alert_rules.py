"""Prometheus scrape config and alert rules: checked and unit-tested with promtool when it is installed."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO

PROMETHEUS = REPO / "docker" / "prometheus"
RULES = PROMETHEUS / "rules" / "ifcflow.yml"
REQUIRED_ALERTS = {
    "IfcflowBacklogGrowing",
    "IfcflowNoWorkerForQueue",
    "IfcflowServiceUnhealthy",
    "IfcflowHighFailureRatio",
    "IfcflowQueueWaitHigh",
    "IfcflowServiceSaturated",
    "IfcflowRedisOutOfMemory",
    "IfcflowRedisEvicting",
}


def test_rules_cover_every_required_alert_and_use_only_metrics_the_gateway_exports():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    assert REQUIRED_ALERTS <= set(rules)
    exported = {"ifcflow_queue_jobs", "ifcflow_workers_live", "ifcflow_service_up", "ifcflow_jobs_total",
                "ifcflow_job_queue_wait_seconds_bucket", "up", "ifcflow_service_slots", "ifcflow_service_slots_in_use",
                "ifcflow_redis_writable", "ifcflow_redis_evicted_keys_total", "ifcflow_redis_memory_used_bytes",
                "ifcflow_redis_memory_max_bytes"}
    for name, rule in rules.items():
        used = set(re.findall(r"\bifcflow_[a-z_]+", rule["expr"]))
        assert used <= exported, (name, used - exported)
        assert rule["labels"]["severity"] in {"warning", "critical"}


def test_scrape_config_sends_the_api_key_to_metrics():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["credentials_file"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_checks_and_unit_tests_the_rules():
    subprocess.run(["promtool", "check", "rules", str(RULES)], check=True, capture_output=True)
    result = subprocess.run(["promtool", "test", "rules", "ifcflow.test.yml"], cwd=PROMETHEUS / "tests",
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
