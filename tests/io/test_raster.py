"""PNG/JPEG/TIFF reading: the chain a `dataset export` PNG records (its ``thoracic-chain`` text chunk)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from thoracic.io import read
from thoracic.io.raster import CHAIN_TEXT_KEY, chain_text


def _png(text: str | None = None, fmt: str = "PNG") -> bytes:
    img = Image.fromarray((np.arange(40 * 30) % 200).astype(np.uint8).reshape(30, 40))
    info = PngImagePlugin.PngInfo()
    if text is not None:
        info.add_text(CHAIN_TEXT_KEY, text)
    buf = io.BytesIO()
    img.save(buf, fmt, **({"pnginfo": info} if fmt == "PNG" else {}))
    return buf.getvalue()


def test_the_export_chain_of_a_png_is_read():
    spec = "resize_longest(interpolation=area,size=512)|clahe(clip_limit=2.0,tile_grid=8)"
    rg = read(_png(chain_text("yolo-512-clahe", spec)))
    assert rg.export_chain == ("yolo-512-clahe", spec)
    assert rg.summary()["export_chain"] == ["yolo-512-clahe", spec]
    assert read(_png()).export_chain is None  # any other PNG
    assert read(_png(fmt="JPEG")).export_chain is None


@pytest.mark.parametrize(("text", "expected"), [
    ('{"name": "Jane Doe <1970-01-01>", "spec": "clahe()"}', ("(unreadable)", "clahe()")),
    ("clahe()", ("unknown", "clahe()")),  # not JSON: the text as the spec
    ('["a"]', ("unknown", "(unreadable)")),
    ("x" * 500, ("unknown", "(unreadable)")),
])
def test_only_chain_like_text_is_kept(text, expected):
    # a message may quote the chain; nothing else read from a file reaches a message
    assert read(_png(text)).export_chain == expected
