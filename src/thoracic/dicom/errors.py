"""Errors of the DICOM outputs (all :class:`~thoracic.errors.ConfigError`, so ``ValueError``)."""

from __future__ import annotations

from thoracic.errors import ConfigError

__all__ = ["NotDicomSourceError", "UnsafeUidError"]


class NotDicomSourceError(ConfigError):
    """DICOM results were asked for an image that was not read from a DICOM file (PNG, JPEG)."""


class UnsafeUidError(ConfigError):
    """A UID that is not a valid DICOM UID, so it cannot name a file (it could escape the folder)."""
