"""The client commands' command line: ``submit``, ``status``, ``watch``, ``cancel``, ``requeue``, ``jobs``,
``keys``.

Only argparse here, so building ``ifcflow``'s parser stays cheap; cli/client_commands.py runs them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from contracts.operations import Operation

CLIENT_COMMANDS = ("submit", "status", "watch", "cancel", "requeue", "jobs", "keys")
_ROLES = ("read", "submit", "admin")
_STATUSES = ("queued", "deferred", "in_progress", "complete", "failed", "aborted")


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def connection_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """``--url`` and ``--api-key``: before the command (default None) or after it (default SUPPRESS)."""
    parser.add_argument(
        "--url", dest="client_url", default=default, metavar="URL",
        help="gateway URL (default: IFCFLOW_URL, else http://127.0.0.1:8000)",
    )  # fmt: skip
    parser.add_argument(
        "--api-key", dest="client_api_key", default=default, metavar="KEY",
        help="API key (default: IFCFLOW_API_KEY, else the first of IFCFLOW_API_KEYS)",
    )  # fmt: skip


def _download_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--download-dir", type=Path, default=Path("."), metavar="DIR",
        help="where outputs are saved (default: the current directory)",
    )  # fmt: skip
    parser.add_argument("--plain", action="store_true", help="one line per change instead of a progress bar")


def add_client_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client commands to ``ifcflow``'s subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    connection_options(common, argparse.SUPPRESS)
    operations = ", ".join(op.value for op in Operation)

    submit = commands.add_parser(
        "submit",
        parents=[common],
        help="upload files, run an operation, follow it and download the outputs",
        description="Upload the input files, submit the operation, follow the job with a progress bar and "
        "download its outputs. The files fill the operation's input fields in order (ifcdiff OLD NEW, "
        "ifctester IFC IDS, ifccsv_import IFC CSV); ifcclash checks the first file against the others "
        f"(one file: against itself). Operations: {operations}.",
        epilog="examples:\n"
        "  ifcflow submit ifcconvert model.ifc -o model.glb\n"
        "  ifcflow submit ifcdiff old.ifc new.ifc -o diff.json --set is_shallow=false\n"
        "  ifcflow submit ifccsv model.ifc -o walls.csv --set query=IfcWall --set 'attributes=[\"Name\"]'\n"
        "  ifcflow submit ifcclash --no-wait a.ifc b.ifc -o clashes.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    submit.add_argument("operation", metavar="OPERATION", help=f"one of {operations}")
    submit.add_argument("files", nargs="*", type=Path, metavar="FILE", help="input files, uploaded first")
    submit.add_argument("-o", "--output", metavar="NAME", help="output file name (under output/<service>/)")
    submit.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="any other field of the request; VALUE is JSON when it parses and fits the field (true, 3, [\"IfcWall\"])",
    )  # fmt: skip
    submit.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    submit.add_argument("--no-download", action="store_true", help="follow the job but download nothing")
    submit.add_argument("--idempotency-key", metavar="KEY", help="a retried submit with this key returns the same job")
    _download_options(submit)

    status = commands.add_parser("status", parents=[common], help="show a job's status, progress, result or error")
    status.add_argument("job_id", metavar="JOB_ID")
    status.add_argument("--json", action="store_true", help="the job's view as JSON")

    watch = commands.add_parser("watch", parents=[common], help="follow a job to its end (exit code 1 when it fails)")
    watch.add_argument("job_id", metavar="JOB_ID")
    watch.add_argument("--download", action="store_true", help="download the outputs when it completes")
    _download_options(watch)

    cancel = commands.add_parser("cancel", parents=[common], help="cancel a queued job or abort a running one")
    cancel.add_argument("job_id", metavar="JOB_ID")
    cancel.add_argument("--json", action="store_true", help="the job's view as JSON")

    requeue = commands.add_parser("requeue", parents=[common], help="run a failed or aborted job again")
    requeue.add_argument("job_id", metavar="JOB_ID")
    requeue.add_argument("--watch", action="store_true", help="then follow it to its end")
    requeue.add_argument("--download", action="store_true", help="with --watch: download the outputs")
    requeue.add_argument("--json", action="store_true", help="the job's view as JSON")
    _download_options(requeue)

    jobs = commands.add_parser("jobs", parents=[common], help="list recent jobs, newest first")
    jobs.add_argument("--status", metavar="S", help=f"comma-separated: {', '.join(_STATUSES)}")
    jobs.add_argument("--operation", metavar="O", help="comma-separated operations")
    jobs.add_argument("--limit", type=_positive, default=20, metavar="N", help="at most N jobs (default: 20)")
    jobs.add_argument("--json", action="store_true", help="the page as JSON")

    keys = commands.add_parser(
        "keys", parents=[common], help="create, list and revoke API keys (needs an admin key)",
        description="API keys made at run time, each of one project with one role (read, submit, admin); "
        "the keys of IFCFLOW_API_KEYS are listed too but revoked only by editing that setting.",
    )  # fmt: skip
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", parents=[common], help="make a key and print it (shown only this once)",
        epilog="example:\n  ifcflow keys create --project acme --role submit --name 'CI of acme'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    create.add_argument("--project", required=True, metavar="P", help="the project the key belongs to")
    create.add_argument("--role", required=True, choices=_ROLES, help="what the key may do")
    create.add_argument("--name", default="", metavar="N", help="what the key is for (listed, never secret)")
    create.add_argument("--json", action="store_true", help="the whole answer as JSON (the key included)")
    listing = actions.add_parser("list", parents=[common], help="list keys (never the keys themselves)")
    listing.add_argument("--project", metavar="P", help="only this project's keys")
    listing.add_argument("--json", action="store_true", help="the list as JSON")
    revoke = actions.add_parser("revoke", parents=[common], help="revoke a run-time key by its id")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key's id (key_...), as `ifcflow keys list` shows it")
