"""What "the storage is full" looks like, for every writer of the data directory: the gateway's uploads
and the IFC services' outputs and scratch space name it the same way."""

from __future__ import annotations

import errno
import os

# errno values that mean "the storage is full": no space, over quota, over the file-size limit.
STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def storage_full_cause(error: BaseException) -> OSError | None:
    """The OSError with a storage-full errno in ``error``'s chain (libraries wrap failed writes in their
    own errors), or None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:  # a cycle in the chain must not hang
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in STORAGE_FULL_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


def storage_full_reason(error: BaseException | None) -> str:
    """The reason in lower case ("no space left on device", "disk quota exceeded", ...)."""
    cause = storage_full_cause(error) if error is not None else None
    return os.strerror(cause.errno if cause is not None and cause.errno else errno.ENOSPC).lower()
