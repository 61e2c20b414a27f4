"""The open step registry: a package above preprocess/ adds a step without preprocess importing it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from thoracic.errors import ConfigError
from thoracic.preprocess import CHAINS, STEPS, Chain, Step, get_chain
from thoracic.transform import Affine


def _half(img: np.ndarray, keep: int = 0) -> tuple[np.ndarray, Affine]:
    """A geometric step for the test: the left half of the image."""
    w = img.shape[1] // 2
    return img[:, :w].copy(), Affine(1.0, 1.0, 0.0, 0.0)


@pytest.fixture
def registry(monkeypatch):
    """Registrations made in a test are undone after it."""
    monkeypatch.setattr("thoracic.preprocess.chain.STEPS", dict(STEPS))
    monkeypatch.setattr("thoracic.preprocess.chain.CHAINS", dict(CHAINS))
    import thoracic.preprocess.chain as chain_module

    return chain_module


def test_a_registered_step_runs_in_a_chain(registry):
    registry.register_step("left_half", _half, geometric=True, params=("keep",))
    chain = Chain.parse("left_half(keep=1)", name="t")
    assert chain.spec() == "left_half(keep=1)"
    img = np.linspace(0, 1, 6 * 8, dtype=np.float32).reshape(6, 8)
    from thoracic.io.radiograph import Radiograph

    rg = Radiograph(pixels=img, image_id="x", source="x", format="array", original_width=8, original_height=6)
    out = chain.run(rg)
    assert out.pixels.shape == (6, 4)
    np.testing.assert_array_equal(out.pixels, img[:, :4])


def test_unknown_parameters_of_a_registered_step_are_refused(registry):
    registry.register_step("left_half", _half, geometric=True, params=("keep",))
    with pytest.raises(ConfigError, match="parameter of step 'left_half'"):
        Step.of("left_half", size=3)


def test_the_same_function_again_is_a_no_op_another_is_an_error(registry):
    registry.register_step("left_half", _half, geometric=True)
    registry.register_step("left_half", _half, geometric=True)
    with pytest.raises(ConfigError, match="already registered"):
        registry.register_step("left_half", lambda img: (img, Affine(1, 1, 0, 0)), geometric=True)
    with pytest.raises(ConfigError, match="already registered"):
        registry.register_step("clahe", _half, geometric=False)


def test_step_and_chain_names_are_checked(registry):
    with pytest.raises(ConfigError, match="lower-case"):
        registry.register_step("Left-Half", _half, geometric=True)
    registry.register_chain(Chain("mine", (), "window", "nothing"))
    registry.register_chain(Chain("mine", (), "window", "nothing"))  # the same chain: fine
    with pytest.raises(ConfigError, match="already registered"):
        registry.register_chain(Chain("mine", (), "minmax", "another"))


def test_the_lungs_package_registers_lung_roi_before_any_chain_is_read():
    # a fresh process that imports only the chain module still knows the lung-ROI step and chain:
    # importing any thoracic module runs thoracic/__init__, which imports thoracic.anatomy
    code = ("from thoracic.preprocess.chain import STEPS, get_chain; "
            "c = get_chain('lung-roi-512'); assert 'lung_roi' in STEPS and STEPS['lung_roi'].geometric; "
            "print(c.spec())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "lung_roi(margin=0.05,size=512)"


def test_the_shipped_lung_chain_is_unchanged():
    assert get_chain("lung-roi-512").spec() == "lung_roi(margin=0.05,size=512)"
    assert get_chain("lung-roi-512").normalize == "window"


def test_a_chain_crops_when_it_has_the_lung_roi_step_and_crops_once_at_most():
    assert get_chain("lung-roi-512").crops and get_chain("lung-roi-512-clahe").crops
    assert not get_chain("yolo-512-clahe").crops and not get_chain("display").crops
    assert Chain.parse("resize_longest(size=1024)|lung_roi(size=512)").crops
    with pytest.raises(ConfigError, match="cuts to the lung square more than once"):
        Chain.parse("lung_roi(size=512)|clahe()|lung_roi(size=256)")
    with pytest.raises(ConfigError, match="more than once"):
        Chain.from_dict({**get_chain("lung-roi-512").to_dict(),
                         "steps": [{"name": "lung_roi", "params": {}}, {"name": "lung_roi", "params": {}}]})


def test_the_papers_full_input_is_the_lung_crop_then_clahe(samples_dir, capsys):
    from thoracic.cli.main import main
    from thoracic.preprocess.intensity import clahe

    paper = get_chain("lung-roi-512-clahe")
    assert paper.spec() == "lung_roi(margin=0.05,size=512)|clahe(clip_limit=2.0,tile_grid=8)"
    assert main(["chains"]) == 0
    assert "lung-roi-512-clahe\n  normalize=window steps=" + paper.spec() in capsys.readouterr().out
    src = samples_dir / "00000377_004.jpg"
    crop, full = get_chain("lung-roi-512").load(src), paper.load(src)
    assert full.pixels.shape == (512, 512) and full.transform == crop.transform
    np.testing.assert_array_equal(full.pixels, clahe(crop.pixels, clip_limit=2.0, tile_grid=8))
