import json

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
