"""Every Redis key and queue name ifcflow writes, beside arq's own. One place, so nothing collides."""

from __future__ import annotations

from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)

# arq's keys, re-exported so readers of this module see the whole key space.
ARQ_JOB = job_key_prefix  # job definition while queued or running
ARQ_IN_PROGRESS = in_progress_key_prefix  # set by the worker that runs the job
ARQ_RESULT = result_key_prefix  # finished job: success flag, result or error, times
ARQ_RETRY = retry_key_prefix  # try counter
ARQ_ABORT = abort_jobs_ss  # ids whose abort was requested

# A job's record, the one truth about it (store/job_store.py writes it, nothing else does): status,
# operation, queue, request id, original arguments (for requeue), times, tries, the worker holding it,
# progress, retry note, result or error. The status API and live status read only this.
JOB_META = "ifcflow:job:"

# Idempotency-Key -> job id happens by hashing, so no key is needed for it; the job's meta holds the
# fingerprint of the first request so a different body under the same key is refused.

# Newest jobs first, scored by submit time in microseconds (submits within one millisecond keep their
# order), trimmed to about RECENT_JOBS_MAX: the cheap, bounded list behind "recent jobs" views and the
# polling fallback of live status (never a SCAN over all jobs).
RECENT_JOBS = "ifcflow:recent-jobs"
RECENT_JOBS_MAX = 10_000

# A workflow's record (spec, status, times) and its steps' states; the id set of running workflows
# is what the workers' sweep re-checks, so a step that ended while no worker advanced it is seen.
WORKFLOW = "ifcflow:workflow:"
WORKFLOW_STEPS_SUFFIX = ":steps"
ACTIVE_WORKFLOWS = "ifcflow:workflows:active"

# Result cache: key over operation, options and input file contents -> earlier result and outputs;
# and each input file's content hash, by path, kept with its size and mtime so it is hashed once.
RESULT_CACHE = "ifcflow:cache:"
FILE_HASH = "ifcflow:file-hash:"

# Presigned uploads not yet confirmed (upload id -> JSON: target path, file type, size cap, caller),
# each expiring with its URL (IFCFLOW_PRESIGN_EXPIRES): the id is the one-time credential of the PUT.
PRESIGNED_UPLOAD = "ifcflow:presign:"

# Recurring schedules (id -> JSON), and one claim per schedule and slot so that of many workers
# exactly one fires each slot.
SCHEDULES = "ifcflow:schedules"
SCHEDULE_SLOT = "ifcflow:schedule-slot:"

# Abort requests, published as they are made, so the worker running the job cancels it at once
# (arq's own abort check would cost every idle poll of every worker two more commands).
ABORT_CHANNEL = "ifcflow:abort"

# Wake-ups of ``python -m jobs`` workers (jobs/arq_adapter.py), so a submit starts at once instead of at
# the next poll: a submit due now raises the queue's flag and, only if it was down, publishes on the
# queue's channel; every claim lowers it. So a burst of submits costs one message per claim round,
# and a submit after a claim's scan always wakes the workers again. The flag expires on its own in case
# no claim comes (no ``python -m jobs`` worker is running).
WAKE_FLAG = "ifcflow:wake-flag:"
WAKE_CHANNEL = "ifcflow:wake:"
WAKE_FLAG_TTL_MS = 1000


def wake_flag(queue: str) -> str:
    return WAKE_FLAG + queue


def wake_channel(queue: str) -> str:
    return WAKE_CHANNEL + queue

# Live workers, scored by last heartbeat (ms): the gateway counts live ones with one ZCOUNT.
WORKERS = "ifcflow:workers"
# Per-worker details (host, pid, queue, counters), expiring on their own when the worker dies.
WORKER = "ifcflow:worker:"

# Counters and histograms for /metrics, written by gateways and workers alike so that one scrape of
# any gateway sees the whole system: hash of "<operation>:<outcome>" -> count ...
STATS_COUNTS = "ifcflow:stats:counts"
# ... and, per histogram and operation, a hash of bucket upper bound -> count, plus "sum" and "count".
STATS_HISTOGRAM = "ifcflow:stats:hist:"
# Queue depth samples (newest first, capped) for the dashboard's sparklines; one writer per slot.
QUEUE_HISTORY = "ifcflow:queue-history:"
QUEUE_SAMPLE_LOCK = "ifcflow:queue-sample-lock:"

# Last health check of each IFC service, written by the cron job with a TTL so stale means unknown.
SERVICE_HEALTH = "ifcflow:service-health:"


# Jobs a worker holds right now (written with the claim), so a live worker can hand them back when it dies.
WORKER_JOBS = "ifcflow:worker-jobs:"


def job_meta(job_id: str) -> str:
    return JOB_META + job_id


def presigned_upload(upload_id: str) -> str:
    return PRESIGNED_UPLOAD + upload_id


def worker(worker_id: str) -> str:
    return WORKER + worker_id


def service_health(service: str) -> str:
    return SERVICE_HEALTH + service


def worker_jobs(worker_id: str) -> str:
    return WORKER_JOBS + worker_id


def stats_histogram(name: str, operation: str) -> str:
    return f"{STATS_HISTOGRAM}{name}:{operation}"


def queue_history(queue: str) -> str:
    return QUEUE_HISTORY + queue


def workflow(workflow_id: str) -> str:
    return WORKFLOW + workflow_id


def workflow_steps(workflow_id: str) -> str:
    return WORKFLOW + workflow_id + WORKFLOW_STEPS_SUFFIX


# Service capacity shared by the fleet (store/service_slots.py): hash service -> slots, written by the
# health check from each service's /health (or IFCFLOW_SERVICE_SLOTS); per service, a sorted set of the
# jobs holding one of its slots (score: when taken).
SERVICE_CAPACITY = "ifcflow:service-capacity"
SERVICE_SLOTS = "ifcflow:service-slots:"


def service_slots(service: str) -> str:
    return SERVICE_SLOTS + service


# Fair share between projects (store/lua/claim.lua), per queue: each project's waiting jobs (a sorted set
# of the ids and scores they have in arq's queue: running jobs leave it at their claim and come back with
# a retry), the projects that have waiting jobs, and when each project was last served (a number from the
# queue's counter, one per claimed job). Scripts that read a job's queue and project from its record build
# its index key the same way: FAIR + queue + ":project:" + project.
FAIR = "ifcflow:fair:"
# The project of a job submitted without one, and of a record made before projects (the scripts say it too).
DEFAULT_PROJECT = "default"


def fair_index_prefix(queue: str) -> str:
    return f"{FAIR}{queue}:project:"


def fair_index(queue: str, project: str) -> str:
    return fair_index_prefix(queue) + project


def fair_projects(queue: str) -> str:
    return f"{FAIR}{queue}:projects"


def fair_served(queue: str) -> str:
    return f"{FAIR}{queue}:served"


def fair_counter(queue: str) -> str:
    return f"{FAIR}{queue}:served-counter"


# Quotas per project (access/quotas.py): requests counted per project and second (each counter expires
# a second after its own), the stored bytes per project from the last walk of the store (a hash with the
# walk's time under "at", expiring with its refresh period) and the lock of the gateway walking it.
QUOTA_RATE = "ifcflow:quota:rps:"
QUOTA_STORAGE = "ifcflow:quota:storage"
QUOTA_STORAGE_WALK = "ifcflow:quota:storage-walk"
# Per project, the jobs a claim started while the project has an in-flight limit (store/lua/claim.lua):
# a set of ids counted, as the service slots are, by the arq in-progress keys that still exist.
PROJECT_RUNNING = "ifcflow:project-running:"
# Per-project job counters for /metrics: hash of "<project>:<outcome>" -> count (create, requeue, finish).
STATS_PROJECT_COUNTS = "ifcflow:stats:project-counts"


def quota_rate(project: str, second: int) -> str:
    return f"{QUOTA_RATE}{project}:{second}"


def project_running(project: str) -> str:
    return PROJECT_RUNNING + project
