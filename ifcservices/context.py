"""What a tool function gets in its child process: confined paths, atomic outputs, progress."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ifcservices.confine import relative_to_root, resolve, resolve_input, resolve_output
from ifcservices.errors import BadInput
from ifcservices.geometry_cache import GeometryCache
from ifcservices.progress import ProgressFn
from ifcservices.staging import staged_output


def _no_progress(percent: float, phase: str = "") -> None:
    return None


@dataclass
class TaskContext:
    """Handed to each tool: resolves request paths and records the outputs it commits."""

    data_dir: Path
    progress: ProgressFn = _no_progress
    # Geometry threads this task may use: the cores of the service's slots free when it started.
    threads: int = 1
    output_files: list[str] = field(default_factory=list)
    # Inputs pinned to a version (local backend): request path -> that version's own file. Read from
    # there only while the request path holds other bytes, so tools see the names they were given.
    pinned: dict[str, Path] = field(default_factory=dict)
    # Where the geometry cache lives when the settings name no folder (None: under the data directory).
    geometry_cache_dir: Path | None = None
    _geometry_cache: GeometryCache | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        global _current
        _current = self  # a child process runs one task: tools reach it without a parameter

    def geometry_cache(self) -> GeometryCache:
        """The geometry cache shared by the services of this data directory, as the settings say."""
        if self._geometry_cache is None:
            self._geometry_cache = GeometryCache.configured(self.data_dir, self.geometry_cache_dir)
        return self._geometry_cache

    def input(self, relative: str) -> Path:
        """The file holding input ``relative``: its pinned version's bytes when it has a pin."""
        version = self.pinned.get(relative)
        if version is None:
            return resolve_input(self.data_dir, relative)
        path = resolve(self.data_dir, relative)
        try:
            if os.path.samefile(path, version):
                return path
        except OSError:
            pass  # the name is gone or never was: the version alone holds the bytes
        if not version.is_file():
            raise BadInput(f"input {relative}: version {version.stem[:64]} not found")
        return version

    @contextmanager
    def output(self, relative: str) -> Iterator[Path]:
        """Yield a temporary path to write ``relative`` to; it is renamed into place on success."""
        final = resolve_output(self.data_dir, relative)
        with staged_output(final, self.data_dir) as (temporary, committed):
            yield temporary
        self.output_files.extend(relative_to_root(self.data_dir, path) for path in committed)


_current: TaskContext | None = None


def current_task() -> TaskContext | None:
    """The task this process runs (the last ``TaskContext`` made), for code the tool does not hand one."""
    return _current
