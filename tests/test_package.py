"""The package as a whole: sorted, importable ``__all__`` lists, the version, a core install without torch."""

import importlib
import subprocess
import sys
import textwrap

import pytest
from helpers import TORCH, run_without

import thoracic

#: Every module whose ``__all__`` is checked (each once).
PUBLIC_MODULES = [
    "thoracic", "thoracic.errors", "thoracic.boxes", "thoracic.io", "thoracic.preprocess", "thoracic.models",
    "thoracic.explain", "thoracic.anatomy", "thoracic.detect", "thoracic.classify", "thoracic.inference.analyzer",
    "thoracic.inference.predictor", "thoracic.evaluate", "thoracic.batch.convert", "thoracic.batch.export",
    "thoracic.data", "thoracic.data.coco", "thoracic.data.csvtable", "thoracic.data.fusion", "thoracic.data.nih",
    "thoracic.data.splits", "thoracic.data.stats", "thoracic.data.vinbigdata", "thoracic.dicom",
    "thoracic.node", "thoracic.node.config", "thoracic.node.logs", "thoracic.node.queue", "thoracic.node.scp",
    "thoracic.node.send", "thoracic.node.service", "thoracic.node.worker",
    "thoracic.cli.dataset", "thoracic.cli.dicom_node", "thoracic.cli.predict", "thoracic.cli.train_detector",
    "thoracic.train.cv", "thoracic.cli.train_cv", "thoracic.data.selection", "thoracic.data.sizes",
    "thoracic.detect.clinical", "thoracic.evaluate.operating_points",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_importable(name):
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__)
    for attr in module.__all__:
        assert hasattr(module, attr), f"{name}.{attr}"


def test_version():
    assert thoracic.__version__.count(".") == 2


def test_read_preprocess_convert_and_demo_work_without_torch(tmp_path, samples_dir):
    script = textwrap.dedent(
        f"""
        import sys
        from thoracic.io import read
        from thoracic.preprocess import get_chain
        from thoracic.cli.main import main
        for name in ("RG1_J2KI.dcm", "siim_cr_jpeg_baseline.dcm", "00000377_004.jpg"):
            rg = read({str(samples_dir)!r} + "/" + name)
            prepared = get_chain("yolo-512-clahe").run(rg)
            assert max(prepared.pixels.shape) == 512
        assert main(["convert", {str(samples_dir)!r}, "--out", {str(tmp_path / "conv")!r}, "--size", "128", "-q"]) == 0
        assert main(["demo", "--out", {str(tmp_path / "demo")!r}]) == 0
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "ultralytics"))
        assert not leaked, leaked
        print("OK")
        """
    )
    proc = run_without(TORCH, script, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("OK")
    assert (tmp_path / "demo" / "index.html").is_file()


@pytest.mark.parametrize("name", ["thoracic", "thoracic.anatomy", "thoracic.inference", "thoracic.io.dicom"])
def test_names_imported_on_first_use_are_never_shadowed_by_a_module(name):
    """These packages import their names on first use (thoracic._lazy); a submodule loaded first
    becomes an attribute of its package, so an exported name that is also a module's name must be
    imported eagerly. Every submodule loaded, each exported name is still what it names."""
    import pkgutil
    import types

    package = importlib.import_module(name)
    for info in pkgutil.walk_packages(package.__path__, f"{name}."):
        if info.name.split(".")[1] in ("train", "cli", "serve", "node", "__main__") or info.name.endswith(".ray"):
            continue  # extras and the services: not needed to show it
        importlib.import_module(info.name)
    for attr in package.__all__:
        value = getattr(package, attr)
        assert not isinstance(value, types.ModuleType), f"{name}.{attr} is the module, not what it exports"


def test_pydicom_is_imported_with_the_first_dicom_and_its_logs_are_redacted_before(samples_dir):
    """Loading the models and reading PNG/JPEG need no pydicom (about 0.1 s of a cold start); the
    filter that keeps element values out of pydicom's log records is installed before it loads."""
    script = textwrap.dedent(
        f"""
        import logging, sys
        from thoracic.inference.predictor import Predictor
        from thoracic.io import read
        from thoracic.io.dicom.logs import RedactValues
        assert any(isinstance(f, RedactValues) for f in logging.getLogger("pydicom").filters)
        read({str(samples_dir / "00000377_004.jpg")!r})
        assert "pydicom" not in sys.modules, "imported before a DICOM was read"
        rg = read({str(samples_dir / "RG1_J2KI.dcm")!r})
        assert "pydicom" in sys.modules and rg.format == "dicom"
        print("OK")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"
