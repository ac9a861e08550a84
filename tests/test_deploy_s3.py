"""The S3 deployments, checked without a Docker engine or a cluster.

Compose: ``compose.s3.yaml`` over ``compose.yaml`` (``--profile s3``), merged here by the Compose
specification's rules for the keys it uses, then checked: the bundled S3 server and the bucket job,
and every ifcflow container on ``s3://`` with an endpoint, credentials only from required variables and
no shared data volume. Kubernetes: ``deploy/k8s/overlays/s3`` built with kustomize (as tests/test_k8s.py
builds every overlay, which also validates it against the Kubernetes schemas): no PersistentVolumeClaim,
a sized scratch emptyDir in every ifcflow pod, settings from the ConfigMap and keys from the Secret.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from contracts.operations import SERVICES
from settings import Settings
from tests.deploy_checks import option
from tests.test_compose import (
    APP_SERVICES,
    COMPOSE_FILE,
    INTERPOLATION,
    REPO,
    SCHEMA_FILE,
    _command,
    _environment,
    _seconds,
)
from tests.test_k8s import K8S, _env_file, _quantity, build

yaml = pytest.importorskip("yaml", reason="PyYAML reads the deployment files (pip install pyyaml)")

S3_COMPOSE_FILE = REPO / "compose.s3.yaml"
S3_OVERLAY = K8S / "overlays" / "s3"
PROFILE = "s3"
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# A pinned tag: a version number, never `latest` nor a bare major version.
PINNED = re.compile(r"^[a-z0-9./_-]+:v?\d+\.\d+(\.\d+)*$")
REQUIRED_VAR = re.compile(r"\$\{[A-Z_][A-Z0-9_]*:\?[^}]+\}")


# --- Compose: reading and merging ---------------------------------------------------------------------


def _resolve(text: str) -> str:
    """Interpolation as Compose does it with nothing set: defaults taken, required ones made up."""
    return INTERPOLATION.sub(lambda m: m[3] if m[2] in ("-", ":-") else f"test-{m[1].lower()}", text)


def _volume(entry: str | dict[str, Any]) -> dict[str, Any]:
    """A service volume in the long syntax (Compose normalizes the short one before merging)."""
    if isinstance(entry, dict):
        return entry
    source, _, rest = _resolve(entry).partition(":")
    target, _, mode = rest.partition(":")
    kind = "bind" if source.startswith((".", "/", "~")) else "volume"
    return {"type": kind, "source": source, "target": target, "read_only": mode == "ro"}


def _merge(base: Any, override: Any, path: tuple[str, ...] = ()) -> Any:
    """``docker compose -f base -f override`` for what compose.s3.yaml uses: mappings merge key by key
    (environment, depends_on), a service's volumes merge by their target path, any other value is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value, (*path, key)) if key in base else value
        return merged
    if len(path) == 3 and path[0] == "services" and path[2] == "volumes":
        by_target = {_volume(v)["target"]: _volume(v) for v in base}
        by_target.update({_volume(v)["target"]: _volume(v) for v in override})
        return list(by_target.values())
    return override


def _normalized(doc: dict[str, Any]) -> dict[str, Any]:
    for service in doc.get("services", {}).values():
        if "environment" in service:
            service["environment"] = _environment(service)
    return doc


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return _normalized(doc)


@pytest.fixture(scope="module")
def override() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(S3_COMPOSE_FILE.read_text())
    return _normalized(doc)


@pytest.fixture(scope="module")
def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = _merge(base, override)
    return doc


@pytest.fixture(scope="module")
def s3_services(merged: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services `--profile s3` starts: every service without a profile, and those of the s3 profile."""
    return {n: s for n, s in merged["services"].items() if PROFILE in s.get("profiles", [PROFILE])}


def _storage(env: dict[str, str]) -> tuple[str, str]:
    url = urlsplit(env["IFCFLOW_STORAGE_URL"])
    assert url.scheme == "s3" and url.netloc, env["IFCFLOW_STORAGE_URL"]
    return url.netloc, url.path.strip("/")


# --- Compose: the files --------------------------------------------------------------------------------


def test_the_override_and_the_merge_match_the_compose_specification(override: dict[str, Any], merged: dict[str, Any]):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema validates the files against the spec")
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    for name, doc in (("compose.s3.yaml", yaml.safe_load(S3_COMPOSE_FILE.read_text())), ("merged", merged)):
        errors = [f"{e.json_path}: {e.message[:300]}" for e in validator.iter_errors(doc)]
        assert not errors, f"{name}:\n" + "\n".join(errors)


def test_the_override_changes_only_what_the_merge_here_models(base: dict[str, Any], override: dict[str, Any]):
    # The merge above models mappings and volumes; a command or a list overridden here would need more.
    for name, service in override["services"].items():
        if name in base["services"]:
            assert set(service) <= {"environment", "volumes", "depends_on"}, (name, sorted(service))
    assert set(APP_SERVICES) <= override["services"].keys(), "every ifcflow container is configured for S3"


def test_plain_compose_up_stays_on_the_local_backend(base: dict[str, Any]):
    text = COMPOSE_FILE.read_text()
    assert "IFCFLOW_STORAGE_URL" not in text and "AWS_" not in text
    for name in APP_SERVICES:
        assert "data:/data" in base["services"][name]["volumes"], name
        assert not base["services"][name]["environment"].get("IFCFLOW_STORAGE_URL"), name
    assert not any(PROFILE in s.get("profiles", []) for s in base["services"].values())


# --- Compose: the S3 server and the bucket -------------------------------------------------------------


def _s3_server(merged: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    endpoint = urlsplit(_environment(merged["services"]["gateway"])["IFCFLOW_S3_ENDPOINT_URL"])
    assert endpoint.hostname in merged["services"], f"the endpoint {endpoint.geturl()} is no service here"
    return str(endpoint.hostname), merged["services"][str(endpoint.hostname)]


def test_the_s3_profile_runs_a_pinned_s3_server_with_a_healthcheck_and_a_volume(merged: dict[str, Any]):
    name, server = _s3_server(merged)
    port = urlsplit(_environment(merged["services"]["gateway"])["IFCFLOW_S3_ENDPOINT_URL"]).port
    assert server["profiles"] == [PROFILE]
    assert PINNED.match(server["image"]), f"{name}: pin the image: {server['image']}"
    command = _command(server)
    assert command[0] == "server" and "-s3" in command, "SeaweedFS's `server -s3`: master, volume, filer, S3"
    assert f"-s3.port={port}" in command and "-ip.bind=0.0.0.0" in command
    check = server["healthcheck"]
    assert check["test"][0] == "CMD" and f"http://127.0.0.1:{port}/healthz" in check["test"]
    assert _seconds(check["interval"]) <= 10, "the ifcflow containers wait for it: check it often"
    (volume,) = [_volume(v) for v in server["volumes"]]
    assert volume["type"] == "volume" and volume["source"] in merged["volumes"], "the objects need a volume"
    # Published on the host's loopback only, for the presigned URLs the gateway hands out.
    assert all(str(p).startswith("127.0.0.1:") for p in server.get("ports", [])), server.get("ports")
    gateway = _environment(merged["services"]["gateway"])
    assert gateway["IFCFLOW_S3_PUBLIC_ENDPOINT_URL"].startswith("${S3_PUBLIC_URL:-http://localhost:")
    assert server["restart"] == "unless-stopped"
    assert {"cpus", "memory"} <= server["deploy"]["resources"]["limits"].keys()


def test_the_bucket_job_creates_the_bucket_the_containers_use(merged: dict[str, Any]):
    name, _ = _s3_server(merged)
    init = merged["services"]["s3-init"]
    assert init["profiles"] == [PROFILE] and PINNED.match(init["image"]), init["image"]
    assert init["depends_on"] == {name: {"condition": "service_healthy"}}
    assert init["restart"] == "no", "a one-shot: its dependents wait for it to exit 0"
    env = _environment(init)
    assert env["AWS_ENDPOINT_URL"] == _environment(merged["services"]["gateway"])["IFCFLOW_S3_ENDPOINT_URL"]
    script = " ".join(_command(init))
    bucket, _ = _storage(_environment(merged["services"]["gateway"]))
    assert set(re.findall(r"--bucket (\S+)", script)) == {bucket}
    assert "create-bucket" in script and "head-bucket" in script, "idempotent: a second `up` finds the bucket"
    assert "$$" not in json.dumps(init["entrypoint"]) and "exit 1" in script


# --- Compose: the ifcflow containers on S3 -------------------------------------------------------------


@pytest.mark.parametrize("name", APP_SERVICES)
def test_each_ifcflow_container_uses_the_bucket(name: str, merged: dict[str, Any]):
    service = merged["services"][name]
    env = _environment(service)
    bucket, prefix = _storage(env)
    assert bucket and prefix, "a prefix keeps ifcflow's keys apart from anything else in the bucket"
    endpoint = urlsplit(env["IFCFLOW_S3_ENDPOINT_URL"])
    assert endpoint.scheme == "http" and endpoint.port, env["IFCFLOW_S3_ENDPOINT_URL"]
    assert service["depends_on"]["s3-init"] == {"condition": "service_completed_successfully"}
    settings = Settings.model_validate(
        {k.removeprefix("IFCFLOW_").lower(): _resolve(v) for k, v in env.items() if k.startswith("IFCFLOW_")}
    )
    assert settings.storage_location() == env["IFCFLOW_STORAGE_URL"]
    assert settings.s3_endpoint_url == env["IFCFLOW_S3_ENDPOINT_URL"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_credentials_come_only_from_required_variables(name: str, merged: dict[str, Any]):
    env = _environment(merged["services"][name])
    for key in CREDENTIALS:
        assert REQUIRED_VAR.fullmatch(env[key]), f"{name}: {key} must be ${{VAR:?message}}, got {env[key]!r}"


def test_no_secret_has_a_default_anywhere_in_the_override():
    text = S3_COMPOSE_FILE.read_text()
    uses = [m for m in INTERPOLATION.findall(text) if m[0] in ("S3_ACCESS_KEY", "S3_SECRET_KEY")]
    assert {m[0] for m in uses} == {"S3_ACCESS_KEY", "S3_SECRET_KEY"}
    for var, operator, message in uses:
        assert operator == ":?" and message.strip(), f"${{{var}}} must be ${{{var}:?message}}"
    doc = yaml.safe_load(text)
    for name, service in doc["services"].items():
        for key, value in _environment({"environment": service.get("environment", {})}).items():
            if key in CREDENTIALS:
                assert REQUIRED_VAR.fullmatch(value), (name, key)
    fields = {f"IFCFLOW_{field.upper()}" for field in Settings.model_fields}
    assert not set(re.findall(r"\bIFCFLOW_[A-Z0-9_]+\b", text)) - fields, "every IFCFLOW_* is a setting"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_no_shared_data_volume_only_the_containers_own_scratch(name: str, merged: dict[str, Any]):
    service = merged["services"][name]
    volumes = [_volume(v) for v in service["volumes"]]
    own = [v["target"] for v in volumes if v["type"] == "volume" and not v.get("source")]
    for volume in volumes:
        # A named volume is shared by every container that mounts it; a bind only for read-only input.
        assert volume["type"] != "volume" or not volume.get("source"), f"{name} mounts {volume['source']}"
        assert volume["type"] != "bind" or volume.get("read_only"), f"{name}: writable bind {volume}"
    env = _environment(service)
    scratch = Path(env["IFCFLOW_SCRATCH_DIR"])
    assert any(scratch.is_relative_to(target) for target in own), f"{name}: scratch {scratch} not on {own}"
    assert env["IFCFLOW_DATA_DIR"] in own, f"{name}: the data directory is the container's own"


def test_the_pipeline_still_holds_together_under_the_profile(s3_services: dict[str, dict[str, Any]]):
    for name, service in s3_services.items():
        assert "container_name" not in service, f"{name}: fixed names block --scale"
        for target, spec in service.get("depends_on", {}).items():
            assert target in s3_services, f"{name} depends on {target}, which --profile s3 does not start"
            if target == "s3-init":
                assert spec == {"condition": "service_completed_successfully"}
            else:
                assert spec == {"condition": "service_healthy"} and "healthcheck" in s3_services[target]
    worker = s3_services["worker"]
    assert option(_command(worker), "-m") == "jobs"
    for tool in SERVICES:
        assert _environment(worker)[f"IFCFLOW_{tool.upper()}_URL"] == f"http://{tool}:8080"
    recipes = [_volume(v) for v in s3_services["ifcpatch"]["volumes"] if _volume(v)["target"] == "/recipes"]
    assert recipes and recipes[0]["read_only"], "ifcpatch keeps its recipes mount"


# --- Kubernetes: the s3 overlay ---------------------------------------------------------------------------


IFCFLOW_DEPLOYMENTS = ("gateway", "worker", *SERVICES)


@pytest.fixture(scope="module")
def built_s3(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return build(S3_OVERLAY, tmp_path_factory.mktemp("s3"))


def _by_name(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def _config(resources: list[dict[str, Any]], deployment: dict[str, Any]) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    maps = _by_name(resources, "ConfigMap")
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        values.update(maps[source["configMapRef"]["name"]]["data"])
    return values


def test_the_overlay_has_no_shared_volume(built_s3: list[dict[str, Any]]):
    assert not [r for r in built_s3 if r["kind"] == "PersistentVolumeClaim"]
    assert "ReadWriteMany" not in yaml.safe_dump_all(built_s3)
    for workload in built_s3:
        if workload["kind"] in ("Deployment", "StatefulSet"):
            pod = workload["spec"]["template"]["spec"]
            claims = [v for v in pod.get("volumes", []) if "persistentVolumeClaim" in v]
            assert not claims, f"{workload['metadata']['name']} mounts {claims}"
    assert set(IFCFLOW_DEPLOYMENTS) <= _by_name(built_s3, "Deployment").keys()


@pytest.mark.parametrize("name", IFCFLOW_DEPLOYMENTS)
def test_every_ifcflow_pod_has_a_sized_scratch_emptydir(name: str, built_s3: list[dict[str, Any]]):
    deployment = _by_name(built_s3, "Deployment")[name]
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    config = _config(built_s3, deployment)
    for setting in ("IFCFLOW_SCRATCH_DIR", "IFCFLOW_DATA_DIR"):
        volume = volumes[mounts[config[setting]]]
        assert set(volume) == {"name", "emptyDir"} and volume["emptyDir"].get("sizeLimit"), (name, setting, volume)
    scratch = _quantity(volumes[mounts[config["IFCFLOW_SCRATCH_DIR"]]]["emptyDir"]["sizeLimit"])
    if name in SERVICES:
        # Past its sizeLimit a pod is evicted: the input cache must leave room for a job's outputs.
        assert scratch >= 2 * int(config["IFCFLOW_INPUT_CACHE_BYTES"]), (name, scratch)
    assert config["IFCFLOW_SCRATCH_DIR"] != config["IFCFLOW_DATA_DIR"]


@pytest.mark.parametrize("name", IFCFLOW_DEPLOYMENTS)
def test_storage_settings_from_the_configmap_and_keys_from_the_secret(name: str, built_s3: list[dict[str, Any]]):
    deployment = _by_name(built_s3, "Deployment")[name]
    config = _config(built_s3, deployment)
    assert config["IFCFLOW_STORAGE_URL"].startswith("s3://") and "IFCFLOW_S3_ENDPOINT_URL" in config
    assert not {k for k in config if k.startswith("AWS_")}, "credentials belong in the Secret"
    settings = Settings.model_validate({k.removeprefix("IFCFLOW_").lower(): v for k, v in config.items()})
    assert settings.storage_location() == config["IFCFLOW_STORAGE_URL"]
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    secrets = _by_name(built_s3, "Secret")
    example = _env_file(S3_OVERLAY / "s3-credentials.env.example")
    assert set(example) == set(CREDENTIALS) and not any(example.values()), "the example ships no keys"
    for key in CREDENTIALS:
        assert "value" not in env[key], f"{name}: {key} as a literal"
        ref = env[key]["valueFrom"]["secretKeyRef"]
        assert ref["name"].startswith("ifcflow-s3-") and ref["key"] == key, (name, ref)
        assert key in secrets[ref["name"]]["data"]


def test_only_the_ifcflow_pods_get_the_keys(built_s3: list[dict[str, Any]]):
    for name, workload in {**_by_name(built_s3, "Deployment"), **_by_name(built_s3, "StatefulSet")}.items():
        if name not in IFCFLOW_DEPLOYMENTS:
            env = {e["name"] for c in workload["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
            assert not env & set(CREDENTIALS), f"{name} needs no S3 keys"


def test_the_overlay_selects_the_pods_it_means_without_kustomize():
    """The patches' label selectors, read from the files: they match the ifcflow Deployments of the base
    and nothing else (the bundled Prometheus and Redis keep theirs), and the deleted claim is the base's."""
    kust = yaml.safe_load((S3_OVERLAY / "kustomization.yaml").read_text())
    base = [d for p in sorted((K8S / "base").rglob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    deployments = {d["metadata"]["name"]: d["metadata"].get("labels", {}) for d in base if d["kind"] == "Deployment"}
    claims = {d["metadata"]["name"] for d in base if d["kind"] == "PersistentVolumeClaim"}
    deleted = [yaml.safe_load(p["patch"]) for p in kust["patches"] if "$patch: delete" in p.get("patch", "")]
    assert {d["metadata"]["name"] for d in deleted if d["kind"] == "PersistentVolumeClaim"} == claims
    selected: set[str] = set()
    for patch in kust["patches"]:
        if "target" in patch:
            matched = {n for n, labels in deployments.items() if _selects(patch["target"]["labelSelector"], labels)}
            assert matched <= set(IFCFLOW_DEPLOYMENTS), matched
            selected |= matched
    assert selected == set(IFCFLOW_DEPLOYMENTS)


def _selects(selector: str, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector of ``key=value`` and ``key in (a,b)`` terms."""
    for term in re.split(r",(?![^(]*\))", selector):
        if " in " in term:
            key, _, rest = term.partition(" in ")
            allowed = {v.strip() for v in rest.strip().strip("()").split(",")}
        else:
            key, _, value = term.partition("=")
            allowed = {value.strip()}
        if labels.get(key.strip()) not in allowed:
            return False
    return True
