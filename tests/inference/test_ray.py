"""``thoracic predict --ray``: Ray Data on a local 2-CPU cluster gives the local path's CSVs, and resumes."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from helpers import FIXTURES, read_rows

from thoracic._fs import sidecar_path
from thoracic.cli.predict import main
from thoracic.errors import MissingDependencyError
from thoracic.models.registry import model_path

DICOM = FIXTURES / "nih_dx_implicit_le.dcm"


def _key(rows: list[dict[str, str]], drop: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    return {tuple(v for k, v in sorted(r.items()) if k not in drop) for r in rows}


@pytest.fixture(scope="module")
def ray_cluster(require):
    ray = require("ray")
    require("ray.data")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():  # pragma: no cover - another test left one running
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}})
    yield ray
    ray.shutdown()


@pytest.fixture
def folder(tmp_path, chest_png, chest_crop_png) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    for i, src in enumerate([chest_png, DICOM, chest_crop_png, DICOM, chest_png]):
        shutil.copy(src, d / f"img{i}{src.suffix}")
    (d / "img5.png").write_bytes(b"broken")
    return d


def test_ray_gives_the_local_rows_and_resumes(ray_cluster, folder, detector_onnx, tmp_path):
    models = [] if detector_onnx == model_path("detector") else ["--models", str(detector_onnx)]
    local = tmp_path / "local.csv"
    assert main([str(folder), "--out", str(local), *models, "-q"]) == 1  # img5 is broken
    out = tmp_path / "ray.csv"
    files = sorted(folder.iterdir())
    # a partial run (as if the job died after three images), then the whole folder with --resume
    assert main([*map(str, files[:3]), "--out", str(out), *models, "-q", "--ray", "--ray-workers", "2"]) == 0
    first = out.read_text()
    assert main([str(folder), "--out", str(out), *models, "-q", "--ray", "--ray-workers", "2", "--resume"]) == 1
    assert out.read_text().startswith(first)  # the first three were not predicted again
    assert _key(read_rows(out)) == _key(read_rows(local))
    side, local_side = read_rows(sidecar_path(out)), read_rows(sidecar_path(local))
    assert sorted(r["image_id"] for r in side) == [f"img{i}" for i in range(6)]
    assert _key(side) == _key(local_side)  # status, errors, sizes, P(abnormal), model ids
    assert ray_cluster.is_initialized()  # a cluster the caller started is left running


def test_without_ray_the_error_names_the_extra(monkeypatch):
    from thoracic.inference.ray import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"predict --ray.*thoracic\[ray\]"):
        require_ray()


def test_manifest_lists_inputs_for_a_large_run(tmp_path, chest_png, detector_onnx, capsys):
    models = [] if detector_onnx == model_path("detector") else ["--models", str(detector_onnx)]
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DICOM, data / "a.dcm")
    shutil.copy(chest_png, data / "b.png")
    csv_manifest = tmp_path / "list.csv"
    csv_manifest.write_text("path,image_id\ndata/a.dcm,patient-1\ndata/b.png,\n")
    out = tmp_path / "m.csv"
    assert main(["--manifest", str(csv_manifest), "--out", str(out), *models, "-q"]) == 0
    side = read_rows(sidecar_path(out))
    assert [(r["image_id"], r["source"]) for r in side] == [("patient-1", str(data / "a.dcm")), ("b", str(data / "b.png"))]
    txt = tmp_path / "list.txt"
    txt.write_text(f"# inputs\n{data / 'a.dcm'}\n\n{data / 'a.dcm'}\n")  # the same file twice: once
    assert main(["--manifest", str(txt), "--out", str(tmp_path / "t.csv"), *models, "-q"]) == 0
    assert [r["image_id"] for r in read_rows(tmp_path / "t.images.csv")] == ["a"]
    (data / "sub").mkdir()
    shutil.copy(DICOM, data / "sub" / "a.dcm")
    txt.write_text(f"{data / 'a.dcm'}\n{data / 'sub' / 'a.dcm'}\n")
    assert main(["--manifest", str(txt), "--out", str(tmp_path / "d.csv"), *models, "-q"]) == 2
    assert "two inputs have the image id 'a'" in capsys.readouterr().err


def test_an_input_swallowed_as_the_ray_address_is_a_clear_error(tmp_path, chest_png, capsys):
    rc = main(["--out", str(tmp_path / "p.csv"), "-q", "--ray", str(chest_png)])
    assert rc == 2 and "put --ray after the inputs" in capsys.readouterr().err
