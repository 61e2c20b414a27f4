"""Choosing operating points on validation data: the F1-best score, the default when too few boxes."""

from __future__ import annotations

import pytest

from thoracic.data.annotations import Annotations, ImageInfo
from thoracic.detect.clinical import DEFAULT_MIN_SCORE
from thoracic.errors import ConfigError
from thoracic.evaluate.operating_points import GRID, MIN_TP, MIN_TRUTH, choices_markdown, choose_operating_points


def _data():
    """24 images: 12 with a Cardiomegaly box (10 found at 0.40 with a near copy at 0.39, 2 at 0.20),
    12 negatives with a false alarm at 0.30; 5 Atelectasis boxes, all found; 12 Nodule/Mass boxes, one found."""
    images = {f"i{k}": ImageInfo(f"i{k}", 1000, 1000) for k in range(24)}
    truth, preds = [], []
    for k in range(12):
        truth.append((f"i{k}", "Cardiomegaly", 300, 400, 700, 800))
        score = 0.40 if k < 10 else 0.20
        preds.append((f"i{k}", "Cardiomegaly", 305, 400, 700, 805, "", score))
        if k < 10:
            preds.append((f"i{k}", "Cardiomegaly", 310, 410, 690, 800, "", 0.39))  # the same finding again
        truth.append((f"i{k}", "Nodule/Mass", 100, 100, 150, 150))
    for k in range(12, 24):
        preds.append((f"i{k}", "Cardiomegaly", 300, 400, 700, 800, "", 0.30))
    for k in range(5):
        truth.append((f"i{k}", "Atelectasis", 600, 600, 800, 700))
        preds.append((f"i{k}", "Atelectasis", 600, 600, 800, 700, "", 0.8))
    preds.append(("i0", "Nodule/Mass", 100, 100, 150, 150, "", 0.9))
    return Annotations.from_rows(images, truth), Annotations.from_rows(images, preds)


def test_the_f1_best_score_and_the_default_below_the_minimum_support():
    truth, preds = _data()
    assert MIN_TRUTH > 5 and MIN_TP > 1
    by = {c.finding: c for c in choose_operating_points(truth, preds, ["Cardiomegaly", "Atelectasis", "Nodule/Mass"])}
    heart = by["Cardiomegaly"]
    # F1 is 20/22 from 0.31 to 0.40 (the 0.39 copies merge into their finding), 20/34 at 0.21-0.30,
    # 24/36 below: the best, and of equal F1 the higher score
    assert heart.rule == "best F1" and heart.threshold == pytest.approx(0.40)
    assert (heart.tp, heart.fp, heart.fn, heart.n_truth) == (10, 0, 2, 12)
    assert heart.f1 == pytest.approx(20 / 22) and heart.f1_default == pytest.approx(20 / 34)
    assert heart.precision == 1.0 and heart.recall == pytest.approx(10 / 12)
    few = by["Atelectasis"]  # 5 truth boxes, all found: too few to choose from
    assert few.threshold == DEFAULT_MIN_SCORE and few.rule.startswith("default") and few.n_truth == 5
    chance = by["Nodule/Mass"]  # 12 truth boxes, one found: one hit is no choice
    assert chance.threshold == DEFAULT_MIN_SCORE and "fewer than" in chance.rule and chance.tp == 1
    table = choices_markdown(list(by.values()))
    assert "| Cardiomegaly | 12 | 0.40 | best F1 | 10 | 0 | 2 |" in table


def test_merged_copies_are_not_false_alarms():
    truth, preds = _data()
    (heart,) = choose_operating_points(truth, preds, ["Cardiomegaly"], grid=[0.35])
    assert (heart.tp, heart.fp) == (10, 0)  # 10 copies at 0.39 merged into the 10 hits
    assert GRID[0] == 0.05 and GRID[-1] == 0.95 and len(GRID) == 91


def test_unknown_findings_and_an_empty_grid_are_refused():
    truth, preds = _data()
    with pytest.raises(ConfigError, match="unknown finding"):
        choose_operating_points(truth, preds, ["Fracture"])
    with pytest.raises(ConfigError, match="no candidate"):
        choose_operating_points(truth, preds, ["Cardiomegaly"], grid=[])
