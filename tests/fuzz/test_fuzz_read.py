"""Short fuzz run of the reader: malformed inputs get a typed error or a valid radiograph.

The same seeded generator and worker processes as ``scripts/fuzz.py`` (the long run): every
outcome must be a :class:`~thoracic.errors.ThoracicError` or a radiograph with finite ``float32``
pixels in [0, 1], each within 5 CPU seconds and a 1.5 GB address space, without killing its
process. Failures list the case recipes; ``scripts/fuzz.py --small-only --replay CASE_ID``
rebuilds and re-reads one (with its traceback).
"""

from __future__ import annotations

import collections
import warnings

import fuzz_cases as fc
import pytest
from fuzz_runner import run_cases
from hypothesis import given, settings
from hypothesis import strategies as st

from thoracic.errors import ThoracicError
from thoracic.io import ReadConfig, read

SEED = 20261126
TIME_LIMIT_S = 5.0


def _run(cases: list[fc.Case]) -> tuple[collections.Counter, list[str]]:
    """Each case in a worker process (a decompression bomb or a hang must not take the test
    session with it): at most 5 CPU seconds and 1.5 GB of address space per case."""
    counts: collections.Counter = collections.Counter()
    problems = []
    for r in run_cases(cases, mode="read", timeout=TIME_LIMIT_S, mem_mb=1536, context="spawn"):
        counts[r.outcomes["read"]] += 1
        if r.bad:
            problems.append(f"{r.case.describe()}: {r.outcomes} {r.detail[-600:]}")
    return counts, problems


def test_generator_is_deterministic() -> None:
    seeds = fc.corpus(large=False)
    a = [fc.make_case(i, SEED, seeds) for i in range(30)]
    b = [fc.make_case(i, SEED, seeds) for i in range(30)]
    assert [(c.data, c.recipe, c.options) for c in a] == [(c.data, c.recipe, c.options) for c in b]
    assert len({c.data for c in a}) > 25  # and not the same input over and over
    assert len({c.family for c in a}) >= 6


def test_every_family_makes_inputs() -> None:
    seeds = fc.corpus(large=False)
    made = collections.Counter()
    for i in range(400):
        case = fc.make_case(i, SEED + 1, seeds)
        made[case.family] += 1
    assert set(made) == set(fc.FAMILIES), made


def test_short_fuzz_small_seeds() -> None:
    """800 mutated inputs of the small synthetic and pydicom seeds (DICOM in 9 encodings, PNG,
    JPEG, TIFF), across all families."""
    cases = list(fc.generate(800, SEED, fc.corpus(large=False)))
    counts, problems = _run(cases)
    assert problems == []
    assert counts["ok"] > 80  # some survive the mutation and are really read ...
    typed = sum(n for k, n in counts.items() if k != "ok")
    assert typed > 400 and len(counts) >= 8  # ... and many distinct typed errors are raised


def test_short_fuzz_full_size_fixtures() -> None:
    """Mutations of the real films (JPEG 2000, JPEG baseline, JPEG-LS, raw, NIH JPEGs): their
    codestreams truncated and flipped."""
    families = {"truncate": 4, "bitflip": 4, "tag": 2, "combo": 1, "codestream": 2}
    cases = list(fc.generate(40, SEED, fc.large_seeds(), large_weight=1.0, families=families))
    assert {c.seed_name for c in cases} >= {"RG1_J2KI.dcm", "siim_cr_jpeg_baseline.dcm"}
    counts, problems = _run(cases)
    assert problems == []
    assert sum(counts.values()) == 40


_PREFIXES = [b"", bytes(128) + b"DICM", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*",
             bytes(128) + b"DICM\x02\x00\x10\x00UI"]


@settings(max_examples=150, deadline=None)
@given(prefix=st.sampled_from(_PREFIXES), body=st.binary(max_size=600),
       allow=st.booleans(), normalize=st.sampled_from(["window", "minmax", "percentile"]))
def test_arbitrary_bytes_after_a_signature(prefix: bytes, body: bytes, allow: bool, normalize: str) -> None:
    data = prefix + body
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rg = read(data, ReadConfig(allow_non_chest=allow, normalize=normalize))
    except ThoracicError:
        return
    assert fc.check_radiograph(rg) is None


@pytest.mark.parametrize("family", sorted(fc.FAMILIES))
def test_recipes_are_json(family: str) -> None:
    import json

    seeds = fc.corpus(large=False)
    case = fc.make_case(0, SEED, seeds, families={family: 1})
    assert case.family == family or case.recipe.get("note")  # a family that cannot apply says so
    json.dumps(case.describe())


def test_the_harness_catches_hangs_crashes_and_memory_blowups() -> None:
    """The worker pool's own contract: a spinning, blocked, crashing or memory-hungry case is
    reported as such, its worker replaced, and the next case still runs."""
    ok = fc.Case("ok", "shape", "-", fc.small_seeds()["chest.png"])
    cases = [fc.Case(w, "selftest", "-", b"", recipe={"selftest": w}) for w in ("spin", "block", "crash", "memory")]
    results = {r.case.case_id: r for r in run_cases([*cases, ok], timeout=1.0, wall_factor=2.0, mem_mb=256,
                                                    context="spawn")}
    assert {k: r.outcomes["read"] for k, r in results.items()} == {
        "spin": "hang", "block": "hang", "crash": "crash", "memory": "memory", "ok": "ok"}
    assert all(r.bad for k, r in results.items() if k != "ok") and not results["ok"].bad


def test_a_truncated_file_that_reads_lost_nothing() -> None:
    """A cut that still reads (a few trailing bytes of padding, a PNG's IEND, a sequence
    delimiter) must give exactly the pixels of the whole file: never a silently partial image."""
    import numpy as np

    seeds = fc.corpus(large=False)
    survived = 0
    for case in fc.generate(300, SEED, seeds, families={"truncate": 1}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                cut = read(case.data, fc.read_options(case))
            except ThoracicError:
                continue
            whole = read(seeds[case.seed_name], fc.read_options(case))
        survived += 1
        assert cut.pixels.shape == whole.pixels.shape and np.array_equal(cut.pixels, whole.pixels), case.describe()
    assert survived >= 1
