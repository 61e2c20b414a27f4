import json

import numpy as np

from thoracic.cli.main import main
from thoracic.demo import sample_paths


def test_demo_writes_an_html_page_for_every_sample(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    assert "index.html" in capsys.readouterr().out
    html = (out / "index.html").read_text()
    names = [p.stem for p in sample_paths()]
    assert len(names) >= 5
    for name in names:
        assert f"<h2>{name}</h2>" in html
    for src in [part.split("'")[0] for part in html.split("<img src='")[1:]]:
        assert (out / src).is_file()
    facts = json.loads((out / "demo.json").read_text())
    assert all(s["error"] == "" for s in facts["samples"])
    # every sample has its heatmap panel, in colour, the size of the other thumbnails
    import cv2

    assert len(list(out.glob("*_7_heatmap.png"))) == len(names)
    for p in out.glob("*_7_heatmap.png"):
        img = cv2.imread(str(p))
        window = cv2.imread(str(p).replace("_7_heatmap.png", "_1_window.png"))
        assert img.shape == window.shape
        assert np.abs(img[:, :, 0].astype(int) - img[:, :, 2]).max() > 50  # not grey: the colour map is there
