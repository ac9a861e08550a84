"""``ifcflow keys create|list|revoke``: the gateway's admin keys API (service/routers/keys.py).

``create`` prints the new key alone on stdout (``KEY=$(ifcflow keys create ...)``): it is shown only
this once, the gateway keeps just its digest. Notes go to stderr.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from cli.connection import EXIT_OK
from cli.gateway import Gateway

_COLUMNS = ("KEY_ID", "PROJECT", "ROLE", "SOURCE", "CREATED", "NAME")


def keys_table(keys: list[dict[str, Any]]) -> list[str]:
    """One line per key: its id, project, role, where it comes from, when made, and its name."""
    rows = [_COLUMNS]
    for key in keys:
        created = str(key.get("created_at") or "-")
        rows.append((str(key.get("key_id", "?")), str(key.get("project", "?")), str(key.get("role", "?")),
                     str(key.get("source", "?")), created, str(key.get("name") or "")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]).rstrip() for row in rows]


def run_keys(args: argparse.Namespace, gateway: Gateway, say: Callable[[str], None],
             result: Callable[[str], None]) -> int:
    """One ``ifcflow keys`` action; ``say`` is for the person, ``result`` for a script."""
    if args.keys_command == "create":
        made = gateway.create_key(args.project, args.role, args.name)
        if args.json:
            result(json.dumps(made, indent=2))
        else:
            result(str(made["key"]))
            say(f"created {made['key_id']}: project {made['project']}, role {made['role']}; keep the key now, "
                "it is not shown again")
        return EXIT_OK
    if args.keys_command == "list":
        found = gateway.list_keys(args.project)
        if args.json:
            result(json.dumps(found, indent=2))
        elif not found:
            say("no keys" + (f" of project {args.project}" if args.project else ""))
        else:
            result("\n".join(keys_table(found)))
        return EXIT_OK
    gateway.revoke_key(args.key_id)
    say(f"revoked {args.key_id} (every gateway refuses it within seconds)")
    return EXIT_OK
