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


def test_the_demo_page_shows_formatted_values_and_large_zoomable_pictures(tmp_path):
    """The README's first command: values as a person reads them (no None, no Python lists or
    dicts, numbers rounded), pictures larger than shown, each a link that opens it whole."""
    import html as html_lib
    import re

    import cv2

    from thoracic.demo import run_demo

    index = run_demo(tmp_path / "demo")
    page = index.read_text()
    cells = [html_lib.unescape(c) for c in re.findall(r"<td>(.*?)</td>", page)]
    values = cells[1::2]
    assert len(values) >= 5 * 8
    for v in values:
        assert v and "None" not in v and "[" not in v and "{" not in v and "'" not in v, v
        for number in re.findall(r"\d+\.\d+", v):
            assert len(number.split(".")[1]) <= 3, v  # rounded, no float noise
    names = dict(zip(cells[0::2], values, strict=True))
    assert {"size", "P(abnormal)", "findings", "lungs", "lung square", "time"} <= set(names)
    assert re.fullmatch(r"\d+ × \d+ pixels", names["size"]) and re.fullmatch(r"\d+\.\d\d s", names["time"])
    # every picture is a link to itself (click to zoom) and is drawn larger than the page shows it
    imgs = re.findall(r"<a class='zoom' href='([^']+)'[^>]*><img src='([^']+)'", page)
    assert len(imgs) == page.count("<img src=") and imgs
    assert all(a == b for a, b in imgs)
    assert "id='zoom'" in page and "addEventListener('click'" in page
    window = cv2.imread(str(index.parent / imgs[0][0]))
    assert max(window.shape[:2]) >= 768
    shown = int(re.search(r"\.panel\{max-width:(\d+)px\}", page).group(1))
    assert shown < max(window.shape[:2])


def test_findings_read_as_one_line_best_first_with_counts():
    from thoracic.demo import _findings_text

    found = ["Nodule/Mass 0.36", "Pleural effusion 0.14", "Pleural effusion 0.13", "Nodule/Mass 0.08", "Pleural effusion 0.05"]
    assert _findings_text(found) == "Nodule/Mass 0.36 (2 boxes), Pleural effusion 0.14 (3 boxes)"
    assert _findings_text(["Cardiomegaly 0.12"]) == "Cardiomegaly 0.12"
    assert _findings_text([]).startswith("none above")
