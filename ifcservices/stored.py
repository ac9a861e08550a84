"""How a service reaches the store of uploads and outputs (``storage``), on either backend.

Local backend: the child reads and writes the data directory (the store's root) directly, as ever. An
input pinned to a version (``input_version_ids``, filled in by the gateway at submit) is read from that
version's own file while its name holds other bytes; each committed output is then taken in as a new
version. S3 backend: the job's inputs are fetched into the input cache and linked into a folder of the
job's own, the child runs there, and its outputs are uploaded once it has succeeded
(``ifcservices.stored_job``). A request without pins reads the latest, as direct calls always did.

The store's failures become the service's answers: full -> ``storage_full`` (507, not retried),
unreachable -> ``storage_unavailable`` (503, the worker tries again), a missing version -> 422.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from pydantic import BaseModel

from contracts.paths import PathRole, path_fields
from ifcservices.confine import resolve, resolve_input, resolve_output
from ifcservices.errors import BadInput, StorageFull, StoreUnavailable
from ifcservices.stored_inputs import InputCache
from ifcservices.stored_job import job_folder, output_keys, publish_outputs, sweep_job_folders
from settings import Settings
from storage import NotFound, Storage, StorageError, StoreFull, open_storage
from storage.local import LocalStorage

log = structlog.get_logger("ifcservices.stored")


@dataclass(frozen=True, slots=True)
class Input:
    """One input of a request as checked: the version it reads (None: the file as it is) and its size."""

    key: str
    version: str | None
    size: int
    pinned_file: Path | None = None  # local backend: the pinned version's own file


@dataclass
class Staged:
    """Where a job's child runs: its data directory, its pinned inputs, its geometry cache folder."""

    data_dir: Path
    pinned: dict[str, str] = field(default_factory=dict)
    geometry_cache_dir: Path | None = None


def pins_of(request: BaseModel) -> dict[str, str]:
    """The request's pins, by stored input path (``VersionPins.input_version_ids``)."""
    pins = getattr(request, "input_version_ids", None)
    return dict(pins) if isinstance(pins, dict) else {}


def input_keys(request: BaseModel) -> list[str]:
    """The request's input paths, each once, in field order."""
    keys = [getattr(o, n) for _l, role, o, n in path_fields(request) if role is PathRole.input]
    return list(dict.fromkeys(keys))


@contextmanager
def store_errors() -> Iterator[None]:
    """The store's exceptions as the service's errors (see the module docstring)."""
    try:
        yield
    except StoreFull as exc:
        text = str(exc)
        raise StorageFull(text if text.startswith("storage full") else f"storage full: {text}") from exc
    except NotFound as exc:
        raise BadInput(f"input not found: {exc}") from exc
    except StorageError as exc:
        log.warning("store unavailable", error=str(exc))
        raise StoreUnavailable(f"the object store is unavailable: {exc}") from exc


class StoreAccess:
    """One store as the services of a process use it (one per process: the input cache is shared)."""

    def __init__(self, storage: Storage, *, data_dir: Path, scratch: Path, input_cache_bytes: int,
                 job_timeout: float = 86400.0) -> None:
        self.storage = storage
        root = storage.local_root
        self.local = root is not None
        self.data_dir = root if root is not None else data_dir
        self.scratch = scratch
        self.job_timeout = job_timeout
        self.inputs = None if self.local else InputCache(storage, scratch / "inputs", input_cache_bytes)

    @classmethod
    def from_settings(cls, settings: Settings, data_dir: Path, storage: Storage | None = None) -> StoreAccess:
        """The store ``IFCFLOW_STORAGE_URL`` names (by default ``data_dir`` itself, local)."""
        if storage is None:
            storage = open_storage(settings) if settings.storage_url else LocalStorage(data_dir)
        longest = max([settings.job_timeout, *settings.job_timeouts.values()])
        return cls(storage, data_dir=data_dir, scratch=settings.scratch_dir or data_dir / ".scratch",
                   input_cache_bytes=settings.input_cache_bytes, job_timeout=longest)

    @property
    def geometry_cache_dir(self) -> Path | None:
        """Where the geometry cache lives when the settings name no folder: a job folder on S3 lasts
        one job, so there it is ``<scratch>/.cache/geometry``."""
        return None if self.local else self.scratch / ".cache" / "geometry"

    async def start(self) -> None:
        await self.storage.start()
        if not self.local:
            swept = await asyncio.to_thread(sweep_job_folders, self.scratch, self.job_timeout)
            if swept:
                log.info("job folders removed", count=len(swept), folders=swept[:20])

    async def close(self) -> None:
        await self.storage.close()

    # -- before a slot is taken

    async def check(self, request: BaseModel) -> dict[str, Input]:
        """Every input of ``request`` by path, the versions it reads resolved; ``BadInput`` (422) for
        a path that escapes, an input that is missing or a pin that names no version."""
        pins = pins_of(request)
        if self.local:
            for _l, role, owner, name in path_fields(request):
                if role is PathRole.output:
                    resolve_output(self.data_dir, getattr(owner, name))
        with store_errors():
            return {key: await self._check_input(key, pins.get(key)) for key in input_keys(request)}

    async def _check_input(self, key: str, pin: str | None) -> Input:
        if not self.local:
            found = await self.storage.stat(key, pin)
            if found is None:
                raise BadInput(f"input {key}: version {pin} not found" if pin else f"input file not found: {key}")
            return Input(key, found.version, found.size)
        if pin is None:
            path = await asyncio.to_thread(resolve_input, self.data_dir, key)
            return Input(key, None, (await asyncio.to_thread(path.stat)).st_size)
        resolve(self.data_dir, key)  # the name itself must stay inside, even when only its version is read
        pinned = self.storage.local_path(key, pin)
        if pinned is None:
            latest = await self.storage.stat(key)  # a file put in by hand: taken in now
            pinned = self.storage.local_path(key, pin) if latest is not None else None
        if pinned is None:
            raise BadInput(f"input {key}: version {pin} not found")
        return Input(key, pin, (await asyncio.to_thread(pinned.stat)).st_size, pinned_file=pinned)

    # -- while the job runs

    @asynccontextmanager
    async def staged(self, inputs: dict[str, Input],
                     on_progress: Callable[[float, str], None] | None = None) -> AsyncIterator[Staged]:
        """The child's data directory for a job on ``inputs`` (S3: a job folder, removed on exit)."""
        if self.inputs is None:
            pinned = {i.key: str(i.pinned_file) for i in inputs.values() if i.pinned_file is not None}
            yield Staged(self.data_dir, pinned, self.geometry_cache_dir)
            return
        if on_progress is not None and inputs:
            on_progress(0.0, "fetching inputs")
        versions = {key: i.version for key, i in inputs.items() if i.version is not None}
        with store_errors():
            async with job_folder(self.scratch, self.inputs, versions) as folder:
                yield Staged(folder, {}, self.geometry_cache_dir)

    async def commit(self, staged: Staged, raw_result: bytes) -> None:
        """Make each output the child committed a version of its key: taken in where it lies (local),
        uploaded from the job folder (S3)."""
        keys = output_keys(raw_result)
        with store_errors():
            if self.local:
                for key in keys:
                    await self.storage.stat(key)
            else:
                await publish_outputs(self.storage, staged.data_dir, keys)

    def health(self) -> dict[str, object]:
        report: dict[str, object] = {"url": self.storage.url}
        if self.inputs is not None:
            report["input_cache"] = self.inputs.report()
        return report
