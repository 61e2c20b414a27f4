"""Coded concepts of the DICOM outputs: one per VinDr finding, plus the report's own concepts.

Every code was checked (see ``docs/clinic/dicom.md`` for the sources and what could not be
checked). Where no standard concept fits, the private coding scheme ``99THORACIC`` is used; its
codes are stable and documented there.

>>> FINDING_CODES["Pneumothorax"].value, FINDING_CODES["Pneumothorax"].scheme_designator
('36118008', 'SCT')
>>> sorted(FINDING_CODES) == sorted(FINDINGS)
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from thoracic.errors import ConfigError
from thoracic.labels import FINDINGS

__all__ = [
    "CODING_SCHEME",
    "Concept",
    "FINDING_CODES",
    "REPORT_CODES",
    "finding_code",
    "finding_label",
]

#: The private coding scheme of thoracic (``99`` prefix: a local scheme, PS3.16 8.2).
CODING_SCHEME = "99THORACIC"


@dataclass(frozen=True)
class Concept:
    """A code, as highdicom and pydicom take it (``value``, ``scheme_designator``, ``meaning``)."""

    value: str
    scheme_designator: str
    meaning: str

    def code(self):
        """The :class:`pydicom.sr.coding.Code` of this concept."""
        from pydicom.sr.coding import Code

        return Code(self.value, self.scheme_designator, self.meaning)

    def coded(self):
        """The :class:`highdicom.sr.CodedConcept` of this concept."""
        from highdicom.sr import CodedConcept

        return CodedConcept(self.value, self.scheme_designator, self.meaning)


#: VinDr finding name -> concept of the finding type (SR "Finding", GSPS label, SEG-free).
FINDING_CODES: Mapping[str, Concept] = MappingProxyType(
    {
        "Aortic enlargement": Concept("AORTA-ENLARGED", CODING_SCHEME, "Aortic enlargement"),
        "Atelectasis": Concept("46621007", "SCT", "Atelectasis"),
        "Calcification": Concept("18115005", "SCT", "Pathologic calcification"),
        "Cardiomegaly": Concept("8186001", "SCT", "Cardiomegaly"),
        "Consolidation": Concept("95436008", "SCT", "Lung consolidation"),
        "ILD": Concept("233703007", "SCT", "Interstitial lung disease"),
        "Infiltration": Concept("409609008", "SCT", "Radiologic infiltrate of lung"),
        "Lung Opacity": Concept("112001", "DCM", "Opacity"),
        "Nodule/Mass": Concept("309529002", "SCT", "Lung mass"),
        "Other lesion": Concept("52988006", "SCT", "Lesion"),
        "Pleural effusion": Concept("60046008", "SCT", "Pleural effusion"),
        "Pleural thickening": Concept("78381009", "SCT", "Pleural thickening"),
        "Pneumothorax": Concept("36118008", "SCT", "Pneumothorax"),
        "Pulmonary fibrosis": Concept("51615001", "SCT", "Fibrosis of lung"),
    }
)

#: The report's own concepts, by role.
REPORT_CODES: Mapping[str, Concept] = MappingProxyType(
    {
        # SR: procedure reported, the finding category and the per-box score
        "procedure": Concept("399208008", "SCT", "Plain chest X-ray"),
        "finding_category": Concept("49755003", "SCT", "Morphologically Abnormal Structure"),
        "score": Concept("111012", "DCM", "Certainty of Finding"),
        "score_unit": Concept("1", "UCUM", "no units"),
        # SR: image-level group: P(abnormal) and the findings summary
        "abnormal": Concept("263654008", "SCT", "Abnormal"),
        "p_abnormal": Concept("122157", "DCM", "Probability"),
        "summary": Concept("111017", "DCM", "CAD Processing and Findings Summary"),
        "with_findings": Concept("111242", "DCM", "All algorithms succeeded; with findings"),
        "without_findings": Concept("111241", "DCM", "All algorithms succeeded; without findings"),
        # SEG: the lungs
        "anatomical_structure": Concept("91723000", "SCT", "Anatomical Structure"),
        "lung": Concept("39607008", "SCT", "Lung"),
        "algorithm_family": Concept("123110", "DCM", "Artificial Intelligence"),
    }
)

_BY_CODE = {(c.scheme_designator, c.value): name for name, c in FINDING_CODES.items()}
assert sorted(FINDING_CODES) == sorted(FINDINGS)  # noqa: S101 - module invariant, not user input


def finding_code(label: str) -> Concept:
    """The concept of a VinDr finding name.

    >>> finding_code("Cardiomegaly").meaning
    'Cardiomegaly'
    """
    try:
        return FINDING_CODES[label]
    except KeyError:
        raise ConfigError.unknown("finding", label, FINDING_CODES) from None


def finding_label(scheme_designator: str, value: str) -> str | None:
    """The VinDr finding name of a code read back from a DICOM object, ``None`` if not ours.

    >>> finding_label("SCT", "36118008")
    'Pneumothorax'
    """
    return _BY_CODE.get((str(scheme_designator), str(value)))
