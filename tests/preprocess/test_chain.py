import numpy as np
import pytest

from thoracic.errors import ConfigError
from thoracic.io import ReadConfig, read
from thoracic.preprocess import CHAINS, Chain, Step, get_chain, list_chains


def test_spec_and_dict_roundtrip():
    chain = Chain.parse("median(ksize=3)|resize_longest(size=512,interpolation=area)|clahe(clip_limit=2.5)", name="x")
    assert chain.spec() == "median(ksize=3)|resize_longest(interpolation=area,size=512)|clahe(clip_limit=2.5)"
    assert Chain.from_json(chain.to_json()) == chain
    assert Chain.parse(chain.spec(), name="x") == chain
    for name in list_chains():
        assert Chain.from_dict(CHAINS[name].to_dict()) == CHAINS[name]


def test_unknown_names_say_what_to_use():
    with pytest.raises(ConfigError, match="did you mean 'clahe'"):
        Step.parse("clache()")
    with pytest.raises(ConfigError, match="did you mean 'clip_limit'"):
        Step.of("clahe", clip=2)
    with pytest.raises(ConfigError, match="preprocessing chain"):
        get_chain("yolo-512")
    with pytest.raises(ConfigError):
        Chain("bad", normalize="gamma")
    with pytest.raises(ConfigError):
        Chain.from_json("{not json")


def test_chain_output_maps_back_to_the_original(samples_dir):
    chain = get_chain("yolo-512-clahe")
    prepared = chain.load(samples_dir / "00000377_004.jpg")
    assert prepared.pixels.shape == (512, 512) and prepared.pixels.dtype == np.float32
    box = np.array([[387.80, 419.53, 890.03, 787.25]])
    np.testing.assert_allclose(prepared.to_original.apply_boxes(prepared.transform.apply_boxes(box)), box, atol=1e-6)
    np.testing.assert_allclose(prepared.transform.apply_boxes(box), box / 2, atol=1e-6)


def test_reduced_decoding_changes_nothing_but_speed(samples_dir):
    chain = get_chain("yolo-512-clahe")
    assert chain.decode_size() == 512
    fast = chain.load(samples_dir / "RG1_J2KI.dcm")
    full = Chain(chain.name, chain.steps, chain.normalize).run(read(samples_dir / "RG1_J2KI.dcm", ReadConfig()))
    assert fast.radiograph.width < fast.radiograph.original_width  # decoded at a coarser level
    assert fast.pixels.shape == full.pixels.shape == (512, 482)
    # area resizing keeps the reduced image's sub-pixel offset, and the transform says so
    np.testing.assert_allclose(fast.transform.apply_boxes([[0, 0, 1841, 1955]]), [[0, 0, 482, 512]], atol=0.2)
    assert np.abs(fast.pixels - full.pixels).mean() < 0.01
    # Lanczos resizes exactly the original extent out of the reduced image
    lanczos = Chain.parse("resize_longest(size=512,interpolation=lanczos)")
    exact = lanczos.load(samples_dir / "RG1_J2KI.dcm")
    assert exact.radiograph.width < exact.radiograph.original_width
    np.testing.assert_allclose(exact.transform.apply_boxes([[0, 0, 1841, 1955]]), [[0, 0, 482, 512]], atol=1e-9)
    reference = lanczos.run(read(samples_dir / "RG1_J2KI.dcm", ReadConfig()))
    assert np.abs(exact.pixels - reference.pixels).mean() < 0.004


def test_run_refuses_a_radiograph_read_otherwise(samples_dir):
    rg = read(samples_dir / "00000377_004.jpg", ReadConfig(normalize="minmax"))
    with pytest.raises(ConfigError, match="normalize"):
        get_chain("clahe").run(rg)


def test_lung_roi_chain_maps_boxes_back(samples_dir):
    prepared = get_chain("lung-roi-512").load(samples_dir / "00000377_004.jpg")
    assert prepared.pixels.shape == (512, 512)
    box = np.array([[387.80, 419.53, 890.03, 787.25]])  # the NIH radiologist's cardiomegaly box
    inside = prepared.transform.apply_boxes(box)
    assert (inside >= 0).all() and (inside <= 512).all()  # the heart lies within the lung square
    np.testing.assert_allclose(prepared.to_original.apply_boxes(inside), box, atol=1e-6)
