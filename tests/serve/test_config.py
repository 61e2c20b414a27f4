"""The parts of the service on their own: settings, error mapping, result store, gate, images."""

from __future__ import annotations

import asyncio
import io
import threading

import numpy as np
import pytest

from thoracic import errors
from thoracic.serve.config import ServeConfig
from thoracic.serve.errors import from_thoracic
from thoracic.serve.gate import Gate
from thoracic.serve.render import display_size, gray_png, heatmap_png, lungs_png, png_size
from thoracic.serve.store import Entry, ResultStore, new_id


def _png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


@pytest.mark.parametrize("kwargs", [{"token": "  "}, {"max_upload_mb": 0}, {"concurrency": 0}, {"queue": -1},
                                    {"results": 0}, {"results_mb": 0}, {"threads": 0}])
def test_bad_settings_are_config_errors(kwargs):
    with pytest.raises(errors.ConfigError):
        ServeConfig(**kwargs)


def test_settings_never_show_the_token():
    s = ServeConfig(token="s3cret-value", max_upload_mb=0.5, concurrency=2, queue=3)
    assert "s3cret" not in repr(s) and "s3cret" not in str(s)
    assert s.max_upload_bytes == 512 * 1024 and s.capacity == 5


@pytest.mark.parametrize(
    ("err", "status", "kind"),
    [
        (errors.UnsupportedFormatError("not an image"), 415, "unsupported_format"),
        (errors.UnsupportedTransferSyntaxError("needs pylibjpeg"), 415, "unsupported_transfer_syntax"),
        (errors.CorruptFileError("truncated"), 400, "corrupt_file"),
        (errors.ReadError("cannot be read"), 400, "unreadable_file"),
        (errors.NotChestRadiographError("lateral", reason="view:LL"), 422, "not_chest_radiograph"),
        (errors.MultiFrameError("3 frames"), 422, "multi_frame"),
        (errors.NoPixelDataError("an SR"), 422, "no_pixel_data"),
        (errors.ImageTooLargeError("too many pixels"), 422, "image_too_large"),
        (errors.ConstantImageError("flat"), 422, "constant_image"),
        (errors.ConfigError("bad"), 400, "bad_request"),
        (errors.MissingDependencyError.for_feature("SEG", "highdicom", "dicom"), 501, "not_available"),
    ],
)
def test_library_errors_map_to_typed_statuses_without_the_path(err, status, kind):
    err.path = "<bytes>"
    api = from_thoracic(err)
    assert (api.status, api.type) == (status, kind)
    assert "<bytes>" not in api.message and api.message


def test_store_drops_least_recently_used_by_count_and_by_bytes():
    store = ResultStore(max_entries=3, max_bytes=10_000 + 3 * 4096)
    entries = [Entry(new_id(), {}, False, {"image.png": b"x" * 3000}) for _ in range(4)]
    for e in entries[:3]:
        store.put(e)
    assert store.get(entries[0].id) is entries[0]  # now the most recent
    store.put(entries[3])
    assert store.get(entries[1].id) is None and len(store) == 3
    huge = Entry(new_id(), {}, False, {"image.png": b"x" * 50_000})
    store.put(huge)  # beyond the byte budget alone: kept, everything older dropped
    assert len(store) == 1 and store.get(huge.id) is huge
    assert len({new_id() for _ in range(100)}) == 100


def test_store_counts_the_arrays_of_a_kept_analysis():
    class A:
        heatmap = np.zeros((100, 100), np.float32)

    e = Entry(new_id(), {}, True, {}, analysis=A())
    store = ResultStore(max_entries=5, max_bytes=1 << 20)
    store.put(e)
    assert store.nbytes >= 40_000
    e.analysis = None
    store.resize(e)
    assert store.nbytes < 10_000


def test_gate_admits_capacity_then_refuses_and_estimates_the_wait():
    gate = Gate(concurrency=2, queue=1, retry_after_max=30)
    assert [gate.try_enter() for _ in range(4)] == [True, True, True, False]
    assert 1 <= gate.retry_after() <= 30
    for _ in range(3):
        gate.leave()
    assert gate.in_flight == 0 and gate.try_enter()
    gate.leave()
    gate.close()


def test_gate_gives_the_slot_back_only_when_the_work_is_done_even_if_the_caller_gives_up():
    gate = Gate(concurrency=1, queue=1)
    release = threading.Event()

    async def scenario():
        assert gate.try_enter() and gate.try_enter()
        running = asyncio.ensure_future(gate.run(release.wait, 10))
        waiting = asyncio.ensure_future(gate.run(lambda: "never"))
        await asyncio.sleep(0.05)
        assert gate.running == 1 and gate.in_flight == 2
        running.cancel()  # the client went away: the analysis still runs, its slot stays taken
        waiting.cancel()  # never started: its slot is free at once
        await asyncio.sleep(0.05)
        assert gate.in_flight == 1
        assert gate.try_enter()  # the waiting request's slot is free again
        gate.leave()
        release.set()
        for _ in range(100):
            if gate.in_flight == 0:
                break
            await asyncio.sleep(0.02)
        assert gate.in_flight == 0 and gate.running == 0

    asyncio.run(scenario())
    gate.close()


def test_display_images_share_one_size_and_overlays_are_transparent():
    assert display_size(4000, 2000) == (1024, 512) and display_size(300, 200) == (300, 200)
    pixels = np.tile(np.linspace(0, 1, 1500, dtype=np.float32), (900, 1))
    image = gray_png(pixels)
    size = png_size(image)
    assert size == (1024, 614) and _png(image).shape == (614, 1024)
    heat = np.zeros((900, 1500), np.float32)
    heat[:, 750:] = 1.0
    rgba = _png(heatmap_png(heat, size))
    assert rgba.shape == (614, 1024, 4)
    assert rgba[:, :400, 3].max() == 0 and rgba[:, 600:, 3].min() > 200  # alpha follows the heat
    mask = np.zeros((900, 1500), np.uint8)
    mask[300:600, 300:600] = 255
    lungs = _png(lungs_png(mask, size))
    assert lungs[0, 0, 3] == 0 and lungs[300, 300, 3] > 0
