"""The one exception hierarchy of thoracic.

Every error the library raises on bad input is a :class:`ThoracicError` and also subclasses the
matching built-in, so ``except ValueError`` keeps working for callers who do not know thoracic:

- :class:`ReadError` (an :class:`OSError`): the file could not be read or decoded at all.
- :class:`InvalidRadiographError` (a :class:`ValueError`): the file was read, but it is not
  something thoracic can analyze (no pixels, multi-frame, a CT, a lateral view, ...).
- :class:`ConfigError` (a :class:`ValueError`): an unknown option or a bad setting.
- :class:`MissingDependencyError` (an :class:`ImportError`): an optional feature needs an extra.

Messages say what was wrong and what to do about it. They name the file by path only, never by
anything read from inside it (patient data never reaches a message or a log).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from os import PathLike

__all__ = [
    "ConfigError",
    "ConstantImageError",
    "CorruptFileError",
    "DuplicateImageIdError",
    "ImageTooLargeError",
    "InvalidRadiographError",
    "MissingDependencyError",
    "MultiFrameError",
    "NON_CHEST_HINT",
    "NoPixelDataError",
    "NotChestRadiographError",
    "PreprocessedImageError",
    "ReadError",
    "ThoracicError",
    "UnsupportedFormatError",
    "UnsupportedTransferSyntaxError",
    "internal_error_message",
]


def _where(path: str | PathLike[str] | None) -> str:
    return f"{path}: " if path is not None else ""


class ThoracicError(Exception):
    """Base class of every error thoracic raises on purpose.

    Parameters
    ----------
    message:
        What was wrong and what to do.
    path:
        The input the error is about, if any; it prefixes the message.
    """

    def __init__(self, message: str, *, path: str | PathLike[str] | None = None) -> None:
        self.path = None if path is None else str(path)
        self.message = message
        super().__init__(f"{_where(path)}{message}")

    def __str__(self) -> str:  # OSError would otherwise format its own way
        return f"{_where(self.path)}{self.message}"

    def __reduce__(self):  # picklable across worker processes
        return (_rebuild, (type(self), self.message, self.path, self.__dict__))


def _rebuild(cls, message, path, state):
    err = cls.__new__(cls)
    ThoracicError.__init__(err, message, path=path)
    err.__dict__.update(state)
    return err


def internal_error_message(err: BaseException) -> str:
    """What a batch's table says of an unexpected (non-thoracic) error: its type, never its text.

    The text of a library's exception may quote header values (patient data), so it stays out
    of manifests, sidecars and logs.
    """
    return f"internal error {type(err).__name__} (message withheld: it may quote header values)"


# --- cannot read -------------------------------------------------------------------------------
class ReadError(ThoracicError, OSError):
    """The input could not be read or decoded."""


class UnsupportedFormatError(ReadError):
    """Neither DICOM nor an image format thoracic reads (PNG, JPEG, TIFF)."""


class CorruptFileError(ReadError):
    """A DICOM or image that is truncated or whose pixel data cannot be decoded."""


class UnsupportedTransferSyntaxError(ReadError):
    """The DICOM's compression needs a decoder that is not installed (the message names it)."""

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike[str] | None = None,
        transfer_syntax: str | None = None,
    ) -> None:
        super().__init__(message, path=path)
        self.transfer_syntax = transfer_syntax


# --- read, but wrong ---------------------------------------------------------------------------
class InvalidRadiographError(ThoracicError, ValueError):
    """The input was read but is not an image thoracic can analyze."""


class NoPixelDataError(InvalidRadiographError):
    """A DICOM without an image (a structured report, a presentation state, ...)."""


class MultiFrameError(InvalidRadiographError):
    """More than one frame: thoracic analyzes single projection radiographs."""


#: The end of a :class:`NotChestRadiographError`'s message where the caller can override the check
#: (the DICOM node cannot, on purpose: it drops the hint).
NON_CHEST_HINT = ". Use allow_non_chest (--allow-non-chest) to analyze it anyway"


class NotChestRadiographError(InvalidRadiographError):
    """A non-radiograph modality (CT, MR, ...), a lateral view or a body part other than the chest.

    Refused by default; ``allow_non_chest=True`` (``--allow-non-chest``) reads it anyway and the
    result is flagged. ``reason`` is a short machine-readable tag such as ``modality:CT``.
    """

    def __init__(self, message: str, *, path: str | None = None, reason: str = "") -> None:
        super().__init__(message, path=path)
        self.reason = reason


class ImageTooLargeError(InvalidRadiographError):
    """Declared dimensions beyond the configured limit (a guard against decompression bombs)."""


class ConstantImageError(InvalidRadiographError):
    """Every pixel has the same value: nothing to window, nothing to see."""


class PreprocessedImageError(InvalidRadiographError):
    """An image ``thoracic dataset export`` wrote through a chain, given to a model whose own chain
    (or the predictor's lung crop) would apply steps to it again: crop twice, CLAHE twice, ...

    Such a PNG carries its chain (the ``thoracic-chain`` text chunk); predict the original images
    instead. ``chain`` is the chain's ``name (spec)`` as the file records it.
    """

    def __init__(self, message: str, *, path: str | None = None, chain: str = "") -> None:
        super().__init__(message, path=path)
        self.chain = chain


class DuplicateImageIdError(ThoracicError, ValueError):
    """Two inputs of one run map to the same image id (their outputs would overwrite each other)."""


# --- configuration and environment -------------------------------------------------------------
class ConfigError(ThoracicError, ValueError):
    """An unknown option or an invalid setting."""

    @classmethod
    def unknown(cls, kind: str, name: str, choices: Iterable[str]) -> ConfigError:
        """Build the error for an unknown name, with a "did you mean" hint.

        >>> str(ConfigError.unknown("step", "clache", ["clahe", "window"]))
        "unknown step 'clache'; did you mean 'clahe'? (choices: clahe, window)"
        """
        choices = sorted(choices)
        close = [c for c in choices if name and c.startswith(name)] or difflib.get_close_matches(name, choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return cls(f"unknown {kind} {name!r}{hint} (choices: {', '.join(choices)})")


class MissingDependencyError(ThoracicError, ImportError):
    """An optional feature was used without the extra that provides it."""

    @classmethod
    def for_feature(cls, feature: str, package: str, extra: str | None = None) -> MissingDependencyError:
        how = f"pip install 'thoracic[{extra}]'" if extra else f"pip install {package}"
        return cls(f"{feature} needs the package {package!r}, which is not installed: {how}")
