"""``thoracic train detector|classifier|export`` and ``thoracic predict``: the parsers wire the handlers."""

from __future__ import annotations


def test_cli_handlers_parse(tmp_path, monkeypatch):
    import argparse

    from thoracic.cli import predict
    from thoracic.cli import train_detector as td

    monkeypatch.chdir(tmp_path)  # input files and folders are checked while parsing: make them here
    for name in ("d.yaml", "i.csv", "f.csv", "w.pt", "best.pt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "im").mkdir()

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


#: Runs in a fresh Python: every socket that would leave the machine (a name lookup or a connection
#: to an internet address) is recorded in the file argv[1] and refused, then argv[2] is a JSON list of
#: `thoracic` command lines run in turn in-process; their exit codes are printed as JSON.
_OFFLINE = '''
import json, socket, sys

LOG = sys.argv[1]


def _attempt(what):
    with open(LOG, "a") as fh:
        fh.write(what + "\\n")
    raise OSError(f"network blocked by the test: {what}")


_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _attempt(f"connect {address!r}")
    return _connect(self, address)


def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _attempt(f"connect_ex {address!r}")
    return _connect_ex(self, address)


socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
socket.create_connection = lambda address, *a, **k: _attempt(f"create_connection {address!r}")
socket.getaddrinfo = lambda host, *a, **k: _attempt(f"getaddrinfo {host!r}")
socket.gethostbyname = lambda host: _attempt(f"gethostbyname {host!r}")
socket.gethostbyname_ex = lambda host: _attempt(f"gethostbyname_ex {host!r}")

from thoracic.cli.main import main

codes = []
for argv in json.loads(sys.argv[2]):
    print("$ thoracic " + " ".join(argv), flush=True)
    codes.append(main(argv))
print("EXIT CODES " + json.dumps(codes), flush=True)
'''


def test_train_export_predict_never_touch_the_network(tmp_path, require):
    """`train detector` (1 epoch), its `--resume` once finished, `export-detector` and `predict` with the
    export, all in a process whose sockets refuse (and record) any attempt to reach the network;
    without the YOLO_* switches in the environment: thoracic sets them itself."""
    require("torch")
    require("ultralytics")
    require("onnx")
    import json
    import os
    import subprocess
    import sys

    from helpers import ROOT, SAMPLES, tiny_yolo_set

    data = tiny_yolo_set(tmp_path / "set")
    runs, run = tmp_path / "runs", tmp_path / "runs" / "t"
    onnx, preds = tmp_path / "t.onnx", tmp_path / "preds.csv"
    train = ["train", "detector", "--data", str(data), "--out", str(runs), "--name", "t", "--epochs", "1",
             "--imgsz", "64", "--batch", "4", "--nbs", "4", "--close-mosaic", "0", "--mosaic", "0",
             "--warmup-epochs", "0", "--threads", "1"]
    commands = [
        train,
        [*train, "--resume"],
        ["export-detector", str(run / "weights" / "best.pt"), "--out", str(onnx), "--chain", "display"],
        ["predict", str(SAMPLES / "00000377_004.jpg"), "--models", str(onnx), "--no-classifier",
         "--out", str(preds), "--threads", "1", "--readers", "1", "-q"],
    ]
    log = tmp_path / "network.log"
    # CI=true would hide what a user's machine does (openvino's telemetry skips CI jobs)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO", "NO_ALBUMENTATIONS")) and k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env["YOLO_CONFIG_DIR"] = str(tmp_path / "ultralytics-config")  # only to keep the test off the user's settings
    proc = subprocess.run([sys.executable, "-c", _OFFLINE, str(log), json.dumps(commands)], check=False,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    out = proc.stdout + proc.stderr
    attempts = log.read_text() if log.exists() else ""
    assert attempts == "", f"network attempts:\n{attempts}\n{out[-3000:]}"
    assert proc.returncode == 0 and "EXIT CODES [0, 0, 0, 0]" in proc.stdout, out[-4000:]
    assert {p.name for p in (run / "weights").iterdir()} == {"best.pt", "last.pt"}  # no epoch<N>.pt unless asked
    assert f"run {run} is already finished (1 epoch): nothing to resume. Its best weights are {run / 'weights' / 'best.pt'}" in proc.stdout
    assert "Traceback" not in out and "coco8" not in out
    assert onnx.is_file() and preds.is_file()


def test_train_detector_says_which_known_weights_it_starts_from(tmp_path, monkeypatch, capsys):
    """Before training, a known --pretrained file is named (an unknown one: the library's warning)."""
    import dataclasses
    import hashlib

    from thoracic.cli.main import main
    from thoracic.train import detector, weights

    data, pt = tmp_path / "data.yaml", tmp_path / "start.pt"
    data.write_text("nc: 14\n")
    pt.write_bytes(b"coco weights")
    entry = dataclasses.replace(weights.KNOWN_WEIGHTS[0], sha256=hashlib.sha256(b"coco weights").hexdigest())
    monkeypatch.setattr(weights, "KNOWN_WEIGHTS", (entry,))
    monkeypatch.setattr(detector, "train_detector", lambda cfg, on_epoch=None: {"run": cfg.out, "save_period": cfg.save_period})
    assert main(["train", "detector", "--data", str(data), "--pretrained", str(pt), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"pretrained: {pt}: yolov5n-coco (") and '"save_period": -1' in out
