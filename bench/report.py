"""What a run prints and keeps: one table per scenario, as text and Markdown, and everything as JSON."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Column:
    key: str
    header: str
    fmt: str = "{:.1f}"  # for numbers; strings are shown as they are


@dataclass
class Section:
    """One scenario's result: rows of medians (over rounds), the ratio to its baseline, verdicts."""

    key: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)  # every round's values, for the JSON only


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "NOT met")


def _cell(value: Any, column: Column) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return column.fmt.format(value)
    return str(value)


def _grid(section: Section) -> list[list[str]]:
    return [[c.header for c in section.columns]] + [
        [_cell(row.get(c.key), c) for c in section.columns] for row in section.rows
    ]


def as_text(section: Section) -> str:
    grid = _grid(section)
    widths = [max(len(r[i]) for r in grid) for i in range(len(grid[0]))]
    lines = [f"== {section.title}"]
    for n, row in enumerate(grid):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [f"   target: {t}" for t in section.targets]
    lines += [f"   note: {n}" for n in section.notes]
    return "\n".join(lines)


def as_markdown(section: Section) -> str:
    grid = _grid(section)
    lines = [f"### {section.title}", ""]
    lines.append("| " + " | ".join(grid[0]) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(grid[0]) - 1)) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in grid[1:]]
    lines.append("")
    lines += [f"- target: {t}" for t in section.targets]
    lines += [f"- {n}" for n in section.notes]
    return "\n".join(lines) + "\n"


def machine() -> dict[str, Any]:
    import os

    import arq
    import fastapi
    import redis
    import uvicorn

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "arq": arq.VERSION,
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "redis-py": redis.__version__,
        **_peer_versions(),
    }


def _peer_versions() -> dict[str, str]:
    """Versions of the peers' packages that are installed (they are optional)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for name in ("rq", "celery", "kombu", "saq"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def write(sections: list[Section], out_dir: Path, meta: dict[str, Any]) -> tuple[Path, Path]:
    """``<stamp>.json`` and ``<stamp>.md`` in ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = out_dir / f"{stamp}.json"
    md_path = out_dir / f"{stamp}.md"
    doc = {"meta": meta, "sections": [asdict(s) for s in sections]}
    json_path.write_text(json.dumps(doc, indent=2, default=str))
    header = f"Run {stamp}: {meta['machine']['cpus']} CPUs, Python {meta['machine']['python']}, " \
        f"{'quick' if meta['quick'] else 'full'} sizes, {meta['rounds']} round(s); medians of rounds.\n\n"
    md_path.write_text(header + "\n".join(as_markdown(s) for s in sections))
    return json_path, md_path
