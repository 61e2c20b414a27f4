"""Typed HTTP errors: every 4xx of the API is ``{"error": {"type": ..., "message": ...}}``.

Library errors map to a status by family: :class:`~thoracic.errors.ReadError` (the upload
cannot be read) is 400, or 415 when its format or compression is not supported;
:class:`~thoracic.errors.InvalidRadiographError` (read, but not something thoracic analyzes) is
422. Messages come from the library, which never puts patient data in them.

>>> from thoracic.errors import MultiFrameError
>>> e = from_thoracic(MultiFrameError("3 frames; thoracic analyzes single images"))
>>> e.status, e.type
(422, 'multi_frame')
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from thoracic.errors import (
    ConfigError,
    CorruptFileError,
    InvalidRadiographError,
    MissingDependencyError,
    ReadError,
    ThoracicError,
    UnsupportedFormatError,
    UnsupportedTransferSyntaxError,
)

__all__ = ["ApiError", "error_body", "from_thoracic"]


class ApiError(Exception):
    """An error the API answers with a status, a machine-readable type and a message.

    Parameters
    ----------
    status:
        The HTTP status (4xx; 5xx only for the service's own faults).
    type:
        A short snake_case tag clients can switch on (``"too_large"``, ``"busy"``, ...).
    message:
        What was wrong and what to do, without patient data.
    headers:
        Extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status: int, type: str, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = int(status)
        self.type = type
        self.message = message
        self.headers = dict(headers or {})


def error_body(type: str, message: str) -> dict[str, dict[str, str]]:
    """The JSON body of every error response."""
    return {"error": {"type": type, "message": message}}


def _snake(name: str) -> str:
    name = name.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def from_thoracic(err: ThoracicError) -> ApiError:
    """The API error for a library error raised while reading or analyzing an upload."""
    message = err.message  # without the "<bytes>: " path prefix
    if isinstance(err, UnsupportedTransferSyntaxError):
        return ApiError(415, "unsupported_transfer_syntax", message)
    if isinstance(err, UnsupportedFormatError):
        return ApiError(415, "unsupported_format", message + " (send a DICOM, PNG, JPEG or TIFF file)")
    if isinstance(err, CorruptFileError):
        return ApiError(400, "corrupt_file", message)
    if isinstance(err, ReadError):
        return ApiError(400, "unreadable_file", message)
    if isinstance(err, InvalidRadiographError):
        return ApiError(422, _snake(type(err).__name__), message)
    if isinstance(err, ConfigError):
        return ApiError(400, "bad_request", message)
    if isinstance(err, MissingDependencyError):  # the deployment's fault, not the request's
        return ApiError(501, "not_available", message)
    return ApiError(422, _snake(type(err).__name__), message)
