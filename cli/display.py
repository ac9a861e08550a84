"""How the client shows jobs: a progress bar while one runs (rich when installed), text for the rest."""

from __future__ import annotations

import shutil
from datetime import datetime
from typing import Any, Protocol, TextIO

TERMINAL_STATES = frozenset({"complete", "failed", "aborted"})
_BAR_WIDTH = 30


def percent_of(view: dict[str, Any]) -> float | None:
    progress = view.get("progress")
    if isinstance(progress, dict) and isinstance(progress.get("percent"), int | float):
        return max(0.0, min(100.0, float(progress["percent"])))
    return None


def phase_of(view: dict[str, Any]) -> str:
    progress = view.get("progress")
    return str(progress.get("phase") or "") if isinstance(progress, dict) else ""


def describe_error(view: dict[str, Any]) -> str:
    """``message (service ifcconvert, HTTP 422, type bad_input)`` from the view's ``error``."""
    error = view.get("error")
    if not isinstance(error, dict):
        return "no error given"
    notes = []
    if error.get("service"):
        notes.append(f"service {error['service']}")
    if error.get("status_code"):
        notes.append(f"HTTP {error['status_code']}")
    if error.get("type"):
        notes.append(f"type {error['type']}")
    message = str(error.get("message") or "(no message)")
    return f"{message} ({', '.join(notes)})" if notes else message


def describe_retry(view: dict[str, Any]) -> str:
    retry = view.get("retry")
    if not isinstance(retry, dict):
        return "retrying"
    when = _clock(retry.get("next_try_at"))
    return f"retrying (try {retry.get('attempt', '?')} failed: {retry.get('reason', '?')}; next try at {when})"


def describe(view: dict[str, Any], *, percent: bool = True) -> str:
    """One line for a job message: its event or status, progress and phase."""
    event = str(view.get("event") or view.get("status") or "?")
    status = str(view.get("status") or "?")
    if event == "retrying":
        return describe_retry(view)
    if status in TERMINAL_STATES:
        return status  # the command's last line says what went wrong
    done = percent_of(view) if percent else None
    parts = [status]
    if done is not None:
        parts.append(f"{done:.0f}%")
    if phase_of(view):
        parts.append(phase_of(view))
    return " ".join(parts)


def _clock(value: Any) -> str:
    if not isinstance(value, str):
        return "?"
    try:
        return datetime.fromisoformat(value).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return value


def _when(value: Any) -> str:
    if not isinstance(value, str):
        return "-"
    try:
        return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def job_summary(view: dict[str, Any]) -> list[str]:
    """``ifcflow status``: the job's view as aligned ``name  value`` lines."""
    rows: list[tuple[str, str]] = [
        ("job", str(view.get("job_id", "?"))),
        ("operation", str(view.get("operation") or "?")),
        ("status", str(view.get("status", "?"))),
        ("tries", str(view.get("tries", 0))),
        ("enqueued", _when(view.get("enqueued_at"))),
        ("started", _when(view.get("started_at"))),
        ("finished", _when(view.get("finished_at"))),
    ]
    percent = percent_of(view)
    if percent is not None and view.get("status") not in TERMINAL_STATES:
        rows.append(("progress", f"{percent:.0f}% {phase_of(view)}".rstrip()))
    if view.get("retry"):
        rows.append(("retry", describe_retry(view)))
    result = view.get("result")
    if isinstance(result, dict):
        outputs = result.get("output_files") or []
        rows.extend(("output", str(path)) for path in outputs)
    if view.get("error"):
        rows.append(("error", describe_error(view)))
    width = max(len(name) for name, _ in rows)
    return [f"{name:<{width}}  {value}" for name, value in rows]


def jobs_table(jobs: list[dict[str, Any]]) -> list[str]:
    """``ifcflow jobs``: one line per job, newest first."""
    header = ("JOB", "OPERATION", "STATUS", "ENQUEUED", "DETAIL")
    rows = [header]
    for view in jobs:
        status = str(view.get("status", "?"))
        if status in ("failed", "aborted"):
            detail = describe_error(view)
        elif status == "complete":
            outputs = (view.get("result") or {}).get("output_files") or []
            detail = ", ".join(str(p) for p in outputs)
        else:
            detail = describe(view).removeprefix(status).strip()
        rows.append(
            (str(view.get("job_id", "?")), str(view.get("operation") or "?"), status,
             _when(view.get("enqueued_at")), detail)
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return lines


class Display(Protocol):
    """What following a job shows as its messages arrive."""

    def update(self, view: dict[str, Any]) -> None: ...

    def note(self, text: str) -> None: ...

    def close(self) -> None: ...


class LineDisplay:
    """One line per change: for logs and pipes, where a redrawn bar would be noise."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self._last = ""

    def update(self, view: dict[str, Any]) -> None:
        line = describe(view)
        if line != self._last:
            self._last = line
            self.note(line)

    def note(self, text: str) -> None:
        self.stream.write(f"{self.label}: {text}\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class BarDisplay:
    """A bar redrawn in place with carriage returns: a terminal without rich."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self._drawn = 0

    def _width(self) -> int:
        return shutil.get_terminal_size((100, 20)).columns - 1

    def update(self, view: dict[str, Any]) -> None:
        if view.get("event") == "retrying":
            self.note(describe_retry(view))
        percent = percent_of(view) or (100.0 if view.get("status") == "complete" else 0.0)
        filled = round(_BAR_WIDTH * percent / 100)
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        text = f"{self.label} [{bar}] {percent:3.0f}% {describe(view, percent=False)}"
        text = text[: self._width()]
        self.stream.write("\r" + text.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(text)

    def note(self, text: str) -> None:
        self._end_line()
        self.stream.write(f"{self.label}: {text}\n")
        self.stream.flush()

    def _end_line(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self._drawn = 0

    def close(self) -> None:
        self._end_line()
        self.stream.flush()


class RichDisplay:
    """rich's progress bar, with spinner, percent and elapsed time."""

    def __init__(self, stream: TextIO, label: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

        self.console = Console(file=stream)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[label]}[/bold] {task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.task = self.progress.add_task("connecting", total=100, label=label)
        self.label = label
        self.progress.start()

    def update(self, view: dict[str, Any]) -> None:
        if view.get("event") == "retrying":
            self.note(describe_retry(view))
        percent = percent_of(view)
        if view.get("status") == "complete":
            percent = 100.0
        description = describe(view, percent=False)
        if percent is None:
            self.progress.update(self.task, description=description)
        else:
            self.progress.update(self.task, description=description, completed=percent)

    def note(self, text: str) -> None:
        self.progress.console.print(f"{self.label}: {text}", markup=False, highlight=False)

    def close(self) -> None:
        self.progress.stop()


def make_display(stream: TextIO, label: str, *, plain: bool = False) -> Display:
    """rich's bar on a terminal when rich is installed, a text bar on a terminal without it, else lines."""
    if plain or not stream.isatty():
        return LineDisplay(stream, label)
    try:
        import rich  # noqa: F401
    except ImportError:
        return BarDisplay(stream, label)
    return RichDisplay(stream, label)
