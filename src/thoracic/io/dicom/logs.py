"""pydicom's log records without the element values they quote (a value may be a patient's name)."""

from __future__ import annotations

import logging
import re

__all__ = ["RedactValues", "redact_pydicom_logs"]


class RedactValues(logging.Filter):
    """Keep element values out of pydicom's log records.

    pydicom logs an invalid value verbatim (``Invalid value for VR DA: '1937-04-12'``), and the
    value may be a patient's name, id or birth date. The record stays (tag, VR and rule are
    useful); quoted values become ``<value>``.
    """

    _QUOTED = re.compile(r"b?'(?:[^'\\]|\\.)*'" + r'|b?"(?:[^"\\]|\\.)*"')

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._QUOTED.sub("<value>", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_REDACT = RedactValues()


def redact_pydicom_logs() -> None:
    """Install :class:`RedactValues` on the ``pydicom`` logger (once; importing thoracic.io does it)."""
    logging.getLogger("pydicom").addFilter(_REDACT)
