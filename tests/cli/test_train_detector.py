"""``thoracic train detector|classifier|export`` and ``thoracic predict``: the parsers wire the handlers."""

from __future__ import annotations


def test_cli_handlers_parse():
    import argparse

    from thoracic.cli import predict
    from thoracic.cli import train_detector as td

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd")
    td.add_arguments(sub.add_parser("detector"))
    td.add_classifier_arguments(sub.add_parser("classifier"))
    td.add_export_arguments(sub.add_parser("export"))
    predict.add_arguments(sub.add_parser("predict"))
    a = p.parse_args(["detector", "--data", "d.yaml", "--epochs", "3", "--resume"])
    assert a.func is td.run_detector and a.epochs == 3 and a.resume and a.threads == 1
    a = p.parse_args(["classifier", "--images-csv", "i.csv", "--images", "im", "--folds", "f.csv", "--pretrained", "w.pt"])
    assert a.func is td.run_classifier and a.imgsz == 320
    a = p.parse_args(["export", "best.pt", "--out", "m.onnx"])
    assert a.func is td.run_export
    a = p.parse_args(["predict", "x.dcm", "--out", "p.csv"])
    assert a.func is predict.run and (a.conf, a.max_det, a.format) == (0.01, 100, "rows")
