"""The client commands: ``submit``, ``status``, ``watch``, ``cancel``, ``requeue``, ``jobs`` and ``keys``.

Results a script wants (a job id, downloaded paths, ``--json`` views) go to stdout; progress, notes and
errors go to stderr.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from cli.connection import EXIT_JOB_FAILED, EXIT_OK, ClientError, Connection, resolve_connection
from cli.display import describe_error, job_summary, jobs_table, make_display
from cli.follow import Follower
from cli.gateway import Gateway, upload_kind
from cli.keys import run_keys
from cli.request_body import parse_operation, parse_sets, plan_request, shape_of


class Client:
    """One client command's run: the connection, the gateway, and where output goes."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO, environ: Mapping[str, str]) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.conn: Connection = resolve_connection(
            getattr(args, "client_url", None), getattr(args, "client_api_key", None), environ
        )
        self.job_id: str | None = getattr(args, "job_id", None)  # the job this run is about, once known

    def say(self, text: str) -> None:
        """A note for the person at the terminal."""
        self.err.write(text + "\n")
        self.err.flush()

    def result(self, text: str) -> None:
        """Output a script reads."""
        self.out.write(text + "\n")
        self.out.flush()

    def run(self) -> int:
        handlers: dict[str, Callable[[Gateway], int]] = {
            "submit": self.submit,
            "status": self.status,
            "watch": self.watch,
            "cancel": self.cancel,
            "requeue": self.requeue,
            "jobs": self.jobs,
            "keys": lambda gateway: run_keys(self.args, gateway, self.say, self.result),
        }
        with Gateway(self.conn) as gateway:
            return handlers[self.args.command](gateway)

    # --- commands ---------------------------------------------------------------------------------

    def submit(self, gateway: Gateway) -> int:
        args = self.args
        shape = shape_of(parse_operation(args.operation))
        plan = plan_request(shape, list(args.files), args.output, parse_sets(args.set, shape))
        for _, path in plan.files:
            upload_kind(path)  # every file's upload route is known before the first upload starts
        remote = []
        for _, path in plan.files:
            uploaded = gateway.upload(path)
            self.say(f"uploaded {path} as {uploaded}")
            remote.append(uploaded)
        accepted = gateway.submit(shape.path, plan.body(remote), args.idempotency_key)
        job_id = self.job_id = str(accepted["job_id"])
        if args.no_wait:
            self.result(job_id)
            return EXIT_OK
        self.say(f"job {job_id} {accepted.get('status', 'queued')} ({shape.operation.value})")
        return self._follow(gateway, job_id, download=not args.no_download)

    def status(self, gateway: Gateway) -> int:
        view = gateway.job(self.args.job_id)
        self.result(json.dumps(view, indent=2) if self.args.json else "\n".join(job_summary(view)))
        return EXIT_OK

    def watch(self, gateway: Gateway) -> int:
        return self._follow(gateway, self.args.job_id, download=self.args.download)

    def cancel(self, gateway: Gateway) -> int:
        view = gateway.cancel(self.args.job_id)
        if self.args.json:
            self.result(json.dumps(view, indent=2))
        elif view.get("status") in ("aborted", "failed", "complete"):
            self.result(f"job {view['job_id']} {view['status']}")
        else:
            self.result(f"job {view['job_id']} is being aborted (still {view.get('status')})")
        return EXIT_OK

    def requeue(self, gateway: Gateway) -> int:
        view = gateway.requeue(self.args.job_id)
        if self.args.json:
            self.result(json.dumps(view, indent=2))
        else:
            self.result(f"job {view['job_id']} requeued ({view.get('status')})")
        if self.args.watch:
            return self._follow(gateway, self.args.job_id, download=self.args.download)
        return EXIT_OK

    def jobs(self, gateway: Gateway) -> int:
        args = self.args
        page = gateway.jobs(args.status, args.operation, args.limit)
        if args.json:
            self.result(json.dumps(page, indent=2))
            return EXIT_OK
        found: list[dict[str, Any]] = page.get("jobs") or []
        if not found:
            self.say("no jobs")
            return EXIT_OK
        self.result("\n".join(jobs_table(found)))
        return EXIT_OK

    # --- following and downloading ----------------------------------------------------------------

    def _follow(self, gateway: Gateway, job_id: str, *, download: bool) -> int:
        display = make_display(self.err, f"job {job_id[:8]}", plain=self.args.plain)
        try:
            view = Follower(self.conn, gateway, job_id, display).run()
        finally:
            display.close()
        status = view.get("status")
        if status != "complete":
            self.say(f"job {job_id} {status}: {describe_error(view)}")
            return EXIT_JOB_FAILED
        outputs = [str(p) for p in ((view.get("result") or {}).get("output_files") or [])]
        if not download:
            for remote in outputs:
                self.result(remote)
            return EXIT_OK
        for remote in outputs:
            local = gateway.download(remote, self.args.download_dir)
            self.say(f"downloaded {remote}")
            self.result(str(local))
        if not outputs:
            self.say(f"job {job_id} complete; it reported no output files")
        return EXIT_OK


def run_client(args: argparse.Namespace, out: TextIO, err: TextIO, environ: Mapping[str, str]) -> int:
    """Run one client command; problems become a line on stderr and an exit code, never a traceback."""
    client: Client | None = None
    try:
        client = Client(args, out, err, environ)
        return client.run()
    except ClientError as exc:
        err.write(f"ifcflow: {exc.message}\n")
        err.flush()
        return exc.exit_code
    except KeyboardInterrupt:
        job = client.job_id if client else None
        hint = f"; the job goes on: ifcflow watch {job}" if job else ""
        err.write(f"\nifcflow: interrupted{hint}\n")
        err.flush()
        return 130
