"""compose.yaml and the Dockerfiles, checked without a Docker engine.

compose.yaml is validated against the Compose specification's JSON schema (vendored in tests/data/),
then its cross-references are checked: Dockerfiles, the modules its commands run, the IFCFLOW_* variables
it sets (each must be a setting), the service URLs, health checks, scaling and secrets.
"""

from __future__ import annotations

import ast
import glob
import importlib.util
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from contracts.operations import SERVICES
from service.http_limits import UVICORN_OPTIONS
from settings import Settings
from tests.deploy_checks import defines, option

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read compose.yaml (pip install pyyaml)")

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "compose.yaml"
SCHEMA_FILE = Path(__file__).parent / "data" / "compose-spec.json"
DATA_PATH = "/data"
APP_SERVICES = ("gateway", "worker", *SERVICES)
# ${VAR}, ${VAR:-default}, ${VAR:?message}, ... as Compose interpolates them.
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    assert isinstance(command, list), f"use the list form for commands: {command!r}"
    return [str(part) for part in command]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _seconds(duration: str) -> float:
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a Compose duration: {duration!r}"
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}
    return sum(float(n) * scale[u] for n, u in parts)


def _bytes(size: str) -> int:
    match = re.fullmatch(r"(\d+)([bkmg]?)b?", size.lower())
    assert match, f"not a Compose byte size: {size!r}"
    power = "bkmg".index(match[2] or "b")
    return int(match[1]) << (10 * power)


# --- the Compose specification ------------------------------------------------------------------------


def test_compose_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema validates compose.yaml against the spec")
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft201909Validator
    validator.check_schema(schema)
    errors = [f"{e.json_path}: {e.message[:300]}" for e in validator(schema).iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_every_service_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert {"redis", "gateway", "worker", "prometheus", *SERVICES} <= services.keys()


# --- images and commands ------------------------------------------------------------------------------


def test_every_dockerfile_exists(services: dict[str, dict[str, Any]]) -> None:
    built = {name: s["build"] for name, s in services.items() if "build" in s}
    assert set(APP_SERVICES) <= built.keys()
    for name, build in built.items():
        context = (REPO / build["context"]).resolve()
        assert context == REPO, f"{name}: the build context is the repository root"
        assert (context / build["dockerfile"]).is_file(), f"{name}: {build['dockerfile']} not found"
        assert "image" in services[name], f"{name}: name the image so gateway and worker share one build"
    assert built["gateway"] == built["worker"] and services["gateway"]["image"] == services["worker"]["image"]
    for tool in SERVICES:
        assert built[tool]["dockerfile"] == "docker/ifcservices.Dockerfile"
        assert services[tool]["image"] == services[SERVICES[0]]["image"]


def test_gateway_command_serves_the_app(services: dict[str, dict[str, Any]]) -> None:
    command = _command(services["gateway"])
    assert command[:2] == ["uvicorn", "service.app:app"]
    module, attr = command[1].split(":")
    assert defines(module, attr), f"{module} defines no {attr}"
    assert option(command, "--host") == "0.0.0.0" and option(command, "--port") == "8000"
    assert services["gateway"]["ports"] == ["${GATEWAY_PORT:-8000}:8000"]
    assert option(command, "--ws-per-message-deflate") == "false"
    assert "--ws" not in command, "uvicorn's own WebSocket protocol: no protocol class of ifcflow's"
    for name, value in zip(UVICORN_OPTIONS[::2], UVICORN_OPTIONS[1::2], strict=True):
        assert option(command, name) == value, f"gateway {name} {value} (service/http_limits.py)"


def test_worker_command_runs_the_worker(services: dict[str, dict[str, Any]]) -> None:
    assert _command(services["worker"]) == ["python", "-m", "jobs"]
    assert defines("jobs", "WorkerSettings")
    assert _command({"command": services["worker"]["healthcheck"]["test"]})[1:] == [
        "arq",
        "--check",
        "jobs.WorkerSettings",
    ]


def test_each_ifc_service_has_a_container_and_a_url(services: dict[str, dict[str, Any]]) -> None:
    urls = {f"IFCFLOW_{tool.upper()}_URL" for tool in SERVICES}
    for tool in SERVICES:
        command = _command(services[tool])
        assert command[:4] == ["python", "-m", "ifcservices", tool], command
        port = option(command, "--port")
        assert option(command, "--host") == "0.0.0.0"
        assert f"127.0.0.1:{port}/health" in " ".join(services[tool]["healthcheck"]["test"])
        assert "ports" not in services[tool], f"{tool} is internal: no host port"
        for client in ("gateway", "worker"):
            env = _environment(services[client])
            assert env[f"IFCFLOW_{tool.upper()}_URL"] == f"http://{tool}:{port}", (client, tool)
    for client in ("gateway", "worker"):
        assert urls <= _environment(services[client]).keys()


def test_ifcservices_module_exists() -> None:
    if importlib.util.find_spec("ifcservices") is None:
        pytest.skip("the ifcservices package has not landed yet")
    main = importlib.util.find_spec("ifcservices.__main__")
    assert main is not None, "python -m ifcservices needs ifcservices/__main__.py"


# --- settings, secrets, data --------------------------------------------------------------------------


def test_every_ifcflow_variable_is_a_setting(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    fields = {f"IFCFLOW_{name.upper()}" for name in Settings.model_fields}
    used = {k for s in services.values() for k in _environment(s) if k.startswith("IFCFLOW_")}
    interpolated = {m[0] for m in INTERPOLATION.findall(COMPOSE_FILE.read_text()) if m[0].startswith("IFCFLOW_")}
    assert used, "compose.yaml sets no IFCFLOW_* variable"
    assert not (used | interpolated) - fields, f"unknown settings: {sorted((used | interpolated) - fields)}"
    for name in APP_SERVICES:
        assert _environment(services[name]).get("IFCFLOW_DATA_DIR") == DATA_PATH, name


def test_secrets_are_required(services: dict[str, dict[str, Any]]) -> None:
    text = COMPOSE_FILE.read_text()
    for var in ("REDIS_PASSWORD", "IFCFLOW_API_KEYS"):
        uses = [m for m in INTERPOLATION.findall(text) if m[0] == var]
        assert uses, f"{var} is never used"
        for _, operator, message in uses:
            assert operator == ":?" and message.strip(), f"${{{var}}} must be ${{{var}:?message}}"
    gateway_keys = _environment(services["gateway"])["IFCFLOW_API_KEYS"]
    assert gateway_keys.startswith("${IFCFLOW_API_KEYS:?")
    for name in ("gateway", "worker"):
        url = _environment(services[name])["IFCFLOW_REDIS_URL"]
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD:\?[^}]+\}@redis:6379/0", url), url
    for name, service in services.items():
        if name not in ("gateway", "redis"):
            assert "IFCFLOW_API_KEYS" not in _environment(service), f"{name} needs no API keys"


def test_redis_is_configured_for_arq(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    command = _command(redis)
    assert option(command, "--appendonly") == "yes"
    assert option(command, "--notify-keyspace-events") == "KEA"
    assert option(command, "--requirepass").startswith("${REDIS_PASSWORD:?")
    assert any(str(v).endswith(":/data") for v in redis["volumes"]), "the append-only file needs a volume"
    assert "ports" not in redis, "Redis stays on the compose network"


def test_shared_data_volume(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    assert "data" in compose["volumes"]
    for name in APP_SERVICES:
        assert f"data:{DATA_PATH}" in services[name]["volumes"], name


# --- running: scaling, health, restarts, limits, shutdown ---------------------------------------------


def test_worker_scales(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert not any("container_name" in s for s in services.values()), "fixed names block --scale"


def test_depends_on_waits_for_health(services: dict[str, dict[str, Any]]) -> None:
    seen = 0
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: use the long depends_on form with a condition"
        for target, spec in depends.items():
            seen += 1
            assert target in services, f"{name} depends on unknown {target}"
            assert spec == {"condition": "service_healthy"}, (name, target, spec)
            assert "healthcheck" in services[target], f"{target} has no healthcheck for {name} to wait on"
    assert seen
    assert "redis" in services["gateway"]["depends_on"] and "redis" in services["worker"]["depends_on"]


def test_healthchecks_and_restart_policies(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), name
        check = service.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
        for key in ("interval", "timeout"):
            _seconds(check[key])
    assert "/health" in " ".join(services["gateway"]["healthcheck"]["test"])
    assert "ping" in " ".join(services["redis"]["healthcheck"]["test"])


def test_resource_limits(services: dict[str, dict[str, Any]]) -> None:
    memory: dict[str, int] = {}
    for name, service in services.items():
        limits = service["deploy"]["resources"]["limits"]
        assert "cpus" in limits and "memory" in limits, name
        memory[name] = _bytes(limits["memory"])
    others = [memory[tool] for tool in SERVICES if tool != "ifcclash"]
    assert memory["ifcclash"] > max(others), "clash detection gets the most memory"


def test_stop_grace_periods(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        assert _seconds(services[name]["stop_grace_period"]) >= 30, name
    # Workers finish or hand back their jobs on SIGTERM before Docker's SIGKILL.
    assert _seconds(services["worker"]["stop_grace_period"]) >= 60
    assert _seconds(services["ifcclash"]["stop_grace_period"]) >= _seconds(services["ifcconvert"]["stop_grace_period"])


# --- monitoring profile -------------------------------------------------------------------------------


def test_monitoring_profile(services: dict[str, dict[str, Any]]) -> None:
    prometheus = services["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    assert all("profiles" not in s for n, s in services.items() if n != "prometheus"), "the pipeline runs by default"
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in prometheus["volumes"]}
    config_dir = REPO / mounts["/etc/prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load((config_dir / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    gateway = jobs["gateway"]
    assert gateway.get("metrics_path", "/metrics") == "/metrics"
    assert ["gateway:8000"] == [t for sc in gateway["static_configs"] for t in sc["targets"]]
    rule_files = [
        path
        for pattern in config.get("rule_files", [])
        for path in glob.glob(str(config_dir / Path(pattern).relative_to("/etc/prometheus")))
    ]
    assert rule_files, "rule_files match nothing in docker/prometheus/"
    for path in rule_files:
        rules = yaml.safe_load(Path(path).read_text())
        assert rules["groups"] and all(g["rules"] for g in rules["groups"]), path


def test_prometheus_is_published_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    # Prometheus has no auth: published on every interface, its API shows what /metrics guards with a key.
    for mapping in services["prometheus"]["ports"]:
        resolved = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(mapping))  # compose's defaults
        host, _, rest = resolved.partition(":")
        assert host == "127.0.0.1" and rest.count(":") == 1, f"{mapping}: bind to 127.0.0.1 by default"


# --- Dockerfiles --------------------------------------------------------------------------------------


def _stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    """Instructions (keyword, arguments) per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword.upper(), args.strip()))
    return stages


@pytest.mark.parametrize("name", ["Dockerfile", "ifcservices.Dockerfile"])
def test_dockerfile(name: str) -> None:
    path = REPO / "docker" / name
    stages = _stages(path)
    assert len(stages) >= 2, "multi-stage: build, then a runtime stage without the build tools"
    args = _arg_defaults(path)
    for stage in stages:
        base = stage[0][1].split()[0]
        base = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], base)
        assert base == "python:3.11-slim", base
    final = stages[-1]
    users = [a for k, a in final if k == "USER"]
    assert users, "the runtime stage sets USER"
    assert users[-1].split(":")[0] not in ("root", "0"), users
    env = " ".join(a for k, a in final if k == "ENV")
    assert re.search(r"\bPYTHONUNBUFFERED=1\b", env)
    assert re.search(rf"\bIFCFLOW_DATA_DIR={DATA_PATH}\b", env)
    assert any(k == "COPY" and a.startswith("--from=") for k, a in final), "the runtime copies the built venv"
    for stage in stages:
        for keyword, arg in stage:
            if keyword == "COPY" and not arg.startswith("--from="):
                *sources, _ = arg.split()
                for source in sources:
                    assert glob.glob(str(REPO / source)) or source.endswith("*"), f"{name}: COPY {source}: not found"
    installs = " ".join(a for s in stages for k, a in s if k == "RUN" and "pip install" in a)
    assert "-c requirements.lock" in installs, "dependencies at the lock file's pins"
    copied = {src.rstrip("/") for s in stages for k, a in s if k == "COPY" and not a.startswith("--from=")
              for src in a.split()[:-1]}
    assert {"requirements.lock", *SHARED_PACKAGES} <= copied, sorted(copied)
    admitted = _dockerignore_exceptions(path.with_name(f"{name}.dockerignore"))
    assert copied - {"README.md*"} <= admitted, f"{name}.dockerignore leaves out {sorted(copied - admitted)}"
    if name == "Dockerfile":
        assert "[ifc]" not in installs, "the gateway/worker image stays without ifcopenshell"
        assert not any(k == "COPY" and "ifcservices" in a for s in stages for k, a in s)
        assert {"service", "jobs", "cli"} <= copied
        cmd = json.loads(next(a for k, a in reversed(final) if k == "CMD"))
        assert cmd[:2] == ["uvicorn", "service.app:app"] and option(cmd, "--ws-per-message-deflate") == "false"
        assert "--ws" not in cmd, "uvicorn's own WebSocket protocol: no protocol class of ifcflow's"
        for name, value in zip(UVICORN_OPTIONS[::2], UVICORN_OPTIONS[1::2], strict=True):
            assert option(cmd, name) == value, f"gateway {name} {value} (service/http_limits.py)"
    else:
        assert '".[ifc]"' in installs
        assert "ifcservices" in copied


# What every image installs beside its own packages: the gateway imports workflows, all of them store.
SHARED_PACKAGES = ("contracts", "settings", "store", "workflows", "storage", "access")


def _first_party() -> set[str]:
    return {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()}


def _imported_closure(roots: set[str]) -> set[str]:
    """The first-party packages ``roots`` import, directly or through each other (absolute imports)."""
    first, seen, todo = _first_party(), set[str](), list(roots)
    while todo:
        package = todo.pop()
        if package in seen:
            continue
        seen.add(package)
        for source in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    todo += [a.name.split(".")[0] for a in node.names if a.name.split(".")[0] in first]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    if node.module.split(".")[0] in first:
                        todo.append(node.module.split(".")[0])
    return seen


@pytest.mark.parametrize(("dockerfile", "roots"), [("Dockerfile", {"service", "jobs", "cli"}),
                                                    ("ifcservices.Dockerfile", {"ifcservices"})])
def test_each_image_copies_every_first_party_package_its_code_imports(dockerfile: str, roots: set[str]) -> None:
    text = (REPO / "docker" / dockerfile).read_text()
    copied = set(re.findall(r"^COPY (\w+) \./\1$", text, re.MULTILINE))
    missing = _imported_closure(roots) - copied
    assert not missing, f"{dockerfile} does not COPY {sorted(missing)}, which its code imports"
    admitted = _dockerignore_exceptions(REPO / "docker" / f"{dockerfile}.dockerignore")
    assert copied <= admitted, f"{dockerfile}.dockerignore leaves out {sorted(copied - admitted)}"


def test_the_package_installs_every_first_party_package() -> None:
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    found = {p.rstrip("*") for p in include}
    assert _first_party() - {"bench"} <= found, f"pyproject.toml leaves out {sorted(_first_party() - found)}"


def _dockerignore_exceptions(path: Path) -> set[str]:
    """The paths a ``**``-first .dockerignore lets into the build context (its ``!`` lines)."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    assert "**" in lines, f"{path.name}: start from nothing (**), then admit what the image needs"
    return {line[1:].rstrip("/") for line in lines if line.startswith("!")}


def _arg_defaults(dockerfile: Path) -> dict[str, str]:
    """Defaults of the ARGs declared before the first FROM (those a FROM line may use)."""
    found: dict[str, str] = {}
    for line in dockerfile.read_text().splitlines():
        if line.upper().startswith("FROM "):
            break
        if line.upper().startswith("ARG ") and "=" in line:
            key, _, value = line[4:].strip().partition("=")
            found[key] = value
    return found
