"""The service's settings (``thoracic.serve.config``)."""

from __future__ import annotations

import pytest

from thoracic import errors
from thoracic.serve.config import ServeConfig


@pytest.mark.parametrize("kwargs", [{"token": "  "}, {"max_upload_mb": 0}, {"concurrency": 0}, {"queue": -1},
                                    {"results": 0}, {"results_mb": 0}, {"threads": 0}])
def test_bad_settings_are_config_errors(kwargs):
    with pytest.raises(errors.ConfigError):
        ServeConfig(**kwargs)


def test_settings_never_show_the_token():
    s = ServeConfig(token="s3cret-value", max_upload_mb=0.5, concurrency=2, queue=3)
    assert "s3cret" not in repr(s) and "s3cret" not in str(s)
    assert s.max_upload_bytes == 512 * 1024 and s.capacity == 5


def test_a_preset_replaces_the_model_files_not_both():
    assert ServeConfig(preset="fast").preset == "fast" and "preset='fast'" in repr(ServeConfig(preset="fast"))
    for files in ({"models": ("a.onnx",)}, {"classifier": "c.onnx"}):
        with pytest.raises(errors.ConfigError, match="not both"):
            ServeConfig(preset="fast", **files)
