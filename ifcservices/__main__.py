"""``python -m ifcservices <tool|all> --host H --port N [--data-dir D]``: run IFC services."""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI

from contracts.operations import SERVICES
from ifcservices.limits import JobLimits
from settings import load_settings_or_exit
from settings.logging import configure_logging

ALL = "all"
DEFAULT_ALL_PORT = 7000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ifcservices", description="Run an ifcflow IFC service.")
    parser.add_argument("tool", choices=[*SERVICES, ALL], help="the service to run, or 'all' under /<tool> prefixes")
    parser.add_argument("--host", default=None, help="default: 127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: the port of IFCFLOW_<TOOL>_URL (all: 7000)")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: IFCFLOW_DATA_DIR")
    parser.add_argument("--concurrency", type=int, default=None, help="child processes at once; default: cores")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    args = _parser().parse_args(argv)
    settings = load_settings_or_exit()
    configure_logging(settings.log_level, settings.log_json)
    data_dir: Path = args.data_dir or settings.data_dir
    concurrency: int = settings.service_concurrency if args.concurrency is None else args.concurrency
    limits = JobLimits(
        memory_bytes=settings.service_memory_limit,
        cpu_seconds=settings.service_cpu_seconds,
        cpu_seconds_per_mib=settings.service_cpu_seconds_per_mib,
        memory_budget=settings.service_memory_budget,
    )

    app: FastAPI
    if args.tool == ALL:
        from ifcservices.combined import create_combined_app

        app = create_combined_app(data_dir=data_dir, concurrency=concurrency, limits=limits)
        host, port = args.host or "127.0.0.1", args.port or DEFAULT_ALL_PORT
    else:
        from ifcservices.app import create_service_app

        app = create_service_app(args.tool, data_dir=data_dir, concurrency=concurrency, limits=limits)
        url = urlsplit(settings.service_url(args.tool))
        host, port = args.host or "127.0.0.1", args.port or url.port or 80

    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
