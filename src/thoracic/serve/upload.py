"""Reading an upload with a hard size cap: a multipart form field ``file`` or the raw request body.

The declared ``Content-Length`` is checked before anything is read, and the stream is counted
while it is read, so an upload beyond the limit costs at most the limit in memory and is
answered 413. The upload's file name is never kept (it may carry a patient's name).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from thoracic.serve.errors import ApiError

__all__ = ["MULTIPART_SLACK", "check_headers", "read_upload"]

#: Bytes a multipart envelope may add around the file (boundaries, part headers, small fields).
MULTIPART_SLACK = 64 * 1024

_REFUSED_TYPES = ("application/json", "application/x-www-form-urlencoded", "text/")


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the upload exceeds the limit of {limit / (1 << 20):.1f} MiB")


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        raise ApiError(400, "bad_request", "the Content-Length header is not a number") from None
    if n < 0:
        raise ApiError(400, "bad_request", "the Content-Length header is negative")
    return n


async def _capped(request: Request, cap: int, limit: int) -> AsyncGenerator[bytes, None]:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > cap:
            raise _too_large(limit)
        if chunk:
            yield chunk


def check_headers(request: Request, limit: int) -> None:
    """Refuse from the headers alone what no body can fix (before a worker slot is taken).

    Raises
    ------
    ApiError
        415 for a form or text body, 413 for a declared length beyond the limit, 400 for a
        declared empty body or a malformed ``Content-Length``.
    """
    ctype = _content_type(request)
    if ctype.startswith(_REFUSED_TYPES):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"cannot take a body of type {ctype}: send the image as the multipart field 'file' or as the raw body "
            "(with curl: -F file=@image.dcm, or --data-binary @image.dcm -H 'Content-Type: application/dicom')",
        )
    declared = _declared_length(request)
    if declared is not None and declared > limit + (MULTIPART_SLACK if ctype == "multipart/form-data" else 0):
        raise _too_large(limit)
    if declared == 0:
        raise ApiError(400, "empty_file", "the upload is empty: send a DICOM, PNG, JPEG or TIFF file")


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_upload(request: Request, limit: int) -> bytes:
    """The uploaded file's bytes, at most ``limit`` of them.

    Raises
    ------
    ApiError
        The errors of :func:`check_headers`; 413 when the stream goes beyond the limit, 400 for
        a broken multipart form or one without a file.
    """
    check_headers(request, limit)
    multipart = _content_type(request) == "multipart/form-data"
    cap = limit + (MULTIPART_SLACK if multipart else 0)
    if not multipart:
        body = bytearray()
        async for chunk in _capped(request, cap, limit):
            body += chunk
        return bytes(body)

    parser = MultiPartParser(request.headers, _capped(request, cap, limit), max_files=1, max_fields=8,
                             max_part_size=4096)
    try:
        form = await parser.parse()
    except MultiPartException as err:
        raise ApiError(400, "bad_multipart", f"the multipart form cannot be parsed: {err.message}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            upload = next((v for _, v in form.multi_items() if isinstance(v, UploadFile)), None)
        if upload is None:
            raise ApiError(400, "no_file", "the form has no file: send the image as the multipart field 'file'")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise _too_large(limit)
        return data
    finally:
        await form.close()
