import numpy as np

from thoracic.anatomy import fill_holes, keep_largest, postprocess


def test_keeps_the_two_largest_components():
    m = np.zeros((40, 40), bool)
    m[2:20, 2:15] = True  # 234
    m[2:20, 25:38] = True  # 234
    m[30:33, 30:33] = True  # 9
    m[35:37, 2:4] = True  # 4
    kept = keep_largest(m, 2)
    assert kept.sum() == 2 * 18 * 13
    assert not kept[30:37].any()
    assert keep_largest(m, 0).sum() == m.sum()


def test_fills_holes_but_not_the_gap_between_lungs():
    m = np.zeros((30, 40), bool)
    m[5:25, 5:18] = True
    m[5:25, 22:35] = True
    m[10:12, 10:12] = False  # hole
    filled = fill_holes(m)
    assert filled[10:12, 10:12].all()
    assert not filled[5:25, 19:21].any()


def test_postprocess_returns_uint8_0_255():
    prob = np.zeros((10, 10), np.float32)
    prob[2:8, 2:8] = 0.7
    out = postprocess(prob, threshold=0.5)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 255}
    assert not postprocess(prob, threshold=0.8).any()
