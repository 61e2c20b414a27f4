"""The COCO loader: boxes, category names, bad annotations with their index."""

from __future__ import annotations

import json

from thoracic.data import load_coco
from thoracic.labels import FINDINGS, NO_FINDING


def test_coco_load_and_problems(tmp_path):
    doc = {
        "images": [{"id": 1, "file_name": "x/a.png", "width": 100, "height": 80}, {"id": 2, "file_name": "b.dcm", "width": 50, "height": 50}],
        "categories": [{"id": 4, "name": "Cardiomegaly"}, {"id": 9, "name": "Effusion"}, {"id": 7, "name": "Tumor"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 4, "bbox": [10, 10, 20, 30]},
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [0, 0, 5, 5]},
            {"id": 3, "image_id": 1, "category_id": 7, "bbox": [0, 0, 5, 5]},
            {"id": 4, "image_id": 1, "category_id": 4, "bbox": [90, 10, 20, 30]},
            {"id": 5, "image_id": 3, "category_id": 4, "bbox": [0, 0, 5, 5]},
        ],
    }
    p = tmp_path / "c.json"
    p.write_text(json.dumps(doc))
    ann = load_coco(p)
    assert [x.line for x in ann.problems] == [3, 4, 5]
    assert sorted(zip(ann.image_id.tolist(), ann.label.tolist())) == [("a", "Cardiomegaly"), ("a", "Pleural effusion"), ("b", NO_FINDING)]
    assert ann.boxes[ann.label == "Cardiomegaly"].tolist() == [[10, 10, 30, 40]]
    assert len(FINDINGS) == 14
