"""K folds stratified on multi-label findings and grouped by patient.

Each patient (or, without patient ids, each image, as for VinDr-CXR) is one group; a group's label
vector is the union over its images of the box labels (15 columns: 14 findings and "No finding")
and of image-level labels that map to VinDr names (NIH's report labels such as "Effusion").
``iterstrat.ml_stratifiers.MultilabelStratifiedKFold`` (package ``iterative-stratification``,
the ``data`` extra) assigns groups to folds; images inherit their group's fold, so no patient is
ever in two folds. Deterministic for a given seed.

Rows of the readers in :data:`UNSTRATIFIED_READERS` (ChestX-Det's second reading of 40 NIH images)
do not stratify: adding them to an NIH table keeps NIH's folds, so a fold a model was validated on
stays the same fold.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from thoracic.data.annotations import Annotations
from thoracic.data.chestxdet import CHESTXDET_READER
from thoracic.data.tables import PathLike, read_csv
from thoracic.errors import ConfigError, MissingDependencyError
from thoracic.labels import CLASS_IDS, LABELS, NIH_TO_VINDR, NO_FINDING

__all__ = ["FOLD_COLUMNS", "UNSTRATIFIED_READERS", "group_of", "kfold_split", "read_folds", "write_folds"]

FOLD_COLUMNS = ("image_id", "group", "fold")
#: Readers whose rows do not stratify the folds (a second reading of part of a data set).
UNSTRATIFIED_READERS = frozenset({CHESTXDET_READER})


def group_of(ann: Annotations) -> dict[str, str]:
    """``image_id -> group``: the patient id, or the image id when the patient is unknown."""
    return {iid: (info.patient_id or f"image:{iid}") for iid, info in ann.images.items()}


def _label_matrix(ann: Annotations, groups: Mapping[str, str]) -> tuple[list[str], np.ndarray]:
    names = sorted(set(groups.values()))
    row = {g: i for i, g in enumerate(names)}
    y = np.zeros((len(names), len(LABELS)), dtype=np.int8)
    for iid, label, reader in zip(ann.image_id.tolist(), ann.label.tolist(), ann.reader.tolist(), strict=True):
        if reader not in UNSTRATIFIED_READERS:
            y[row[groups[iid]], CLASS_IDS[label]] = 1
    for iid, info in ann.images.items():
        for raw in info.labels:
            mapped = NIH_TO_VINDR.get(raw, raw if raw in CLASS_IDS else None)
            if raw.lower() == NO_FINDING.lower():
                mapped = NO_FINDING
            if mapped is not None:
                y[row[groups[iid]], CLASS_IDS[mapped]] = 1
    return names, y


def kfold_split(ann: Annotations, k: int = 5, *, seed: int = 0) -> dict[str, int]:
    """Assign every image of ``ann`` to one of ``k`` folds (``image_id -> fold``, 0-based).

    Raises
    ------
    ConfigError
        ``k < 2`` or fewer groups than folds.
    MissingDependencyError
        ``iterative-stratification`` is not installed.
    """
    if int(k) != k or k < 2:
        raise ConfigError(f"the number of folds must be an integer >= 2, got {k}")
    try:
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
    except ImportError as err:
        raise MissingDependencyError.for_feature("stratified folds", "iterative-stratification", "data") from err
    groups = group_of(ann)
    names, y = _label_matrix(ann, groups)
    if len(names) < k:
        raise ConfigError(f"{len(names)} patient/image group(s) cannot fill {k} folds; use fewer folds")
    splitter = MultilabelStratifiedKFold(n_splits=int(k), shuffle=True, random_state=int(seed))
    fold_of_group = np.full(len(names), -1, dtype=int)
    for fold, (_, test) in enumerate(splitter.split(np.zeros((len(names), 1)), y)):
        fold_of_group[test] = fold
    index = {g: i for i, g in enumerate(names)}
    return {iid: int(fold_of_group[index[g]]) for iid, g in sorted(groups.items())}


def write_folds(folds: Mapping[str, int], ann: Annotations, path: PathLike) -> Path:
    """Write ``image_id, group, fold`` (sorted by image id)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    groups = group_of(ann)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(FOLD_COLUMNS)
        for iid in sorted(folds):
            w.writerow([iid, groups.get(iid, f"image:{iid}"), folds[iid]])
    os.replace(tmp, out)
    return out


def read_folds(path: PathLike) -> dict[str, int]:
    """Read a folds CSV written by :func:`write_folds` (``image_id -> fold``)."""
    header, rows = read_csv(path, ("image_id", "fold"), what="folds")
    ci, cf = header.index("image_id"), header.index("fold")
    out: dict[str, int] = {}
    for line, f in rows:
        try:
            out[f[ci].strip()] = int(f[cf])
        except (ValueError, IndexError) as err:
            raise ConfigError(f"line {line}: fold must be an integer", path=str(path)) from err
    return out
