"""Image selections: one fold of a folds CSV or an image list, read forgivingly (CRLF, BOM, blanks, spaces)."""

from __future__ import annotations

import pytest

from thoracic.data.selection import ImageSelection, fold_ids, image_selection, read_image_list, select_inputs
from thoracic.errors import ConfigError


def test_folds_file_with_crlf_bom_blank_lines_and_spaces(tmp_path):
    folds = tmp_path / "folds.csv"
    folds.write_bytes("\ufeffimage_id,group,fold\r\n a , image:a , 0 \r\n\r\nb,image:b,1\r\n c ,image:c, 1\r\n , , \r\n"
                      .encode("utf-8"))
    sel = fold_ids(folds, 1)
    assert sel.ids == ("b", "c") and sel.name == "fold 1 of folds.csv"
    assert "c" in sel and "a" not in sel and len(sel) == 2
    assert fold_ids(folds, 0).ids == ("a",)
    with pytest.raises(ConfigError, match=r"no image is in fold 5 \(the file's folds: 0, 1\)"):
        fold_ids(folds, 5)
    no_fold = tmp_path / "nofold.csv"
    no_fold.write_text("image_id,group\na,g\n")
    with pytest.raises(ConfigError, match="missing column"):
        fold_ids(no_fold, 0)


def test_image_list_of_ids_and_paths(tmp_path):
    path = tmp_path / "val.txt"
    path.write_bytes("\ufeff# fold 0\r\n  abc  \r\n\r\nimages/def.png\r\n/data/train/1.2.840.5.dicom\r\nabc\r\n".encode())
    sel = read_image_list(path)
    assert sel.ids == ("abc", "def", "1.2.840.5") and sel.name == "val.txt"
    csv_list = tmp_path / "list.csv"
    csv_list.write_bytes(b"\xef\xbb\xbfpath,image_id\r\nx/1.png, one \r\n\r\nx/2.png,two\r\n")
    assert read_image_list(csv_list).ids == ("one", "two")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n# nothing\n")
    with pytest.raises(ConfigError, match="names no image"):
        read_image_list(empty)


def test_image_selection_flags(tmp_path):
    folds = tmp_path / "folds.csv"
    folds.write_text("image_id,group,fold\na,g,0\n")
    listed = tmp_path / "l.txt"
    listed.write_text("a\n")
    assert image_selection() is None
    assert image_selection(folds=folds, fold=0).ids == ("a",)
    assert image_selection(image_list=listed).ids == ("a",)
    with pytest.raises(ConfigError, match="go together"):
        image_selection(folds=folds)
    with pytest.raises(ConfigError, match="go together"):
        image_selection(fold=0)
    with pytest.raises(ConfigError, match="not both"):
        image_selection(folds=folds, fold=0, image_list=listed)


def test_select_inputs_matches_ids_and_names_the_missing():
    items = [(f"in/{i}.dcm", i) for i in "abcd"]
    assert select_inputs(items, ImageSelection(("d", "b"), "fold 1 of f.csv")) == [("in/b.dcm", "b"), ("in/d.dcm", "d")]
    missing = ImageSelection(tuple("bxyz1234"), "fold 2 of f.csv")
    with pytest.raises(ConfigError, match=r"7 of the 8 image\(s\) of fold 2 of f.csv have no input file, e\.g\. 1, 2, 3, 4, x, \.\.\."):
        select_inputs(items, missing)
