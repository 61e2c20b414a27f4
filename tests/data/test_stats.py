"""Statistics: agreement definition by hand, the real table's numbers, written files."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import require

from thoracic.data import Annotations, ImageInfo, compute_stats, greedy_matches, reader_agreement, write_stats
from thoracic.labels import NO_FINDING


def test_greedy_matching_one_to_one():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 11]])
    b = np.array([[0, 0, 10, 10]])
    assert greedy_matches(a, b) == 1
    assert greedy_matches(a, np.array([[50, 50, 60, 60]])) == 0
    assert greedy_matches(a, a) == 2
    # IoU exactly 0.4 does not match (IoU > 0.4)
    assert greedy_matches(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 4, 10]])) == 0


def test_agreement_by_hand():
    images = [ImageInfo("a", 100, 100), ImageInfo("b", 100, 100)]
    rows = [
        ("a", "Cardiomegaly", 10, 10, 50, 50, "R1"),
        ("a", "Cardiomegaly", 11, 10, 50, 50, "R2"),
        ("a", NO_FINDING, 0, 0, 1, 1, "R3"),
        ("b", "Cardiomegaly", 10, 10, 50, 50, "R1"),
        ("b", "Cardiomegaly", 10, 10, 50, 50, "R2"),
        ("b", "Cardiomegaly", 10, 10, 50, 50, "R3"),
    ]
    ag = reader_agreement(Annotations.from_rows(images, rows))["Cardiomegaly"]
    # image a: R1-R2 1 match / 2 boxes, R1-R3 0/1, R2-R3 0/1; image b: three pairs 1/2 each
    assert (ag.matches, ag.boxes, ag.pairs) == (4, 10, 6)
    assert ag.f1 == pytest.approx(0.8)
    assert np.isnan(reader_agreement(Annotations.from_rows(images, rows))["ILD"].f1)


def test_real_table_stats(vinbig, tmp_path):
    stats = compute_stats(vinbig)
    assert (stats.images, stats.abnormal, stats.normal, stats.unannotated) == (15000, 4394, 10606, 0)
    by = {c.label: c for c in stats.classes}
    assert by["Aortic enlargement"].boxes == 7162 and by["Pneumothorax"].boxes == 226
    assert by["Cardiomegaly"].agreement.f1 == pytest.approx(0.806, abs=0.0005)
    assert by["Atelectasis"].agreement.f1 == pytest.approx(0.229, abs=0.0005)
    assert stats.mean_agreement == pytest.approx(0.409, abs=0.0005)
    assert stats.readers_per_image == ((3, 15000),)
    assert stats.unknown_size == 4394  # no meta given: no areas
    paths = write_stats(stats, tmp_path, figures=False)
    assert {p.name for p in paths} == {"classes.csv", "distributions.csv", "stats.md"}
    assert "| 3 | Cardiomegaly | 5427 | 2300 |" in (tmp_path / "stats.md").read_text()


def test_areas_and_figures(vinbig_subset, tmp_path):
    require("matplotlib")
    stats = compute_stats(vinbig_subset)
    assert stats.unknown_size == 0
    for c in stats.classes:
        assert all(0 < a <= 100 for a in c.area_pct)
    paths = write_stats(stats, tmp_path)
    names = {p.name for p in paths}
    assert {"label_distribution.png", "box_area.png", "images.png", "agreement.png"} <= names
    assert all((tmp_path / n).stat().st_size > 1000 for n in names if n.endswith(".png"))
