"""Reading radiographs: DICOM (uncompressed, JPEG, JPEG 2000, JPEG-LS, RLE), PNG, JPEG, TIFF.

>>> from thoracic.io import read
>>> rg = read("chest.dcm")  # doctest: +SKIP
>>> rg.pixels.dtype, rg.pixels.min() >= 0, rg.pixels.max() <= 1  # doctest: +SKIP
(dtype('float32'), True, True)
"""

from thoracic.io.ids import KNOWN_EXTENSIONS, check_unique_ids, image_id
from thoracic.io.radiograph import DEFAULT_MAX_PIXELS, Radiograph, ReadConfig
from thoracic.io.read import Source, read
from thoracic.io.size import image_size

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "KNOWN_EXTENSIONS",
    "Radiograph",
    "ReadConfig",
    "Source",
    "check_unique_ids",
    "image_id",
    "image_size",
    "read",
]
