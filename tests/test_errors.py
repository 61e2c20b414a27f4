"""The error hierarchy of ``thoracic.errors``: the matching built-ins, and pickling with the attributes."""

from __future__ import annotations

import pickle
from pathlib import Path

from thoracic.errors import (
    ConstantImageError,
    CorruptFileError,
    ImageTooLargeError,
    InvalidRadiographError,
    MultiFrameError,
    NoPixelDataError,
    NotChestRadiographError,
    ReadError,
    UnsupportedFormatError,
    UnsupportedTransferSyntaxError,
)


def test_errors_subclass_the_builtins():
    from thoracic import errors

    assert issubclass(errors.ReadError, OSError) and issubclass(errors.ReadError, errors.ThoracicError)
    assert issubclass(errors.InvalidRadiographError, ValueError)
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.MissingDependencyError, ImportError)


def test_base_classes() -> None:
    for cls in (UnsupportedFormatError, CorruptFileError, UnsupportedTransferSyntaxError):
        assert issubclass(cls, ReadError) and issubclass(cls, OSError)
    for cls in (NoPixelDataError, MultiFrameError, NotChestRadiographError, ImageTooLargeError, ConstantImageError):
        assert issubclass(cls, InvalidRadiographError) and issubclass(cls, ValueError)


def test_errors_pickle_with_their_attributes() -> None:
    errors = [
        UnsupportedTransferSyntaxError("needs a decoder", path="/x/a.dcm", transfer_syntax="1.2.3"),
        NotChestRadiographError("a CT", path=Path("/x/b.dcm"), reason="modality:CT"),
        CorruptFileError("cut short"),
        ReadError("no such file", path="/x/c.dcm"),
    ]
    for err in errors:
        clone = pickle.loads(pickle.dumps(err))
        assert type(clone) is type(err)
        assert (str(clone), clone.path, clone.__dict__) == (str(err), err.path, err.__dict__)
    assert str(errors[1]) == "/x/b.dcm: a CT"
    assert errors[2].path is None and str(errors[2]) == "cut short"
