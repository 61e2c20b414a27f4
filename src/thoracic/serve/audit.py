"""The audit trail of ``thoracic serve``: one JSON line per analysis request, no patient data.

Each ``POST /v1/analyze`` that reaches the service (refused ones included: no or a wrong token,
over budget, too large, not a chest radiograph, ...) appends one line::

    {"time": "2026-11-26T17:45:03.512Z", "token": "2bb80d537b1d", "subject": "sop_instance_uid",
     "sha256": "9f8e...", "models": ["detector:709391e733ff", "classifier:89e6ac626f90", "lungs:c0199e1840c2"],
     "outcome": "ok", "type": null, "status": 200, "seconds": 0.412, "id": "q3Vb..."}

- ``time``: when the answer was ready (UTC, milliseconds);
- ``token``: :func:`~thoracic.serve.limits.token_id` of the client's token (``null`` when none
  was accepted);
- ``subject`` and ``sha256``: the SHA-256 of the DICOM's SOP Instance UID (``sop_instance_uid``),
  or of the upload's bytes for anything else (``upload``: PNG, JPEG, TIFF, a DICOM whose header
  cannot be read); ``null`` when nothing was received. A site that knows an image's UID can find
  its lines; the line itself names no patient, study or image;
- ``models``: role and the first 12 hex digits of the SHA-256 of each model file (the analysis's
  own, or the service's when it was refused);
- ``outcome``: ``ok``, ``refused`` (a 4xx; ``type`` is the API's error type) or ``error`` (a 5xx or
  an interrupted request; ``type`` says which);
- ``status``: the HTTP status; ``seconds``: from the request's arrival to its answer; ``id``: the
  random result id (also in the request log), ``null`` for refusals before the upload was read.

Lines are appended with one ``write(2)`` each on a file opened with ``O_APPEND`` (mode 0600), under
a lock: a line is whole or absent; a write that fails or comes short is cut back off the file.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import stat
import threading
from typing import Any

from thoracic.errors import ConfigError, ThoracicError

__all__ = ["AuditLog", "check_writable", "subject"]


def _open(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


def check_writable(path: str) -> None:
    """Create ``path`` if needed and check it can be appended to (``ConfigError`` otherwise)."""
    try:
        os.close(_open(path))
    except OSError as err:
        raise ConfigError(f"cannot append to the audit log ({err.strerror or err})", path=path) from err


def subject(data: bytes) -> tuple[str, str]:
    """What an audit line names an upload by: ``("sop_instance_uid", sha256 of the UID)`` for a DICOM
    whose header gives one, else ``("upload", sha256 of the bytes)``.

    >>> subject(b"not a dicom")[0]
    'upload'
    """
    from thoracic.io.dicom.read import parse
    from thoracic.io.raster import looks_like_raster

    if not looks_like_raster(data[:16]):
        try:
            uid = str(parse(data, "<upload>").get("SOPInstanceUID", "") or "").strip()
        except ThoracicError:
            uid = ""
        if uid:
            return "sop_instance_uid", hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()
    return "upload", hashlib.sha256(data).hexdigest()


def now_utc() -> str:
    """The current UTC time as ISO 8601 with milliseconds and ``Z``."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """An append-only JSON-lines file, one whole line per :meth:`write` (thread-safe)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._fd = _open(path)
        except OSError as err:
            raise ConfigError(f"cannot append to the audit log ({err.strerror or err})", path=path) from err
        self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line; raises ``OSError`` (nothing of the line left) when it cannot."""
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")
        with self._lock:
            start = os.lseek(self._fd, 0, os.SEEK_END) if self._regular else 0
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, "short write")
            except OSError:
                if self._regular:
                    try:
                        os.ftruncate(self._fd, start)  # no torn line
                    except OSError:
                        pass
                raise

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
