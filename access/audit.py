"""The audit log: one line per state-changing action, saying who (key id and project), what, on what.

Lines go to the one structured log stream under the logger ``audit`` (event ``audit``), so they can be
routed apart by that name; a key itself is never part of one.
"""

from __future__ import annotations

import structlog

from access.grants import Caller

log = structlog.get_logger("audit")


def audit(caller: Caller, action: str, **target: object) -> None:
    """Record that ``caller`` did ``action`` (``job.submit``, ``file.upload``, ``key.revoke``, ...) to ``target``."""
    log.info("audit", action=action, key_id=caller.key_id, project=caller.project, role=caller.role.value,
             **{name: value for name, value in target.items() if value is not None})
