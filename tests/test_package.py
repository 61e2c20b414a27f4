import importlib
import subprocess
import sys
import textwrap

import pytest

import thoracic

PUBLIC_MODULES = ["thoracic", "thoracic.errors", "thoracic.io", "thoracic.preprocess", "thoracic.batch.convert",
                  "thoracic.inference.analyzer", "thoracic.explain", "thoracic.dicom", "thoracic.node"]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_importable(name):
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__)
    for attr in module.__all__:
        assert hasattr(module, attr), f"{name}.{attr}"


def test_version():
    assert thoracic.__version__.count(".") == 2


def test_errors_subclass_the_builtins():
    from thoracic import errors

    assert issubclass(errors.ReadError, OSError) and issubclass(errors.ReadError, errors.ThoracicError)
    assert issubclass(errors.InvalidRadiographError, ValueError)
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.MissingDependencyError, ImportError)


BLOCK_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "ultralytics"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockTorch())
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker failed")
    """
)


def test_read_preprocess_convert_and_demo_work_without_torch(tmp_path, samples_dir):
    script = BLOCK_TORCH + textwrap.dedent(
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
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("OK")
    assert (tmp_path / "demo" / "index.html").is_file()
