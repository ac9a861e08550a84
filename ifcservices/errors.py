"""Errors a service answers with: a type and a message for clients, a status code for the worker."""

from __future__ import annotations

from contracts.storage_full import storage_full_cause
from contracts.wire import ErrorInfo


class ServiceError(Exception):
    """A failure the client is told about as is; never carries a traceback."""

    status_code = 500
    error_type = "internal_error"

    def __init__(self, message: str, *, error_type: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if error_type is not None:
            self.error_type = error_type
        if status_code is not None:
            self.status_code = status_code

    def info(self, service: str) -> ErrorInfo:
        return ErrorInfo(type=self.error_type, message=self.message, service=service, status_code=self.status_code)


class BadInput(ServiceError):
    """The request or one of its files cannot be processed: retrying will not help (422)."""

    status_code = 422
    error_type = "invalid_input"


class PathEscape(BadInput):
    """A path that resolves outside the data directory, symlinks followed."""

    error_type = "path_escape"


class Busy(ServiceError):
    """Every child-process slot is taken: the worker retries after ``Retry-After`` seconds."""

    status_code = 503
    error_type = "busy"


class Crashed(ServiceError):
    """The child process died (signal, out of memory) while working on one request."""

    status_code = 500
    error_type = "crashed"


class ProcessingFailed(ServiceError):
    """The tool raised an error we did not foresee; its message is passed on, its traceback is logged."""

    status_code = 500
    error_type = "processing_failed"


class LimitExceeded(ServiceError):
    """The child used up its memory or CPU budget (``ifcservices.limits``): the model asks for more than
    a job may have, so retrying will not help (422)."""

    status_code = 422
    error_type = "limit_exceeded"


class NothingProcessed(BadInput):
    """Every element of the model failed in the tool: skipping them would leave an empty result."""

    error_type = "nothing_processed"


class StorageFull(ServiceError):
    """An output could not be written whole because the storage is full (507, Insufficient Storage).

    Not retried: a full disk seldom frees itself within a retry's backoff, and every retry would fill
    it again with another partial output; ``POST /jobs/{id}/requeue`` runs the job once there is room.
    The message always starts with ``storage full``.
    """

    status_code = 507
    error_type = "storage_full"


class OutputIncomplete(ServiceError):
    """The tool said it succeeded but its output is empty or shorter than it declares (500)."""

    status_code = 500
    error_type = "output_incomplete"


def is_storage_full(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is the storage saying it is full."""
    return storage_full_cause(error) is not None


class StoreUnavailable(ServiceError):
    """The object store (S3) could not be reached or refused a read or write: the worker retries (503)."""

    status_code = 503
    error_type = "storage_unavailable"
