"""Library errors as HTTP problems (``thoracic.serve.errors``; named so beside tests/test_errors.py)."""

from __future__ import annotations

import pytest

from thoracic import errors
from thoracic.serve.errors import from_thoracic


@pytest.mark.parametrize(
    ("err", "status", "kind"),
    [
        (errors.UnsupportedFormatError("not an image"), 415, "unsupported_format"),
        (errors.UnsupportedTransferSyntaxError("needs pylibjpeg"), 415, "unsupported_transfer_syntax"),
        (errors.CorruptFileError("truncated"), 400, "corrupt_file"),
        (errors.ReadError("cannot be read"), 400, "unreadable_file"),
        (errors.NotChestRadiographError("lateral", reason="view:LL"), 422, "not_chest_radiograph"),
        (errors.MultiFrameError("3 frames"), 422, "multi_frame"),
        (errors.NoPixelDataError("an SR"), 422, "no_pixel_data"),
        (errors.ImageTooLargeError("too many pixels"), 422, "image_too_large"),
        (errors.ConstantImageError("flat"), 422, "constant_image"),
        (errors.ConfigError("bad"), 400, "bad_request"),
        (errors.MissingDependencyError.for_feature("SEG", "highdicom", "dicom"), 501, "not_available"),
    ],
)
def test_library_errors_map_to_typed_statuses_without_the_path(err, status, kind):
    err.path = "<bytes>"
    api = from_thoracic(err)
    assert (api.status, api.type) == (status, kind)
    assert "<bytes>" not in api.message and api.message
