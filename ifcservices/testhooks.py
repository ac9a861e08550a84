"""TEST-ONLY failure injection, inert unless ``IFCSERVICES_TEST_HOOKS=1`` is in the environment.

The test suite needs a child that segfaults, runs out of memory or runs long on demand, through the
real HTTP and process machinery. With the variable set, an input file whose name contains one of
these markers triggers it in the child, before the tool runs:

- ``__segv__``: the child kills itself with SIGSEGV, as ifcopenshell does on some broken models;
- ``__oom__``: the child raises ``MemoryError``;
- ``__slowN__``: the child sleeps N seconds (reporting progress) before doing the real work.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from ifcservices.progress import ProgressFn

ENV_VAR = "IFCSERVICES_TEST_HOOKS"
_SLOW = re.compile(r"__slow(\d+)__")


def enabled() -> bool:
    return os.environ.get(ENV_VAR) == "1"


def before_task(inputs: Iterable[Path], progress: ProgressFn) -> None:
    """Run the hook an input's name asks for; does nothing unless the test variable is set."""
    if not enabled():
        return
    for path in inputs:
        name = path.name
        if "__segv__" in name:
            os.kill(os.getpid(), signal.SIGSEGV)
        if "__oom__" in name:
            raise MemoryError
        slow = _SLOW.search(name)
        if slow:
            steps = int(slow.group(1)) * 10
            for step in range(steps):
                progress(50.0 * step / steps, "test hook: sleeping")
                time.sleep(0.1)
