"""The label schema every module uses: the 14 VinDr-CXR findings and "No finding".

Names and ids are exactly those of the VinBigData Kaggle ``train.csv`` (``class_name``,
``class_id``). Models trained on other data (NIH ChestX-ray14 covers 7 of the 14) keep these names
and ids, so results of different models can be fused by name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from thoracic.errors import ConfigError

__all__ = [
    "CLASS_IDS",
    "FINDINGS",
    "LABELS",
    "NIH_IMAGE_TO_VINDR",
    "NIH_TO_VINDR",
    "NIH_WITHOUT_VINDR",
    "NO_FINDING",
    "NO_FINDING_BOX",
    "NO_FINDING_ID",
    "class_id",
    "class_name",
    "label_slug",
    "nih_to_vindr",
]

#: The 14 findings, index = Kaggle ``class_id``.
FINDINGS: tuple[str, ...] = (
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Consolidation",
    "ILD",
    "Infiltration",
    "Lung Opacity",
    "Nodule/Mass",
    "Other lesion",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
)
NO_FINDING = "No finding"
NO_FINDING_ID = 14
#: The box the competition uses for "No finding" rows.
NO_FINDING_BOX = (0.0, 0.0, 1.0, 1.0)
#: All 15 labels, index = Kaggle ``class_id``.
LABELS: tuple[str, ...] = (*FINDINGS, NO_FINDING)
CLASS_IDS: Mapping[str, int] = MappingProxyType({name: i for i, name in enumerate(LABELS)})

#: NIH ChestX-ray14 box findings (``BBox_List_2017.csv``) to VinDr names.
NIH_TO_VINDR: Mapping[str, str] = MappingProxyType(
    {
        "Atelectasis": "Atelectasis",
        "Cardiomegaly": "Cardiomegaly",
        "Effusion": "Pleural effusion",
        "Infiltrate": "Infiltration",
        "Infiltration": "Infiltration",
        "Mass": "Nodule/Mass",
        "Nodule": "Nodule/Mass",
        "Pneumonia": "Lung Opacity",
        "Pneumothorax": "Pneumothorax",
    }
)

#: NIH ChestX-ray14 image-level labels (``Finding Labels``, report-mined) to VinDr names: the box
#: findings of :data:`NIH_TO_VINDR` and three more that VinDr names (Consolidation, Pleural_Thickening,
#: Fibrosis). The labels of :data:`NIH_WITHOUT_VINDR` have no VinDr class.
NIH_IMAGE_TO_VINDR: Mapping[str, str] = MappingProxyType(
    {
        **NIH_TO_VINDR,
        "Consolidation": "Consolidation",
        "Pleural_Thickening": "Pleural thickening",
        "Fibrosis": "Pulmonary fibrosis",
    }
)
#: NIH image-level labels that no VinDr finding matches (still findings: an image with one is abnormal).
NIH_WITHOUT_VINDR: tuple[str, ...] = ("Edema", "Emphysema", "Hernia")


def class_id(name: str) -> int:
    """The Kaggle class id of a label name.

    >>> class_id("Nodule/Mass"), class_id("No finding")
    (8, 14)
    """
    try:
        return CLASS_IDS[name]
    except KeyError:
        raise ConfigError.unknown("label", name, LABELS) from None


def class_name(cid: int) -> str:
    """The label name of a Kaggle class id (0-14)."""
    if not 0 <= int(cid) < len(LABELS):
        raise ConfigError(f"class id must be 0..{len(LABELS) - 1}, got {cid}")
    return LABELS[int(cid)]


def label_slug(name: str) -> str:
    """A label as a column or file name: lower case, each run of other characters one ``_``.

    The per-finding columns of a predictions sidecar (``p_<slug>``) and the per-finding heatmap
    files (``<image_id>_heatmap_<slug>.png``) use it; the 14 findings' slugs are distinct.

    >>> label_slug("Nodule/Mass"), label_slug("Aortic enlargement"), label_slug("ILD")
    ('nodule_mass', 'aortic_enlargement', 'ild')
    """
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")


def nih_to_vindr(finding: str) -> str:
    """Map an NIH box finding to its VinDr label.

    >>> nih_to_vindr("Effusion")
    'Pleural effusion'
    """
    try:
        return NIH_TO_VINDR[finding]
    except KeyError:
        raise ConfigError.unknown("NIH finding", finding, NIH_TO_VINDR) from None
