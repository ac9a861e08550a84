"""The store of uploads and outputs: ``open_storage(settings)`` picks the backend by its URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from settings import Settings
from storage.base import NotFound, PresignedUpload, Storage, StorageError, StoreFull, Version

__all__ = ["NotFound", "PresignedUpload", "Storage", "StorageError", "StoreFull", "Version", "open_storage"]


def open_storage(settings: Settings) -> Storage:
    """The backend ``settings.storage_location()`` names; closed by the caller's lifespan (``close``)."""
    location = settings.storage_location()
    parts = urlsplit(location)
    if parts.scheme == "file":
        from storage.local import LocalStorage

        return LocalStorage(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        from storage.s3 import S3Storage

        return S3Storage(
            bucket=parts.netloc,
            prefix=parts.path.strip("/"),
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region,
            presign_expires=settings.presign_expires,
            public_endpoint_url=settings.s3_public_endpoint_url or None,
        )
    raise ValueError(f"IFCFLOW_STORAGE_URL: {location!r} is neither file:///path nor s3://bucket/prefix")
