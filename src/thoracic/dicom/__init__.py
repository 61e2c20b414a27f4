"""DICOM outputs: SR, GSPS and SEG of an analysis, de-identification, and safe file names.

>>> from thoracic.inference.analyzer import Analyzer                      # doctest: +SKIP
>>> from thoracic.dicom import build_results, deidentify_file  # doctest: +SKIP
>>> a = Analyzer.load().analyze("chest.dcm")                   # doctest: +SKIP
>>> build_results(a).save("out/")                              # doctest: +SKIP
{'sr': PosixPath('out/2.25....dcm'), 'gsps': ..., 'seg': ...}
>>> build_results(a, deidentify=True, salt="site secret").save("anon/")  # doctest: +SKIP
>>> deidentify_file("chest.dcm", "anon", salt="site secret")   # doctest: +SKIP
PosixPath('anon/2.25....dcm')

Building the objects needs highdicom (``pip install 'thoracic[dicom]'``); de-identification and
the UID helpers need only pydicom.
"""

from thoracic.dicom.codes import (
    CODING_SCHEME,
    FINDING_CODES,
    REPORT_CODES,
    Concept,
    finding_code,
    finding_label,
)
from thoracic.dicom.deid import deidentify, deidentify_file, pseudonym
from thoracic.dicom.errors import NotDicomSourceError, UnsafeUidError
from thoracic.dicom.results import (
    DEFAULT_MIN_SCORE,
    DicomResults,
    Finding,
    build_results,
)
from thoracic.dicom.uids import hashed_uid, is_valid_uid, safe_uid_name

__all__ = [
    "CODING_SCHEME",
    "Concept",
    "DEFAULT_MIN_SCORE",
    "DicomResults",
    "FINDING_CODES",
    "Finding",
    "NotDicomSourceError",
    "REPORT_CODES",
    "UnsafeUidError",
    "build_results",
    "deidentify",
    "deidentify_file",
    "finding_code",
    "finding_label",
    "hashed_uid",
    "is_valid_uid",
    "pseudonym",
    "safe_uid_name",
]
