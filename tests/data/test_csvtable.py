"""The plain CSV table: a round trip, bad rows with lines."""

from __future__ import annotations

import numpy as np
from helpers import write

from thoracic.data import load_csv, write_csv


def test_csv_round_trip_and_problems(tmp_path, vinbig_subset):
    path = write_csv(vinbig_subset, tmp_path / "t.csv")
    back = load_csv(path)
    assert back.problems == ()
    assert len(back) == len(vinbig_subset) and set(back.images) == set(vinbig_subset.images)
    order_a = np.lexsort((vinbig_subset.boxes[:, 0], vinbig_subset.label.astype(str), vinbig_subset.image_id.astype(str)))
    order_b = np.lexsort((back.boxes[:, 0], back.label.astype(str), back.image_id.astype(str)))
    np.testing.assert_array_equal(back.boxes[order_b], vinbig_subset.boxes[order_a])
    bad = write(tmp_path / "bad.csv", """
image_id,label,x_min,y_min,x_max,y_max,width,height
a,Cardiomegaly,1,1,5,5,10,10
a,Foo,1,1,5,5,10,10
b,ILD,1,1,5,5,-3,10
c,,,,,,20,20
a,ILD,1,1,50,5,,
""")
    ann = load_csv(bad)
    assert [p.line for p in ann.problems] == [3, 4, 6]
    assert ann.images["c"].width == 20 and len(ann) == 1
