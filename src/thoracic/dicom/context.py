"""What every DICOM result object is built from: the findings and context of one analysis.

Shared by :mod:`.sr`, :mod:`.gsps` and :mod:`.seg`; :mod:`.results` builds it from an
:class:`~thoracic.inference.Analysis` and orchestrates the objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thoracic.detect.clinical import DEFAULT_MIN_SCORE

__all__ = ["DEFAULT_MIN_SCORE", "DEFAULT_SERIES_NUMBER", "OBJECTS", "Finding", "ResultContext"]


#: Series numbers of the SR, GSPS and SEG (the source's series are usually small numbers).
DEFAULT_SERIES_NUMBER = 9001


OBJECTS = ("sr", "gsps", "seg")


@dataclass(frozen=True)
class Finding:
    """One box as the DICOM objects carry it (``box`` xyxy in pixels of the original image)."""

    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class ResultContext:
    """What every result object is built from (internal to :mod:`thoracic.dicom`).

    ``source`` is the source image's header (pydicom, without pixel data, already de-identified
    when asked for); ``models`` maps a role (``detector``, ``classifier``, ``lungs``) to
    ``(name, sha256)``; ``selection`` says which boxes the findings are (``"with score >= 0.3"``,
    ``"at the detector's operating points"``; :meth:`OperatingPoints.describe
    <thoracic.detect.clinical.OperatingPoints.describe>`); ``finding_probabilities`` a multi-label
    classifier's image-level probability of each finding (empty otherwise).
    """

    source: Any
    findings: tuple[Finding, ...]
    p_abnormal: float | None
    no_finding_score: float
    filtered: bool
    mask: np.ndarray | None
    models: Mapping[str, tuple[str, str]]
    thoracic_version: str
    manufacturer: str
    institution_name: str | None
    selection: str
    window: tuple[float, float] | None = None
    finding_probabilities: Mapping[str, float] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return int(self.source.Columns)

    @property
    def height(self) -> int:
        return int(self.source.Rows)

    @property
    def software_version(self) -> str:
        return f"thoracic {self.thoracic_version}"

    @property
    def model_serial(self) -> str:
        """The detector's sha256 prefix (the device serial number of our result objects)."""
        sha = self.models.get("detector", ("", ""))[1]
        return sha[:16] or "unknown"

    def instance(self, series_number: int, instance_number: int) -> dict[str, Any]:
        """The new series / instance and equipment arguments of highdicom's SOP class constructors."""
        import highdicom as hd

        return {
            "series_instance_uid": hd.UID(),
            "series_number": series_number,
            "sop_instance_uid": hd.UID(),
            "instance_number": instance_number,
            "manufacturer": self.manufacturer,
            "manufacturer_model_name": "thoracic",
            "software_versions": self.software_version,
            "device_serial_number": self.model_serial,
        }
