"""The one settings class: every knob is an ``IFCFLOW_*`` environment variable (or a line in ``.env``)."""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts.fetch_rules import parse_networks
from contracts.operations import OPERATIONS, SERVICES, Operation

DEFAULT_QUEUE = "arq:queue"  # arq's own default, so arq's CLI (`arq --check`) sees our queue as is


class ProjectQuota(BaseModel):
    """One project's entry in ``IFCFLOW_PROJECT_QUOTAS``: each limit left out is the ``IFCFLOW_QUOTA_*``
    default; 0 is unlimited. ``storage_bytes`` may be written 5e10."""

    model_config = ConfigDict(extra="forbid")  # a misspelt limit must stop the process, not be ignored

    rps: int | None = Field(None, ge=0)
    in_flight: int | None = Field(None, ge=0)
    queued: int | None = Field(None, ge=0)
    storage_bytes: int | None = Field(None, ge=0)


class Quota(NamedTuple):
    """A project's limits, overrides applied (0: unlimited): what access/quotas.py enforces. A tuple:
    made on every request of a limited deployment, and a frozen dataclass costs a microsecond more."""

    rps: int
    in_flight: int
    queued: int
    storage_bytes: int


class Settings(BaseSettings):
    """Configuration of the gateway, the workers and the IFC services."""

    model_config = SettingsConfigDict(env_prefix="IFCFLOW_", env_file=".env", extra="ignore")

    redis_url: str = "redis://localhost:6379/0"
    # Redis Sentinel: "host:port" of each sentinel; the master is found by name (the URL then gives
    # only password and database).
    redis_sentinels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    redis_sentinel_master: str = "mymaster"
    # A Redis that evicts keys loses jobs silently: anything but maxmemory-policy noeviction stops the
    # gateway and the workers at start unless this is set (then only a warning).
    redis_allow_eviction: bool = False
    # NoDecode: a plain comma-separated list, not JSON, is what operators type.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # Open mode must be asked for by name; an empty key list alone never opens the API.
    allow_anonymous: bool = False
    data_dir: Path = Path("data")
    # Where uploads and outputs live (storage/): "file:///path" (default: the data directory) or
    # "s3://bucket/prefix" on any S3-compatible store, with the standard AWS credential chain.
    storage_url: str = Field("", description="file:///path or s3://bucket/prefix; empty: the data directory")
    s3_endpoint_url: str = Field("", description="S3 API endpoint for MinIO, SeaweedFS, Ceph, GCS; empty: AWS")
    s3_region: str = Field("us-east-1", description="region the S3 client signs for")
    # The endpoint presigned URLs name, when clients reach the store by another address than ifcflow's
    # processes do (compose: http://seaweedfs:8333 inside, http://localhost:8333 outside); empty: the same.
    s3_public_endpoint_url: str = Field("", description="S3 endpoint in presigned URLs; empty: s3_endpoint_url")
    # Seconds a presigned upload or download URL works.
    presign_expires: int = Field(3600, ge=60, le=7 * 86400)
    # On the S3 backend each service reads inputs into this local folder (a content-addressed cache of
    # at most input_cache_bytes, so a model used by five jobs is fetched once) and writes outputs there
    # before they are uploaded; empty: <data dir>/.scratch.
    scratch_dir: Path | None = None
    input_cache_bytes: int = Field(10 * 1024**3, ge=0)
    # Retention (a sweep every hour, on both backends): uploads and outputs, every version, older than
    # this many days are removed unless a queued or running job still needs them; 0 keeps them for good.
    retention_uploads_days: float = Field(7.0, ge=0)
    retention_outputs_days: float = Field(7.0, ge=0)

    ifcconvert_url: AnyHttpUrl = AnyHttpUrl("http://localhost:7001")
    ifcclash_url: AnyHttpUrl = AnyHttpUrl("http://localhost:7002")
    ifccsv_url: AnyHttpUrl = AnyHttpUrl("http://localhost:7003")
    ifctester_url: AnyHttpUrl = AnyHttpUrl("http://localhost:7004")
    ifcdiff_url: AnyHttpUrl = AnyHttpUrl("http://localhost:7005")
    ifc2json_url: AnyHttpUrl = AnyHttpUrl("http://localhost:7006")
    ifc5d_url: AnyHttpUrl = AnyHttpUrl("http://localhost:7007")
    ifcpatch_url: AnyHttpUrl = AnyHttpUrl("http://localhost:7008")

    job_timeout: int = Field(3600, gt=0, description="seconds; every operation without its own entry")
    # Clash detection on large federated models is the one operation known to run for hours.
    job_timeouts: dict[Operation, int] = Field(default_factory=lambda: {Operation.ifcclash: 7200})
    # 8 tries: with the default backoff a job keeps trying for 2 to 4 minutes, so an IFC service that is
    # down for a minute (a restart, a deploy) costs retries, not failed jobs.
    max_tries: int = Field(8, ge=1, le=100)
    retry_backoff: float = Field(2.0, gt=0, description="seconds before the first retry; doubles each try")
    retry_backoff_max: float = Field(300.0, gt=0)
    result_ttl: int = Field(86_400, gt=0, description="seconds a finished job's status and result are kept")

    max_jobs: int = Field(1000, ge=1, description="jobs in flight per worker process")
    # Service -> slots for the whole fleet, overriding what the service's /health says (a service behind
    # a load balancer answers for one replica); 0 removes the limit.
    service_slots: dict[str, int] = Field(default_factory=dict)
    health_check_period: int = Field(30, ge=5, le=3600, description="seconds between service health checks")
    heartbeat_interval: float = Field(5.0, gt=0)
    # A worker silent this long is dead: its running jobs go back to the queue at once.
    worker_dead_after: float = Field(15.0, gt=0)
    # On SIGTERM, running jobs get this long to finish; the rest go back to the queue.
    shutdown_wait: int = Field(30, ge=0)
    # An idle poll is one Redis command, so 20 ms means jobs start within ~20 ms for ~50 commands/s.
    poll_delay: float = Field(0.02, gt=0, le=10, description="seconds between a worker's queue polls")
    # ``python -m jobs`` is woken by every submit (store/keys.py, WAKE), so its polls find only jobs come
    # due by time (retries after backoff, deferred jobs, those of dead workers): they can be rarer.
    woken_poll_delay: float = Field(0.25, gt=0, le=10,
                                    description="seconds between queue polls of a `python -m jobs` worker")
    # Seconds a waiting job is moved ahead per priority level; also how long a low job can be
    # overtaken by normal ones (and a normal one by high ones) before it is served first.
    priority_aging: float = Field(600.0, gt=0, le=21600)
    queue_name: str = Field(DEFAULT_QUEUE, min_length=1, description="queue this worker serves")
    # Operation -> queue; operations not listed go to the default queue.
    queues: dict[Operation, str] = Field(default_factory=dict)

    # IFC services: child processes each service runs at once; 0 means one per CPU core.
    service_concurrency: int = Field(0, ge=0, le=256)
    # Limits of each IFC service child process (one per operation), so that a hostile model fails its
    # own job: address space in bytes (4 GiB: 5 such children fit a 24 GB host beside the rest), and CPU
    # seconds, base plus per MiB of input, per geometry thread. 0 turns a limit off.
    service_memory_limit: int = Field(4 * 1024**3, ge=0)
    service_cpu_seconds: int = Field(60, ge=0)
    service_cpu_seconds_per_mib: float = Field(60.0, ge=0)
    # Bytes of expected memory (estimated per operation from its inputs' sizes) each service admits at
    # once beside its slots; past it, 503 busy. 0: slots alone.
    service_memory_budget: int = Field(0, ge=0)
    # Tessellated shapes per (input bytes, geometry settings), shared by convert and clash
    # (ifcservices/geometry_cache.py): least recently used entries go past this many bytes; 0 turns
    # it off. The directory defaults to <data dir>/.cache/geometry, shared by every service of it.
    geometry_cache_bytes: int = Field(2 * 1024**3, ge=0)
    geometry_cache_dir: Path | None = None

    # Webhooks: callback URLs must name one of these hosts (host or host:port, "*.example.com"),
    # so a request can never make ifcflow call into the private network. Empty: no callbacks.
    callback_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key of X-Ifcflow-Signature")
    webhook_max_tries: int = Field(8, ge=1, le=50)
    cache_ttl: int = Field(7 * 86400, gt=0, description="seconds a cached result may be reused")
    # Schedules cost nothing while none is due (an index by next run), but each is listed by
    # GET /schedules and held in Redis: creating one past the cap answers 409.
    max_schedules: int = Field(10_000, ge=1, description="recurring schedules that may exist at once")

    # Quotas per project (access/quotas.py), each 0 for unlimited (the default): requests per second
    # (shared by every gateway through Redis), running jobs (the claim leaves the project's further jobs
    # waiting), waiting jobs (a submit past it is 429), bytes stored (an upload past it is 507). Overrides
    # per project: IFCFLOW_PROJECT_QUOTAS='{"a": {"rps": 20, "queued": 10000, "storage_bytes": 5e10}}'.
    quota_rps: int = Field(0, ge=0, description="requests per second per project; 0: unlimited")
    quota_in_flight: int = Field(0, ge=0, description="running jobs per project; 0: unlimited")
    quota_queued: int = Field(0, ge=0, description="waiting jobs per project; 0: unlimited")
    quota_storage_bytes: int = Field(0, ge=0, description="bytes stored per project, every version; 0: unlimited")
    # The stored bytes are counted by walking the store at most this often (uploads since are added on).
    quota_storage_refresh: float = Field(300.0, ge=1, le=86_400, description="seconds between store walks")
    # NoDecode: an empty value (a Compose default) is no overrides, not a JSON error.
    project_quotas: Annotated[dict[str, ProjectQuota], NoDecode] = Field(default_factory=dict)

    max_upload_bytes: int = Field(2 * 1024**3, gt=0)
    max_request_bytes: int = Field(1024**2, gt=0, description="largest JSON body the gateway reads")
    # A client gets this long to send a request's headers (service/http_limits.py); connections that send
    # nothing, or half a request, are closed then instead of held for good.
    header_timeout: float = Field(10.0, gt=0, le=300, description="seconds to send a request's headers")
    public_url: str = Field("", description="base URL put in status_url/ws_url; empty: the request's own")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool | None = Field(None, description="JSON logs; default: when stderr is not a TTY")

    # ifcpipeline's compatibility endpoints (docs in service/routers/compat_*.py).
    # Download links: HMAC key of the tokens; unset, each gateway process draws its own (links then die
    # with it and work on no other gateway): set it in production.
    download_secret: SecretStr | None = Field(None, description="key of /create_download_link tokens")
    download_link_ttl: int = Field(1800, gt=0, le=7 * 86400, description="seconds a download link works")
    # /download-from-url: hosts it may fetch from (webhook-style patterns), networks besides the public
    # internet its hosts may resolve to (CIDRs, e.g. 10.0.0.0/8 for a file server inside), size limit.
    download_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    download_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    download_max_bytes: int = Field(2 * 1024**3, gt=0)
    # How long POST /download-from-url waits for its job before answering 202 (ifcpipeline answered
    # when the file was there; the n8n node chains the answer's file_path).
    download_wait: float = Field(300.0, ge=0, le=3600)
    ifcpatch_recipe_dir: Path | None = Field(None, description="folder of custom ifcpatch recipes (<Name>.py)")

    @field_validator("api_keys", "callback_allowed_hosts", "redis_sentinels", "download_allowed_hosts",
                     "download_allowed_networks", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("job_timeouts", "queues")
    @classmethod
    def _positive_or_named(cls, value: dict[Operation, object]) -> dict[Operation, object]:
        for op, v in value.items():
            if isinstance(v, int) and v <= 0:
                raise ValueError(f"{op.value}: must be a positive number of seconds")
            if isinstance(v, str) and not v:
                raise ValueError(f"{op.value}: queue name must not be empty")
        return value

    @field_validator("project_quotas", mode="before")
    @classmethod
    def _quotas_json(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @field_validator("project_quotas")
    @classmethod
    def _quota_projects(cls, value: dict[str, ProjectQuota]) -> dict[str, ProjectQuota]:
        if value:
            # Here, not at the top: every process loads settings, the IFC services without access/.
            from access.grants import check_project

            for project in value:
                check_project(project)
        return value

    @field_validator("download_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        parse_networks(value)  # a bad CIDR stops the process at start, naming it
        return value

    def timeout_for(self, op: Operation) -> int:
        return self.job_timeouts.get(op, self.job_timeout)

    def queue_for(self, op: Operation) -> str:
        return self.queues.get(op, DEFAULT_QUEUE)

    def all_queues(self) -> list[str]:
        """Every queue a job can be in: the default one and those of ``IFCFLOW_QUEUES``."""
        return sorted({DEFAULT_QUEUE, *self.queues.values()})

    def quota_for(self, project: str) -> Quota:
        """``project``'s limits: its ``IFCFLOW_PROJECT_QUOTAS`` entry over the ``IFCFLOW_QUOTA_*`` defaults."""
        own = self.project_quotas.get(project)
        if own is None:
            return Quota(self.quota_rps, self.quota_in_flight, self.quota_queued, self.quota_storage_bytes)
        return Quota(
            self.quota_rps if own.rps is None else own.rps,
            self.quota_in_flight if own.in_flight is None else own.in_flight,
            self.quota_queued if own.queued is None else own.queued,
            self.quota_storage_bytes if own.storage_bytes is None else own.storage_bytes,
        )

    def service_url(self, service: str) -> str:
        if service not in SERVICES:
            raise KeyError(service)
        return str(getattr(self, f"{service}_url")).rstrip("/")

    def operation_url(self, op: Operation) -> str:
        spec = OPERATIONS[op]
        return self.service_url(spec.service) + spec.path

    def storage_location(self) -> str:
        """The store's URL: ``storage_url``, or the data directory as a ``file://`` URL."""
        return self.storage_url or self.data_dir.resolve().as_uri()

    def scratch_root(self) -> Path:
        """The local folder services stage S3 inputs and outputs in."""
        return self.scratch_dir or self.data_dir / ".scratch"

    def api_key_entries(self) -> list[str]:
        """``IFCFLOW_API_KEYS`` as written: ``project:role:key`` entries or bare keys (access/grants.py)."""
        return [k.get_secret_value() for k in self.api_keys]

    def api_key_values(self) -> list[bytes]:
        return [k.get_secret_value().encode() for k in self.api_keys]


def _explain(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = first["loc"][0] if first["loc"] else ""
    return f"invalid setting IFCFLOW_{str(loc).upper()}: {first['msg']}"


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment (and ``.env``)."""
    return Settings()


def load_settings_or_exit(*, require_api_keys: bool = False) -> Settings:
    """``get_settings()`` for process entry points: a bad value stops the process with one clear line."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        print(f"ifcflow: {_explain(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    if require_api_keys and not settings.api_keys and not settings.allow_anonymous:
        print(
            "ifcflow: invalid setting IFCFLOW_API_KEYS: required (comma-separated keys), "
            "or set IFCFLOW_ALLOW_ANONYMOUS=true for local use",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return settings
