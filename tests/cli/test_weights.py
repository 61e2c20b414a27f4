"""``thoracic weights`` lists the known starting weights; ``weights check FILE`` identifies files."""

from __future__ import annotations

import dataclasses
import hashlib

from thoracic.cli.main import main
from thoracic.train import weights
from thoracic.train.weights import KNOWN_WEIGHTS


def test_weights_lists_every_entry_with_its_source(capsys):
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    for w in KNOWN_WEIGHTS:
        assert w.name in out and w.sha256 in out and w.get in out and w.licence in out
    assert "downloads none" in out


def test_weights_check_known_and_unknown(tmp_path, monkeypatch, capsys):
    known, own = tmp_path / "known.pt", tmp_path / "own.pt"
    known.write_bytes(b"known weights")
    own.write_bytes(b"own weights")
    entry = dataclasses.replace(KNOWN_WEIGHTS[0], name="known-test", sha256=hashlib.sha256(b"known weights").hexdigest())
    monkeypatch.setattr(weights, "KNOWN_WEIGHTS", (*KNOWN_WEIGHTS, entry))
    assert main(["weights", "check", str(known)]) == 0
    assert capsys.readouterr().out.startswith(f"{known}: known-test (")
    assert main(["weights", "check", str(known), str(own)]) == 1  # one unknown
    out = capsys.readouterr().out
    assert f"{own}: unknown weights (sha256 {hashlib.sha256(b'own weights').hexdigest()})" in out
    assert main(["weights", "check", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
