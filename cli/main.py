"""``ifcflow``: the console script."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cli.client_args import CLIENT_COMMANDS, add_client_commands, connection_options
from cli.plan import UpOptions


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError("must be a TCP port (1-65535)")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ifcflow", description="IFC processing as a service.")
    connection_options(parser, None)  # for the client commands; also accepted after the command
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = commands.add_parser(
        "up",
        help="run the whole pipeline on this machine",
        description="Start Redis (unless IFCFLOW_REDIS_URL is set), the IFC services, the workers and the "
        "gateway; Ctrl-C stops them all.",
    )
    up.add_argument("--workers", type=_positive, default=1, help="worker processes (default: 1)")
    up.add_argument("--data-dir", type=Path, default=Path("data"), help="uploads, outputs, Redis files (./data)")
    up.add_argument("--host", default="127.0.0.1", help="gateway address (default: 127.0.0.1)")
    up.add_argument("--port", type=_port, default=8000, help="gateway port (default: 8000)")
    up.add_argument("--services-port", type=_port, default=8100, help="IFC services port (default: 8100)")
    up.add_argument("--api-key", help="API key (default: IFCFLOW_API_KEYS, else a new one, printed)")
    up.add_argument("--ready-timeout", type=float, default=90.0, help="seconds to wait for everything to answer")
    up.add_argument("--stop-timeout", type=float, default=60.0, help="seconds workers get to finish on stop")
    add_client_commands(commands)
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; ``submit``'s files may also come after its options (``submit OP -o X a b``)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "submit":
        # argparse gives the files only the first run of positionals; later ones come back unrecognised.
        files = [arg for arg in extra if not arg.startswith("-")]
        args.files = [*args.files, *(Path(arg) for arg in files)]
        extra = [arg for arg in extra if arg not in files]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.command == "up":
        from cli.up import run_up

        return run_up(
            UpOptions(
                workers=args.workers,
                data_dir=args.data_dir,
                host=args.host,
                port=args.port,
                services_port=args.services_port,
                api_key=args.api_key,
                ready_timeout=args.ready_timeout,
                stop_timeout=args.stop_timeout,
            )
        )
    if args.command in CLIENT_COMMANDS:
        try:
            from cli.client_commands import run_client
        except ImportError as exc:  # httpx and websockets come with the [cli] extra
            print(f"ifcflow: {args.command} needs the cli extra ({exc}): pip install 'ifcflow[cli]'", file=sys.stderr)
            return 2
        return run_client(args, sys.stdout, sys.stderr, os.environ)
    return 2  # pragma: no cover (argparse requires a command)


if __name__ == "__main__":
    sys.exit(main())
