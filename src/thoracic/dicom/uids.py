"""UIDs: checking them, naming files after them, and deterministic hashed replacements."""

from __future__ import annotations

import hashlib
import hmac
import re

from thoracic.dicom.errors import UnsafeUidError

__all__ = ["hashed_uid", "is_valid_uid", "safe_uid_name"]

# PS3.5 9.1: components of digits separated by ".", no leading zero in a multi-digit component,
# at most 64 characters in all.
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_MAX_UID = 64


def is_valid_uid(uid: object) -> bool:
    """Whether ``uid`` is a syntactically valid DICOM UID (PS3.5 9.1).

    >>> is_valid_uid("1.2.840.10008.5.1.4.1.1.1"), is_valid_uid("../../x"), is_valid_uid("1.02")
    (True, False, False)
    """
    return isinstance(uid, str) and 0 < len(uid) <= _MAX_UID and _UID.fullmatch(uid) is not None


def safe_uid_name(uid: object, suffix: str = ".dcm") -> str:
    """A file name made from a UID, refusing anything that is not a valid UID.

    Only digits and dots can pass, so the name can never contain a path separator, ``..``
    or a control character.

    Raises
    ------
    UnsafeUidError
        ``uid`` is empty, longer than 64 characters, or not of the form ``digits(.digits)*``.

    >>> safe_uid_name("1.2.826.0.1.3680043.8.498.1")
    '1.2.826.0.1.3680043.8.498.1.dcm'
    >>> safe_uid_name("../../x")
    Traceback (most recent call last):
    ...
    thoracic.dicom.errors.UnsafeUidError: not a valid DICOM UID (7 characters); refusing to use it as a file name
    """
    if not is_valid_uid(uid):
        length = len(uid) if isinstance(uid, str) else 0
        what = "an empty UID" if not length else f"not a valid DICOM UID ({length} characters)"
        # the value itself stays out of the message: it came from a file and may be anything
        raise UnsafeUidError(f"{what}; refusing to use it as a file name")
    return f"{uid}{suffix}"


def hashed_uid(uid: str, salt: bytes) -> str:
    """A deterministic replacement UID ``2.25.<integer>`` for ``uid`` under ``salt``.

    The integer is the first 128 bits of HMAC-SHA256(salt, uid) (PS3.5 B.2: UUID-derived UIDs
    under the ``2.25`` root), so the same UID maps to the same replacement wherever it occurs,
    and the original cannot be recovered without the salt.

    >>> hashed_uid("1.2.3", b"salt") == hashed_uid("1.2.3", b"salt") != hashed_uid("1.2.4", b"salt")
    True
    """
    digest = hmac.new(salt, str(uid).strip().encode("ascii", "replace"), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"
