"""Outputs appear whole or not at all: written in a hidden staging folder, then renamed into place.

The staging folder sits in the output's own folder, so the final ``os.replace`` is an atomic rename on
one filesystem, and files keep their final names while written (an OBJ names its MTL file inside).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_output(final: Path) -> Iterator[tuple[Path, list[Path]]]:
    """Yield ``(temporary path, committed)``; on success every file written beside the temporary path
    is moved into ``final``'s folder (``final`` itself last) and listed in ``committed``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=final.parent))
    committed: list[Path] = []
    try:
        yield staging / final.name, committed
        produced = sorted(p for p in staging.iterdir() if p.is_file())
        if staging / final.name not in produced:
            raise FileNotFoundError(f"the tool wrote no {final.name}")
        # Companions (an OBJ's MTL) first, so a reader that sees the main file finds them too.
        produced.sort(key=lambda p: p.name == final.name)
        for path in produced:
            target = final.parent / path.name
            os.replace(path, target)
            committed.append(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
