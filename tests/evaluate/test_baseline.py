"""The human baseline: each reader against the fusion of the others."""

from __future__ import annotations

import pytest

from thoracic.data import Annotations, ImageInfo
from thoracic.errors import ConfigError
from thoracic.evaluate import human_baseline

NF = ("No finding", 0, 0, 1, 1)


def _table(rows):
    return Annotations.from_rows([ImageInfo(i) for i in sorted({r[0] for r in rows})], rows)


ROWS = [
    # image a: R1 and R2 agree on a nodule; R3 draws it elsewhere and adds Cardiomegaly
    ("a", "Nodule/Mass", 10, 10, 20, 20, "R1"),
    ("a", "Nodule/Mass", 11, 10, 21, 20, "R2"),
    ("a", "Nodule/Mass", 60, 60, 70, 70, "R3"),
    ("a", "Cardiomegaly", 100, 100, 200, 200, "R3"),
    # image b: all normal
    ("b", *NF, "R1"),
    ("b", *NF, "R2"),
    ("b", *NF, "R3"),
]


def keep_all(t: Annotations) -> Annotations:
    """A trivial fusion for the test: every other reader's box is a truth box, reader cleared."""
    return Annotations(t.images, t.image_id, t.label, t.boxes, None, t.score, t.problems, t.name)


def test_hand_computed_with_a_pluggable_fusion():
    r = human_baseline(_table(ROWS), fusion=keep_all)
    assert r.images == {"R1": 2, "R2": 2, "R3": 2}
    # R1 on a: truth = R2's nodule, R3's nodule and Cardiomegaly; R1's nodule hits R2's -> TP 1, FN 2.
    r1 = r.readers["R1"]
    assert (r1["Nodule/Mass"]["tp"], r1["Nodule/Mass"]["fp"], r1["Nodule/Mass"]["fn"]) == (1, 0, 1)
    assert (r1["Cardiomegaly"]["tp"], r1["Cardiomegaly"]["fn"]) == (0, 1)
    # R3 on a: truth R1 + R2 nodules (two boxes, unfused); R3's nodule misses both, Cardiomegaly is a FP.
    r3 = r.readers["R3"]
    assert (r3["Nodule/Mass"]["tp"], r3["Nodule/Mass"]["fp"], r3["Nodule/Mass"]["fn"]) == (0, 1, 2)
    assert r3["Cardiomegaly"]["fp"] == 1 and r3["Cardiomegaly"]["precision"] == 0.0
    # "No finding" on b: each reader's statement matches the others' -> TP 1 per reader, and
    # keep_all gives two truth rows (one per other reader): FN 1 each.
    assert r.overall["No finding"]["tp"] == 3
    all_f = r.overall["all findings"]
    assert (all_f["tp"], all_f["fp"]) == (2, 2)
    assert all_f["precision"] == 0.5


def test_default_fusion_is_the_datasets_wbf():
    pytest.importorskip("thoracic.data.fusion")
    r = human_baseline(_table(ROWS))
    # R3 against the WBF of R1 and R2: one fused nodule at ~(10.5, 10, 20.5, 20), missed; FN 1 not 2.
    r3 = r.readers["R3"]
    assert (r3["Nodule/Mass"]["tp"], r3["Nodule/Mass"]["fp"], r3["Nodule/Mass"]["fn"]) == (0, 1, 1)
    # normal image b fuses to one "No finding" row: each reader's "No finding" is a TP, no FN.
    assert r.overall["No finding"] == {"tp": 3, "fp": 0, "fn": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert r.to_dict()["overall"]["all findings"]["tp"] == 2


def test_rows_without_reader_and_single_reader_images():
    with pytest.raises(ConfigError, match="reader"):
        human_baseline(_table([("a", "Nodule/Mass", 1, 1, 2, 2, "")]), fusion=keep_all)
    r = human_baseline(_table([*ROWS, ("c", *NF, "R9")]), fusion=keep_all)
    assert "R9" not in r.readers and r.notes == ("1 image(s) with fewer than 2 readers skipped",)
