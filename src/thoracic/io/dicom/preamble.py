"""Whether bytes start like a DICOM file: the preamble test, without importing pydicom.

>>> looks_like_dicom(bytes(128) + b"DICM")
True
>>> looks_like_dicom(b"PNG" + bytes(129))
False
"""

from __future__ import annotations

__all__ = ["looks_like_dicom"]


def looks_like_dicom(head: bytes) -> bool:
    """Whether ``head`` (the first 132 bytes) has the DICOM preamble's ``DICM`` prefix."""
    return len(head) >= 132 and head[128:132] == b"DICM"
