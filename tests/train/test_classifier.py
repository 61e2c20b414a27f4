"""Classifier training: its pure functions (no training runs here)."""

from __future__ import annotations

import numpy as np
import pytest


def test_roc_auc_and_threshold():
    from thoracic.train.classifier import choose_low, roc_auc

    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.9])
    assert roc_auc(y, p) == pytest.approx(5 / 6)
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert choose_low(y, p, 1.0) == pytest.approx(0.35)  # keeps every abnormal image
    assert choose_low(y, p, 0.6) == pytest.approx(0.8)
