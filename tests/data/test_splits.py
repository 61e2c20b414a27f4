"""Folds: stratified, grouped by patient (no patient in two folds), deterministic."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from helpers import require

from thoracic.data import Annotations, ImageInfo, group_of, kfold_split, read_folds, write_folds
from thoracic.errors import ConfigError
from thoracic.labels import NO_FINDING


def _patients(n_patients: int = 60, seed: int = 1) -> Annotations:
    rng = np.random.default_rng(seed)
    labels = ["Cardiomegaly", "Pleural effusion", "Nodule/Mass", "Atelectasis", NO_FINDING]
    images, rows = [], []
    for p in range(n_patients):
        for k in range(int(rng.integers(1, 6))):
            iid = f"{p:05d}_{k:03d}"
            images.append(ImageInfo(iid, 1024, 1024, str(p)))
            label = labels[int(rng.integers(0, len(labels)))]
            box = (0, 0, 1, 1) if label == NO_FINDING else (100, 100, 300, 300)
            rows.append((iid, label, *box))
    return Annotations.from_rows(images, rows)


def test_no_patient_in_two_folds(tmp_path):
    require("iterstrat")
    ann = _patients()
    folds = kfold_split(ann, 5, seed=3)
    assert set(folds) == set(ann.images) and set(folds.values()) == set(range(5))
    per_patient = defaultdict(set)
    for iid, f in folds.items():
        per_patient[ann.images[iid].patient_id].add(f)
    assert all(len(v) == 1 for v in per_patient.values())
    assert kfold_split(ann, 5, seed=3) == folds  # deterministic
    assert kfold_split(ann, 5, seed=4) != folds
    path = write_folds(folds, ann, tmp_path / "folds.csv")
    assert read_folds(path) == folds
    assert path.read_text().splitlines()[0] == "image_id,group,fold"


def test_vinbigdata_groups_by_image_and_stratifies(vinbig):
    require("iterstrat")
    sub = vinbig.select_images(sorted(vinbig.images)[:600])
    folds = kfold_split(sub, 3, seed=0)
    groups = group_of(sub)
    assert len(set(groups.values())) == 600  # no patient ids: one group per image
    abnormal = sub.abnormal_images()
    share = [np.mean([i in abnormal for i, f in folds.items() if f == k]) for k in range(3)]
    assert max(share) - min(share) < 0.05


def test_errors():
    require("iterstrat")
    with pytest.raises(ConfigError, match=">= 2"):
        kfold_split(_patients(3), 1)
    with pytest.raises(ConfigError, match="cannot fill"):
        kfold_split(_patients(2), 5)
