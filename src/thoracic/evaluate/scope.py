"""Which truth images an evaluation scores: :func:`score_scope`.

:func:`~thoracic.evaluate.evaluate` scores every image of the truth it is given, and counts a
truth image without predictions as a miss. Scoring a fold against the full ``train.csv`` therefore
counts every image of the other folds as a miss (mAP 0.006 instead of 0.031). ``thoracic evaluate``
first narrows the truth with :func:`score_scope`:

1. to the images of a selection (``--folds FILE --fold K`` or ``--image-list FILE``), when given;
2. to the images that were predicted, unless ``all_truth`` (``--all-truth``): the images of the
   predictions file, those with rows (``thoracic predict`` writes a ``No finding`` row for every
   image it predicted, also one without findings) and those of its sidecar ``<stem>.images.csv``,
   failed ones included, so an image ``predict`` could not read still counts as a miss.

Predictions on images outside the selection are dropped (and counted); predictions on images the
truth does not have at all are kept, so :func:`~thoracic.evaluate.evaluate` lists them as
``unknown image`` problems, and a warning counts them.

>>> from thoracic.data import Annotations, ImageInfo
>>> truth = Annotations.from_rows([ImageInfo("a"), ImageInfo("b")],
...     [("a", "No finding", 0, 0, 1, 1), ("b", "No finding", 0, 0, 1, 1)])
>>> preds = Annotations.from_rows([ImageInfo("a")], [("a", "No finding", 0, 0, 1, 1, "", 0.9)])
>>> scope = score_scope(truth, preds)
>>> sorted(scope.truth.images), scope.not_predicted
(['a'], 1)
>>> scope.notes[0]
'1 truth image(s) were not predicted; scored 1; --all-truth scores them as misses'
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from thoracic.data.annotations import Annotations
from thoracic.data.selection import ImageSelection, examples
from thoracic.errors import ConfigError

__all__ = ["Scope", "score_scope"]


@dataclass(frozen=True)
class Scope:
    """The truth and predictions to score, and what was left out.

    Attributes
    ----------
    truth, preds:
        The narrowed tables (their ``problems`` only those of the kept images, and those of no image).
    not_predicted:
        Truth images (of the selection) that were not predicted: left out, or with ``all_truth``
        scored as misses.
    outside:
        Truth images left out by the selection.
    dropped:
        Predicted images of the truth outside the selection, whose predictions were dropped.
    unknown:
        Predicted images that are not in the truth at all (kept; ``evaluate`` ignores and lists them).
    notes:
        One line per thing left out, for the user and ``metrics.json``'s ``notes``.
    warnings:
        Lines the user must see: predictions on images the truth does not have.
    """

    truth: Annotations
    preds: Annotations
    not_predicted: int
    outside: int
    dropped: int
    unknown: tuple[str, ...]
    notes: tuple[str, ...]
    warnings: tuple[str, ...]


def _only(table: Annotations, ids: Collection[str]) -> Annotations:
    keep = set(ids)
    sub = table.select_images(keep)
    problems = tuple(p for p in sub.problems if not p.image_id or p.image_id in keep)
    return Annotations(sub.images, sub.image_id, sub.label, sub.boxes, sub.reader, sub.score, problems, sub.name)


def score_scope(
    truth: Annotations,
    preds: Annotations,
    *,
    selection: ImageSelection | None = None,
    all_truth: bool = False,
) -> Scope:
    """Narrow ``truth`` to the images to score (see the module docstring) and ``preds`` to match.

    Parameters
    ----------
    truth:
        The truth as read (before fusing readers: fusion is per image, so narrowing first is the
        same and faster).
    preds:
        The predictions as read by :func:`~thoracic.evaluate.read_predictions` (``images``: those
        with rows and those of the sidecar).
    selection:
        Score only these images (a fold, an image list).
    all_truth:
        Also score the truth images (of the selection) that were not predicted, as misses.

    Raises
    ------
    ConfigError
        Images of ``selection`` are not in the truth (a folds file or list of another data set),
        or, without ``all_truth``, no predicted image is in the truth (of the selection): nothing
        to score.
    """
    truth_ids = list(truth.images)
    in_truth = set(truth_ids)
    predicted = set(preds.images)
    notes: list[str] = []
    warnings: list[str] = []

    base = truth_ids
    base_set = in_truth
    if selection is not None:
        absent = [i for i in selection.ids if i not in in_truth]
        if absent:
            raise ConfigError(
                f"{len(absent)} of the {len(selection)} image(s) of {selection.name} are not in the truth, e.g. "
                f"{examples(absent)}: is it the folds file or list of this truth?"
            )
        base = [i for i in truth_ids if i in selection]
        base_set = set(base)
        notes.append(f"{selection.name}: {len(base)} of the {len(truth_ids)} truth images")
    outside = len(truth_ids) - len(base)

    unknown = tuple(sorted(predicted - in_truth))
    if unknown and len(unknown) < len(predicted):
        warnings.append(
            f"{len(unknown)} of the {len(predicted)} predicted image(s) are not in the truth, e.g. {examples(unknown)}; "
            "their predictions are ignored (listed as 'unknown image' problems)"
        )
    hit = predicted & base_set
    if not hit:
        where = f"the {len(base)} image(s) of {selection.name}" if selection is not None else "the truth"
        what = (f"none of the {len(predicted)} predicted image(s) is in {where} "
                f"(predicted e.g. {examples(predicted, 3) or 'nothing'}; truth e.g. {examples(base, 3)})")
        if not all_truth:
            of = selection.name if selection is not None else "this truth"
            raise ConfigError(f"{what}: nothing to score; are these the predictions of {of}?")
        warnings.append(f"{what}: every image scores as a miss")
    scored = base if all_truth else [i for i in base if i in hit]
    not_predicted = len(base) - len(hit)
    if not_predicted:
        if all_truth:
            notes.append(f"{not_predicted} truth image(s) were not predicted; scored {len(scored)}, "
                         "these as misses (--all-truth)")
        else:
            notes.append(f"{not_predicted} truth image(s) were not predicted; scored {len(scored)}; "
                         "--all-truth scores them as misses")
    keep_preds = predicted - (in_truth - base_set)
    dropped = len(predicted) - len(keep_preds)
    if dropped:
        notes.append(f"predictions of {dropped} image(s) outside {selection.name if selection else 'the selection'} ignored")
    return Scope(
        truth=_only(truth, scored),
        preds=_only(preds, keep_preds),
        not_predicted=not_predicted,
        outside=outside,
        dropped=dropped,
        unknown=unknown,
        notes=tuple(notes),
        warnings=tuple(warnings),
    )
