"""DICOM radiographs, one job a module.

- :mod:`~thoracic.io.dicom.read`: the entry point, :func:`read_dicom` (header parsed, checked,
  pixels decoded and mapped to ``[0, 1]``); imported, and pydicom with it, when first used.
- :mod:`~thoracic.io.dicom.preamble`: :func:`looks_like_dicom`, without pydicom.
- :mod:`~thoracic.io.dicom.header`: single header values, typed; the identifying ones.
- :mod:`~thoracic.io.dicom.checks`: chest radiograph, Image Pixel attributes, size, decoder.
- :mod:`~thoracic.io.dicom.codestream`: compressed pixel data sniffed before decoding, JPEG 2000
  at a reduced resolution, CharLS.
- :mod:`~thoracic.io.dicom.pixels`: decoding, grayscale, Modality LUT, VOI LUT or window (the
  window functions themselves are in :mod:`thoracic.io.voi`).
- :mod:`~thoracic.io.dicom.logs`: pydicom's log records without the values they quote, installed
  when this package is imported.
"""

from typing import TYPE_CHECKING

from thoracic._lazy import lazy
from thoracic.io.dicom.logs import redact_pydicom_logs
from thoracic.io.dicom.preamble import looks_like_dicom

if TYPE_CHECKING:
    from thoracic.io.dicom.read import read_dicom
else:  # pydicom (about 0.1 s to import) only once a DICOM is read: thoracic._lazy
    __getattr__, __dir__ = lazy(__name__, {"thoracic.io.dicom.read": ("read_dicom",)})

__all__ = ["looks_like_dicom", "read_dicom"]

redact_pydicom_logs()  # before pydicom logs anything: it needs no pydicom
