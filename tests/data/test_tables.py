"""The one table reader (``thoracic.data.tables``): numbers, files and sizes, as both commands read them.

``thoracic dataset`` (the loaders) and ``thoracic evaluate`` (truth, predictions, sizes) read CSV
files through the same functions; these cases pin the rules where their two readers used to differ.
"""

from __future__ import annotations

import gzip
import math

import pytest
from helpers import write

from thoracic.data import load_csv, read_image_sizes
from thoracic.data.tables import parse_finite, parse_float, parse_size, read_csv
from thoracic.errors import ConfigError, ReadError
from thoracic.evaluate import read_predictions, read_truth

NAN = "nan"  # parse_float's answer for text that is not a number

# text -> parse_float(text); parse_finite gives the same, or None where this is None, NaN or infinite
NUMBERS = [
    ("", None),
    ("   ", None),
    ("3", 3.0),
    (" 3 ", 3.0),  # surrounding blanks are ignored
    ("+3", 3.0),
    ("-2.5", -2.5),
    (".5", 0.5),
    ("5.", 5.0),
    ("1e3", 1000.0),
    ("1E-2", 0.01),
    ("nan", math.nan),  # NaN and infinity are read as such; every caller refuses them
    ("NaN", math.nan),
    ("inf", math.inf),
    ("-Infinity", -math.inf),
    ("abc", NAN),
    ("1,000", NAN),  # no thousands separators
    ("1_000", NAN),  # nor Python's digit grouping (float() would read 1000)
    ("٣", NAN),  # ASCII digits only (float() would read the Arabic-Indic 3)
    ("0x10", NAN),
    ("1e", NAN),
    ("3 4", NAN),
]


@pytest.mark.parametrize(("text", "want"), NUMBERS)
def test_parse_float(text, want):
    got = parse_float(text)
    if want is None:
        assert got is None
    elif want == NAN or (isinstance(want, float) and math.isnan(want)):
        assert got is not None and math.isnan(got)
    else:
        assert got == want
    finite = parse_finite(text)
    assert finite == (got if got is not None and math.isfinite(got) else None)


@pytest.mark.parametrize(
    ("width", "height", "want"),
    [
        ("10", "20", (10, 20, None)),
        ("10.0", " 20 ", (10, 20, None)),
        ("", "", (None, None, None)),
        ("10", "", "only one"),
        ("x", "2", "not a number"),
        ("nan", "2", "not a number"),
        ("0", "3", "positive"),
        ("10.5", "20", "whole pixels"),
    ],
)
def test_parse_size(width, height, want):
    got = parse_size(width, height)
    if isinstance(want, tuple):
        assert got == want
    else:
        assert got[:2] == (None, None) and want in got[2]


ROW = "a,Cardiomegaly,1,1,5,5\n"
HEADER = "image_id,label,x_min,y_min,x_max,y_max\n"


def _both(path):
    """What each command makes of a truth table: (load_csv rows, read_truth rows)."""
    return len(load_csv(path)), len(read_truth(path))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("plain.csv", (HEADER + ROW).encode()),
        ("bom.csv", b"\xef\xbb\xbf" + (HEADER + ROW).encode()),
        ("crlf.csv", (HEADER + ROW).replace("\n", "\r\n").encode()),
        ("t.csv.gz", gzip.compress((HEADER + ROW).encode())),
        ("T.CSV.GZ", gzip.compress((HEADER + ROW).encode())),
    ],
)
def test_files_both_commands_read(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    assert _both(path) == (1, 1)


@pytest.mark.parametrize(
    ("name", "content", "error", "message"),
    [
        ("bad.csv.gz", b"not gzip", ReadError, "not a valid gzip file"),
        ("latin1.csv", (HEADER + "\xe9," + ROW).encode("latin-1"), ReadError, "not a UTF-8 text file"),
        ("empty.csv", b"", ConfigError, "empty file"),
        ("blank.csv", b"\n" + HEADER.encode(), ConfigError, "first line is empty"),
        ("cols.csv", b"image_id,label\na,ILD\n", ConfigError, "missing column"),
    ],
)
def test_files_both_commands_refuse(tmp_path, name, content, error, message):
    path = tmp_path / name
    path.write_bytes(content)
    for read in (load_csv, read_truth):
        with pytest.raises(error, match=message):
            read(path)
    with pytest.raises(ReadError, match="cannot read"):
        read_truth(tmp_path / "absent.csv")
    with pytest.raises(ReadError, match="cannot read"):
        load_csv(tmp_path / "absent.csv")


def test_blank_rows_are_skipped_and_lines_are_file_lines(tmp_path):
    # a blank line and a row of empty fields are skipped; problems name the line of the file,
    # the last line of a record whose quoted field spans two lines
    path = write(tmp_path / "t.csv", HEADER + "\n" + ROW + ",,,,,\n" + '"x\ny",Foo,1,1,5,5\n' + "a,Foo,1,1,5,5\n")
    assert [p.line for p in load_csv(path).problems] == [6, 7]
    assert [p.line for p in read_truth(path).problems] == [6, 7]
    header, rows = read_csv(path, ("image_id",))
    assert header[0] == "image_id" and [line for line, _ in rows] == [3, 6, 7]


def test_predictions_refuse_what_is_not_a_finite_number(tmp_path):
    path = write(
        tmp_path / "p.csv",
        "image_id,label,score,x_min,y_min,x_max,y_max\n"
        "a,No finding,1e-1,0,0,1,1\n"
        "a,Nodule/Mass, 0.5 ,1,1,5,5\n"
        "a,Nodule/Mass,nan,1,1,5,5\n"
        "a,Nodule/Mass,0.5,inf,1,5,5\n"
        "a,Nodule/Mass,0.5,1_0,1,5,5\n",
    )
    t = read_predictions(path, sidecar=False)
    assert t.score.tolist() == [0.1, 0.5]
    assert [(p.line, p.message.split(":")[0]) for p in t.problems] == [(4, "bad score"), (5, "bad box"), (6, "bad box")]


def test_image_sizes_one_reader_for_both_commands(tmp_path):
    path = write(tmp_path / "sizes.csv", "image_id,width,height\na,10,20\nb,10.5,20\nc,,\nd,0,3\n,5,5\ne,10\nf,nan,3\na,10,20\na,11,20\n")
    sizes, problems = read_image_sizes(path)
    assert sizes == {"a": (10, 20)}
    assert [(p.line, p.image_id, p.message) for p in problems] == [
        (3, "b", "bad size: image size must be whole pixels, got 10.5 x 20"),
        (4, "c", "bad size: image size missing"),
        (5, "d", "bad size: image size must be positive, got 0 x 3"),
        (6, "", "bad row: empty image_id"),
        (7, "e", "bad size: only one of width/height given"),
        (8, "f", "bad size: image size is not a number ('nan' x '3')"),
        (9, "a", "duplicate image id: listed twice"),
        (10, "a", "duplicate image id: size (11, 20) differs from (10, 20); first kept"),
    ]
