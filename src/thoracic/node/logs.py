"""Log hygiene of the node: no header values and no instance UIDs in any log line.

thoracic's own messages never carry patient data; libraries do: pynetdicom logs every DIMSE
message with its SOP Instance UID (debug level), highdicom names the source instance it copies
from, and pydicom quotes the values it finds invalid ("Invalid value for VR CS: 'smith'"), both
as a log record and as a Python warning. :class:`RedactIdentifiers`, put on the node's log
handlers (with :func:`logging.captureWarnings` so warnings pass through them too):

- rewrites any UID outside the DICOM standard's own root ``1.2.840.10008`` (SOP classes and
  transfer syntaxes stay readable) as ``uid#<10 hex>``, the same digest for the same UID, so
  lines can still be correlated; IPv4 addresses (four numbers up to 255, as ``0.0.0.0`` or
  ``1.2.3.4``) stay readable;
- replaces quoted text in pydicom's records and in warnings by ``'<value>'``.
"""

from __future__ import annotations

import hashlib
import logging
import re

__all__ = ["RedactIdentifiers", "redact_quoted", "redact_uids"]

# four or more components (dotted versions have three), or a UUID-derived 2.25.<integer>
_UID = re.compile(r"(?<![\d.])(?:[0-2](?:\.(?:0|[1-9]\d*)){3,}|2\.25\.\d{6,})(?![\d.]*\d)")
_STANDARD = "1.2.840.10008."
_QUOTED = re.compile(r"(?P<q>['\"]).*?(?P=q)")


def _is_ipv4(text: str) -> bool:
    """Four numbers of 0 to 255: a network address (a UID has more components or larger ones)."""
    parts = text.split(".")
    return len(parts) == 4 and all(int(p) <= 255 for p in parts)


def _digest(match: re.Match[str]) -> str:
    uid = match.group(0)
    if uid.startswith(_STANDARD) or _is_ipv4(uid):
        return uid
    return "uid#" + hashlib.sha256(uid.encode()).hexdigest()[:10]


def redact_uids(text: str) -> str:
    """Replace instance UIDs in ``text`` by digests (standard DICOM UIDs are kept).

    >>> redact_uids("CT 1.2.840.10008.5.1.4.1.1.2 instance 1.2.826.0.1.3680043.8.498.1 from 127.0.0.1")
    'CT 1.2.840.10008.5.1.4.1.1.2 instance uid#6dadc91b85 from 127.0.0.1'
    >>> redact_uids("SR 2.25.329800735698586629295641978511506172918, pynetdicom 3.0.4, Orthanc 1.10.1")
    'SR uid#09df196145, pynetdicom 3.0.4, Orthanc 1.10.1'
    >>> redact_uids("listening on 0.0.0.0:11112; association from 2.1.0.7 port 4242; study 1.2.3.4.5")
    'listening on 0.0.0.0:11112; association from 2.1.0.7 port 4242; study uid#b8b9f26c0d'
    """
    return _UID.sub(_digest, text)


def redact_quoted(text: str) -> str:
    """Replace every quoted part of ``text`` by ``'<value>'``.

    >>> redact_quoted("Invalid value for VR CS: 'smith'. The value \\"x\\" too")
    "Invalid value for VR CS: '<value>'. The value '<value>' too"
    """
    return _QUOTED.sub("'<value>'", text)


class RedactIdentifiers(logging.Filter):
    """A handler filter: :func:`redact_uids` on every record, :func:`redact_quoted` on pydicom's
    records and on warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_uids(message)
        if record.name == "py.warnings" or record.name.split(".")[0] == "pydicom":
            redacted = redact_quoted(redacted)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
