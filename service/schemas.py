"""Bodies the gateway adds around the operations' own request models."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from store.job_store import Priority
from store.job_view import JobStatus


class JobOptions(BaseModel):
    """Scheduling fields any operation request may carry; they never reach the service."""

    defer_by: float | None = Field(None, ge=0, le=365 * 86400, description="seconds to wait before running")
    defer_until: datetime | None = Field(None, description="ISO 8601 time to run at (with a timezone)")
    priority: Priority = Field("normal", description="high jobs start before normal ones, low ones after")
    callback_url: str | None = Field(
        None, max_length=2000, description="POSTed the final status, signed (X-Ifcflow-Signature)"
    )
    cache: bool = Field(False, description="reuse the result of the same operation on the same file contents")

    @model_validator(mode="after")
    def _one_schedule(self) -> JobOptions:
        if self.defer_by is not None and self.defer_until is not None:
            raise ValueError("defer_by and defer_until: give one, not both")
        if self.defer_until is not None and self.defer_until.tzinfo is None:
            raise ValueError("defer_until: needs a timezone, e.g. 2026-01-01T08:00:00Z")
        # Bounded as defer_by is: a job parked for years would hold its record (and queue entry) that long.
        if self.defer_until is not None and (
            self.defer_until - datetime.now(self.defer_until.tzinfo)
        ).total_seconds() > 365 * 86400:
            raise ValueError("defer_until: at most 365 days ahead, as defer_by")
        return self


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    status_url: str
    ws_url: str


class FileVersion(BaseModel):
    """One stored version of a file: ``version`` is the sha256 of its bytes (what ``?version=`` names)."""

    version: str
    size: int
    modified_at: datetime
    latest: bool


class FileInfo(BaseModel):
    path: str
    size: int
    modified_at: datetime
    version: str = Field(description="sha256 of the latest bytes")
    versions: list[FileVersion] | None = Field(None, description="with ?versions=true: every version, newest first")


class UploadResult(BaseModel):
    """ifcflow's keys (``path`` data-dir relative), and the RQ system's (``file_path`` as it answered:
    ``/uploads/<name>``, which every path field accepts, so flows chain it into the next request;
    ``version_id``, which ``input_version_id`` pins a job to)."""

    filename: str
    path: str
    size: int
    message: str
    file_path: str
    original_filename: str
    version_id: str = Field(description="this upload's version: the sha256 of its bytes")
    sha256: str


class PresignRequest(BaseModel):
    """A big model sent straight to the store: ask for a URL, PUT the file there, then confirm."""

    model_config = ConfigDict(extra="forbid")
    filename: str = Field(min_length=1, max_length=512)
    file_type: Literal["ifc", "ids", "bcf", "csv"]
    size: int | None = Field(None, ge=0, description="the file's size, refused at once when over the limit")


class PresignedUploadInfo(BaseModel):
    upload_id: str
    url: str = Field(description="PUT the file's bytes here (no API key: the URL is the credential)")
    method: str
    headers: dict[str, str] = Field(description="send these headers with the PUT")
    expires_in: int
    confirm_url: str = Field(description="POST {upload_id} here once the PUT is done")
    path: str = Field(description="where the file will be once confirmed")


class ConfirmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upload_id: str = Field(min_length=1, max_length=128)
