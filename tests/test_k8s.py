"""deploy/k8s, checked without a cluster.

Every manifest is parsed; the kustomizations are built with ``kubectl kustomize`` (or ``kustomize``)
and the result validated against the Kubernetes schemas (kubernetes-validate, kubeconform) where those
are installed. The cross-references are checked on the files themselves, always: images, the modules
the commands run, the IFCFLOW_* variables (each must be a setting), Service selectors, each IFC tool's
Deployment, Service and URL, probes, resources, grace periods, the shared volume and the autoscaling.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from contracts.operations import SERVICES
from service.http_limits import UVICORN_OPTIONS
from settings import DEFAULT_QUEUE, Settings
from store import keys
from tests.deploy_checks import defines, option

yaml = pytest.importorskip("yaml", reason="PyYAML reads the manifests (pip install pyyaml)")

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = sorted(p for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
APP_IMAGES = {"ifcflow": "docker/Dockerfile", "ifcflow-ifcservices": "docker/ifcservices.Dockerfile"}
APP_UID = 10001
WORKLOADS = ("Deployment", "StatefulSet")
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
SETTINGS_VARS = {f"IFCFLOW_{name.upper()}" for name in Settings.model_fields}


# --- reading the files ----------------------------------------------------------------------------


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _env_file(path: Path) -> dict[str, str]:
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=VALUE: {raw!r}"
            values[key.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return doc


@pytest.fixture(scope="module")
def resources(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    return [doc for name in kustomization["resources"] for doc in _docs(BASE / name)]


@pytest.fixture(scope="module")
def config(kustomization: dict[str, Any]) -> dict[str, str]:
    (generator,) = [g for g in kustomization["configMapGenerator"] if g["name"] == "ifcflow-config"]
    values: dict[str, str] = {}
    for env in generator["envs"]:
        values.update(_env_file(BASE / env))
    return values


def _find(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _workloads(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] in WORKLOADS]


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = _pod(workload)["containers"]
    assert len(containers) == 1, workload["metadata"]["name"]
    container: dict[str, Any] = containers[0]
    return container


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _quantity(value: str | int) -> float:
    """Kubernetes quantities: ``500m`` CPU, ``4Gi`` memory, plain numbers."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, scale in sorted(units.items(), key=lambda u: -len(u[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)


# --- every file parses and is listed --------------------------------------------------------------


def test_every_manifest_parses():
    files = sorted(K8S.rglob("*.yaml")) + sorted(K8S.rglob("*.yml"))
    assert len(files) >= 10
    for path in files:
        docs = _docs(path)
        assert docs, f"{path} is empty"
        if path.name == "prometheus.yml":
            assert "scrape_configs" in docs[0]
            continue
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind"), f"{path}: {doc}"
            if doc["kind"] != "Kustomization":
                assert doc["metadata"].get("name"), f"{path}: a {doc['kind']} without a name"


def _listed(directory: Path, kustomization: dict[str, Any]) -> set[Path]:
    names = [r for r in kustomization.get("resources", []) if not (directory / r).is_dir()]
    for generator in kustomization.get("configMapGenerator", []) + kustomization.get("secretGenerator", []):
        names += generator.get("envs", []) + [f.split("=")[-1] for f in generator.get("files", [])]
    names += [p["path"] for p in kustomization.get("patches", []) if "path" in p]
    return {(directory / n).resolve() for n in names}


@pytest.mark.parametrize("directory", [BASE, *OVERLAYS], ids=lambda p: p.name)
def test_the_kustomization_lists_every_file(directory: Path):
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    listed = _listed(directory, kust)
    examples = {p.resolve() for p in directory.rglob("*.example")}
    # A generator's env file is each user's own (secrets): the repository has its .example instead.
    for path in sorted(listed):
        example = path.with_name(path.name + ".example")
        assert path.is_file() or example in examples, f"{path.relative_to(K8S)} is listed but missing"
    kept = {p.resolve() for p in directory.rglob("*") if p.is_file() and ".example" not in p.name}
    kept -= {(directory / "kustomization.yaml").resolve(), (directory / ".gitignore").resolve()}
    kept = {p for p in kept if directory not in OVERLAYS or p.parent == directory.resolve()}
    private = {p for p in listed if not p.is_file() or p.with_name(p.name + ".example") in examples}
    assert not (kept - listed - private), f"not in the kustomization: {sorted(map(str, kept - listed))}"
    ignored = (directory / ".gitignore").read_text().split() if (directory / ".gitignore").is_file() else []
    for example in examples:
        if example.parent == directory.resolve():
            real = example.name.removesuffix(".example")
            assert real in ignored, f"{real} holds secrets: list it in {directory.name}/.gitignore"


# --- kustomize, and the Kubernetes schemas -----------------------------------------------------------


def _kustomize_command() -> list[str] | None:
    """``kubectl kustomize`` when its kustomize is v4 or later (``labels:``, ``patches:``), else ``kustomize``."""
    if shutil.which("kubectl"):
        done = subprocess.run(["kubectl", "version", "--client"], capture_output=True, text=True, timeout=60)
        found = re.search(r"Kustomize Version: v(\d+)", done.stdout)
        if found and int(found[1]) >= 4:
            return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


def _fill_examples(tree: Path) -> None:
    """Private env files from their examples, with made-up values, as a user would write them."""
    for example in tree.rglob("*.example"):
        lines = []
        for key in _env_file(example):
            lines.append(f"{key}=test-{key.lower().replace('_', '-')}")
        example.with_name(example.name.removesuffix(".example")).write_text("\n".join(lines) + "\n")


def build(directory: Path, tmp_path: Path) -> list[dict[str, Any]]:
    command = _kustomize_command()
    if command is None:
        pytest.skip("neither kustomize nor a kubectl with kustomize v4+ is installed")
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets.env", "redis.env"))
    _fill_examples(tree)
    target = tree / directory.relative_to(K8S)
    done = subprocess.run([*command, str(target)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0 and "unknown command" in done.stderr:
        pytest.skip(f"{' '.join(command)} is not available: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module", params=[BASE, *OVERLAYS], ids=lambda p: p.name)
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    directory: Path = request.param
    return build(directory, tmp_path_factory.mktemp(directory.name))


def test_kustomize_builds_namespaced_resources_with_resolved_names(built: list[dict[str, Any]]):
    generated = {r["metadata"]["name"] for r in built if r["kind"] in ("ConfigMap", "Secret")}
    for resource in built:
        if resource["kind"] != "Namespace":
            assert resource["metadata"].get("namespace") == "ifcflow", resource["metadata"]["name"]
    for workload in _workloads(built):
        pod = _pod(workload)
        refs = [e["valueFrom"]["secretKeyRef"]["name"] for c in pod["containers"] for e in c.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})]  # fmt: skip
        refs += [s["configMapRef"]["name"] for c in pod["containers"] for s in c.get("envFrom", [])]
        refs += [v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v]
        refs += [v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v]
        missing = [ref for ref in refs if ref not in generated]
        assert not missing, f"{workload['metadata']['name']} refers to {missing}, not generated"


def test_built_resources_match_the_kubernetes_schemas(built: list[dict[str, Any]]):
    validator = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    checked = 0
    for resource in built:
        if resource["apiVersion"].startswith("keda.sh/"):
            continue  # a custom resource: checked by test_workers_scale_on_queue_depth
        validator.validate(resource, "1.30.0", strict=True)
        checked += 1
    assert checked >= 15


def test_kubeconform_accepts_the_build(tmp_path: Path):
    binary = shutil.which("kubeconform")
    if binary is None:
        pytest.skip("kubeconform is not installed")
    out = tmp_path / "all.yaml"
    out.write_text(yaml.safe_dump_all(build(BASE, tmp_path)))
    done = subprocess.run([binary, "-strict", "-summary", "-ignore-missing-schemas", str(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    if done.returncode != 0 and re.search(r"dial tcp|no such host|could not find schema|timeout", done.stdout):
        pytest.skip(f"kubeconform could not fetch its schemas: {done.stdout.strip()[:200]}")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_catches_mistakes():
    validator = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    deployment = _docs(BASE / "gateway.yaml")[0]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/health"
    with pytest.raises(validator.ValidationError):
        validator.validate(broken, "1.30.0", strict=True)


# --- images and commands --------------------------------------------------------------------------


def test_images_are_the_projects_and_composes(resources: list[dict[str, Any]], kustomization: dict[str, Any]):
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    compose_images = {str(s["image"]).split(":")[0] for s in compose["services"].values() if "image" in s}
    compose_full = {str(s["image"]) for s in compose["services"].values() if "image" in s}
    for name, dockerfile in APP_IMAGES.items():
        assert (REPO / dockerfile).is_file()
        assert name in compose_images, f"compose.yaml builds no {name} image"
    assert {i["name"] for i in kustomization["images"]} == set(APP_IMAGES)
    for workload in _workloads(resources):
        image = _container(workload)["image"]
        name = image.split(":")[0]
        assert name in APP_IMAGES or image in compose_full, f"{workload['metadata']['name']}: image {image}"


def test_gateway_and_worker_commands(resources: list[dict[str, Any]]):
    gateway = _container(_find(resources, "Deployment", "gateway"))
    command = gateway["command"]
    assert command[:2] == ["uvicorn", "service.app:app"] and gateway["image"].startswith("ifcflow:")
    assert defines(*command[1].split(":"))
    assert option(command, "--host") == "0.0.0.0"
    assert {p["containerPort"] for p in gateway["ports"]} == {int(option(command, "--port"))}
    assert option(command, "--ws-per-message-deflate") == "false"
    assert "--ws" not in command, "uvicorn's own WebSocket protocol: no protocol class of ifcflow's"
    for name, value in zip(UVICORN_OPTIONS[::2], UVICORN_OPTIONS[1::2], strict=True):
        assert option(command, name) == value, f"gateway {name} {value} (service/http_limits.py)"

    worker = _container(_find(resources, "Deployment", "worker"))
    assert worker["command"] == ["python", "-m", "jobs"] and worker["image"].startswith("ifcflow:")
    assert defines("jobs", "WorkerSettings")
    for probe in ("startupProbe", "livenessProbe"):
        exec_command = worker[probe]["exec"]["command"]
        assert exec_command[:3] == ["python", "-m", "cli.worker_probe"], exec_command
        assert importlib.util.find_spec(exec_command[2]) is not None


def test_each_ifc_tool_has_a_deployment_a_service_and_its_url(
    resources: list[dict[str, Any]], config: dict[str, str]
):
    for tool in SERVICES:
        deployment = _find(resources, "Deployment", tool)
        container = _container(deployment)
        command = container["command"]
        assert command[:4] == ["python", "-m", "ifcservices", tool], command
        assert container["image"].startswith("ifcflow-ifcservices:")
        assert option(command, "--host") == "0.0.0.0"
        port = int(option(command, "--port"))
        service = _find(resources, "Service", tool)
        (service_port,) = service["spec"]["ports"]
        assert _target_port(container, service_port["targetPort"]) == port, tool
        url = urlsplit(config[f"IFCFLOW_{tool.upper()}_URL"])
        assert (url.scheme, url.hostname, url.port) == ("http", tool, service_port["port"]), tool
    assert importlib.util.find_spec("ifcservices.__main__") is not None


def _target_port(container: dict[str, Any], target: str | int) -> int:
    for port in container.get("ports", []):
        if target in (port.get("name"), port["containerPort"]):
            return int(port["containerPort"])
    raise AssertionError(f"{container['name']} has no port {target!r}")


def test_every_service_selects_a_workload_and_one_of_its_ports(resources: list[dict[str, Any]]):
    workloads = _workloads(resources)
    services = [r for r in resources if r["kind"] == "Service"]
    assert len(services) >= len(SERVICES) + 3
    for service in services:
        selector = service["spec"]["selector"]
        matched = [w for w in workloads if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matched) == 1, f"Service {service['metadata']['name']} selects {len(matched)} workloads"
        for port in service["spec"]["ports"]:
            _target_port(_container(matched[0]), port["targetPort"])
    for workload in workloads:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items(), workload["metadata"]["name"]


# --- settings, secrets, data --------------------------------------------------------------------


def test_every_ifcflow_variable_is_a_setting(resources: list[dict[str, Any]], config: dict[str, str]):
    used = set(config)
    for workload in _workloads(resources):
        for container in _pod(workload)["containers"]:
            used |= {e["name"] for e in container.get("env", [])}
    used = {name for name in used if name.startswith("IFCFLOW_")}
    text = "\n".join(p.read_text() for p in K8S.rglob("*") if p.is_file())
    mentioned = set(re.findall(r"\bIFCFLOW_[A-Z0-9_]+\b", text))
    assert {"IFCFLOW_REDIS_URL", "IFCFLOW_API_KEYS", "IFCFLOW_DATA_DIR"} <= used
    assert not used - SETTINGS_VARS, f"not settings: {sorted(used - SETTINGS_VARS)}"
    assert not mentioned - SETTINGS_VARS, f"comments name unknown settings: {sorted(mentioned - SETTINGS_VARS)}"
    Settings.model_validate({k.removeprefix("IFCFLOW_").lower(): v for k, v in config.items()})


def test_variable_references_are_defined_before_use(resources: list[dict[str, Any]], config: dict[str, str]):
    for workload in _workloads(resources):
        container = _container(workload)
        known = set(config) if container.get("envFrom") else set()
        texts = []
        for entry in container.get("env", []):
            for ref in VAR_REF.findall(str(entry.get("value", ""))):
                assert ref in known, f"{workload['metadata']['name']}: $({ref}) used before it is defined"
            known.add(entry["name"])
        texts += [str(a) for a in container.get("args", []) + container.get("command", [])]
        for ref in VAR_REF.findall(" ".join(texts)):
            assert ref in known, f"{workload['metadata']['name']}: $({ref}) in its command is not defined"


def test_secrets_come_from_the_private_env_file(resources: list[dict[str, Any]], kustomization: dict[str, Any]):
    (generator,) = kustomization["secretGenerator"]
    example = _env_file(BASE / (generator["envs"][0] + ".example"))
    assert all(value == "" for value in example.values()), "the example must not ship usable secrets"
    used = set()
    for workload in _workloads(resources):
        for entry in _container(workload).get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref["name"] == generator["name"]:
                used.add(ref["key"])
        for volume in _pod(workload).get("volumes", []):
            if volume.get("secret", {}).get("secretName") == generator["name"]:
                used |= {item["key"] for item in volume["secret"]["items"]}
    assert used == set(example), f"used {sorted(used)}, example has {sorted(example)}"
    gateway = _env(_container(_find(resources, "Deployment", "gateway")))
    assert "$(METRICS_API_KEY)" in gateway["IFCFLOW_API_KEYS"]["value"], "Prometheus's key opens /metrics"


def test_redis_keeps_jobs_and_notifies(resources: list[dict[str, Any]]):
    redis = _find(resources, "StatefulSet", "redis")
    container = _container(redis)
    args = container["args"]
    assert option(args, "--appendonly") == "yes"
    assert option(args, "--notify-keyspace-events") == "KEA"
    assert option(args, "--requirepass") == "$(REDIS_PASSWORD)"
    assert redis["spec"]["volumeClaimTemplates"], "the append-only file needs a volume of its own"
    assert container["volumeMounts"][0]["mountPath"] == "/data"
    service = _find(resources, "Service", "redis")
    (port,) = service["spec"]["ports"]
    for name in ("gateway", "worker"):
        url = _env(_container(_find(resources, "Deployment", name)))["IFCFLOW_REDIS_URL"]["value"]
        assert url == f"redis://:$(REDIS_PASSWORD)@redis:{port['port']}/0", (name, url)


def test_the_data_volume_is_shared(resources: list[dict[str, Any]], config: dict[str, str]):
    pvc = _find(resources, "PersistentVolumeClaim", "ifcflow-data")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    for name in ("gateway", "worker", *SERVICES):
        deployment = _find(resources, "Deployment", name)
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in _pod(deployment)["volumes"] if "persistentVolumeClaim" in v}  # fmt: skip
        mounts = {m["mountPath"]: m["name"] for m in _container(deployment)["volumeMounts"]}
        assert claims.get(mounts.get(config["IFCFLOW_DATA_DIR"], "")) == "ifcflow-data", name


def test_app_pods_run_as_the_images_user(resources: list[dict[str, Any]]):
    for dockerfile in APP_IMAGES.values():
        assert f"USER {APP_UID}:{APP_UID}" in (REPO / dockerfile).read_text()
    for workload in _workloads(resources):
        container = _container(workload)
        context = _pod(workload)["securityContext"]
        assert context["runAsNonRoot"] is True, workload["metadata"]["name"]
        if container["image"].split(":")[0] in APP_IMAGES:
            assert context["runAsUser"] == context["fsGroup"] == APP_UID, workload["metadata"]["name"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        if container["securityContext"].get("readOnlyRootFilesystem"):
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            if container["image"].split(":")[0] in APP_IMAGES:
                assert "/tmp" in mounts, f"{workload['metadata']['name']}: a read-only root needs a /tmp"


# --- probes, resources, shutdown ------------------------------------------------------------------


def test_probes(resources: list[dict[str, Any]]):
    from service.app import create_app

    app = create_app()
    gateway = _container(_find(resources, "Deployment", "gateway"))
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/health"
    liveness = gateway["livenessProbe"]["httpGet"]["path"]
    # Liveness must not depend on Redis (/health answers 503 without it) nor need an API key.
    from tests.test_hostile_input import flat_routes

    assert liveness != "/health" and liveness in {path for path, _ in flat_routes(app.routes)}, liveness
    for tool in SERVICES:
        container = _container(_find(resources, "Deployment", tool))
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["path"] == "/health", (tool, probe)
            assert _target_port(container, container[probe]["httpGet"]["port"]) == 8080
    for workload in _workloads(resources):
        container = _container(workload)
        assert "livenessProbe" in container, workload["metadata"]["name"]
        if workload["metadata"]["name"] != "worker":  # a worker takes no traffic: nothing to be ready for
            assert "readinessProbe" in container, workload["metadata"]["name"]


def test_every_container_has_requests_and_limits_and_clash_gets_the_most(resources: list[dict[str, Any]]):
    for workload in _workloads(resources):
        resources_ = _container(workload)["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= resources_[kind].keys(), (workload["metadata"]["name"], kind)
        assert _quantity(resources_["requests"]["memory"]) <= _quantity(resources_["limits"]["memory"])
        assert _quantity(resources_["requests"]["cpu"]) <= _quantity(resources_["limits"]["cpu"])

    def memory(tool: str) -> float:
        return _quantity(_container(_find(resources, "Deployment", tool))["resources"]["limits"]["memory"])

    assert all(memory("ifcclash") > memory(tool) for tool in SERVICES if tool != "ifcclash")


def test_service_concurrency_follows_the_cpu_limit(resources: list[dict[str, Any]]):
    for tool in SERVICES:
        container = _container(_find(resources, "Deployment", tool))
        concurrency = int(_env(container)["IFCFLOW_SERVICE_CONCURRENCY"]["value"])
        assert concurrency == max(1, int(_quantity(container["resources"]["limits"]["cpu"]))), tool


def test_grace_periods_outlast_the_shutdown_waits(resources: list[dict[str, Any]], config: dict[str, str]):
    shutdown_wait = int(config.get("IFCFLOW_SHUTDOWN_WAIT", Settings.model_fields["shutdown_wait"].default))
    worker = _find(resources, "Deployment", "worker")
    assert _pod(worker)["terminationGracePeriodSeconds"] > shutdown_wait
    gateway = _find(resources, "Deployment", "gateway")
    uvicorn_wait = int(option(_container(gateway)["command"], "--timeout-graceful-shutdown"))
    assert _pod(gateway)["terminationGracePeriodSeconds"] > uvicorn_wait


# --- autoscaling and metrics ----------------------------------------------------------------------


def test_workers_scale_on_queue_depth(resources: list[dict[str, Any]], kustomization: dict[str, Any]):
    scaled = _find(resources, "ScaledObject", "worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    worker = _find(resources, target.get("kind", "Deployment"), target["name"])
    assert worker["spec"]["template"]["spec"]["containers"][0]["command"] == ["python", "-m", "jobs"]
    assert "replicas" not in worker["spec"], "KEDA owns the worker count; a fixed one is reset on every apply"
    assert spec["minReplicaCount"] == 1, "no scale to zero by default"
    assert spec["maxReplicaCount"] > spec["minReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    assert "ifcflow_queue_jobs" in query and 'state="queued"' in query and f'queue="{DEFAULT_QUEUE}"' in query
    assert float(trigger["metadata"]["threshold"]) > 0
    assert '"ifcflow_queue_jobs"' in (REPO / "service" / "metrics.py").read_text(), "the gateway exports it"
    # KEDA runs in its own namespace: the address names the Prometheus Service and this namespace.
    address = urlsplit(trigger["metadata"]["serverAddress"])
    prometheus = _find(resources, "Service", "prometheus")
    assert address.hostname in (
        f"prometheus.{kustomization['namespace']}.svc",
        f"prometheus.{kustomization['namespace']}.svc.cluster.local",
    )
    assert address.port == prometheus["spec"]["ports"][0]["port"]


def test_prometheus_scrapes_the_gateway_with_its_key(resources: list[dict[str, Any]]):
    scrape = yaml.safe_load((BASE / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["authorization"]["type"] == "Bearer"
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    gateway = _find(resources, "Service", host)
    assert int(port) == gateway["spec"]["ports"][0]["port"]
    prometheus = _find(resources, "Deployment", "prometheus")
    container = _container(prometheus)
    volumes = {v["name"]: v for v in _pod(prometheus)["volumes"]}
    key_file = Path(job["authorization"]["credentials_file"])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(key_file.parent)]
    items = volumes[mount["name"]]["secret"]["items"]
    assert {"key": "METRICS_API_KEY", "path": key_file.name} in items
    config_flag = next(a for a in container["args"] if a.startswith("--config.file="))
    assert any(m["mountPath"] == config_flag.split("=", 1)[1] for m in container["volumeMounts"])


# --- the worker probe -----------------------------------------------------------------------------


def _probe(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IFCFLOW_REDIS_URL": redis_url, "IFCFLOW_WORKER_DEAD_AFTER": "15"}
    return subprocess.run([sys.executable, "-m", "cli.worker_probe", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.fixture
def heartbeats(sync_redis: Any) -> Iterator[Any]:
    yield sync_redis
    sync_redis.delete(keys.WORKERS)


def test_worker_probe_follows_this_pods_heartbeat(redis_url: str, heartbeats: Any):
    host = socket.gethostname()
    now = int(time.time() * 1000)
    assert _probe(redis_url).returncode == 1, "no heartbeat at all"
    heartbeats.zadd(keys.WORKERS, {"some-other-pod:1:abc": now})
    assert _probe(redis_url).returncode == 1, "another pod's heartbeat is not ours"
    heartbeats.zadd(keys.WORKERS, {f"{host}:7:def": now - 60_000})
    done = _probe(redis_url)
    assert done.returncode == 1 and "no heartbeat" in done.stderr, "a stale heartbeat"
    heartbeats.zadd(keys.WORKERS, {f"{host}:8:fed": now})
    done = _probe(redis_url)
    assert done.returncode == 0 and f"{host}:8:fed" in done.stdout
    assert _probe(redis_url, "--max-age", "0.001").returncode == 1


def test_worker_probe_does_not_fail_a_worker_for_a_redis_outage():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    done = _probe(url)
    assert done.returncode == 0 and "Redis did not answer" in done.stderr
    assert _probe(url, "--strict").returncode == 1


def test_worker_probe_passes_for_a_real_worker(worker: Any, redis_url: str):
    done = _probe(redis_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"alive: {socket.gethostname()}:")
