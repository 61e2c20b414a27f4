"""Data sets and annotations: the label schema, loaders, fusion of readers, export, splits, statistics.

Loaders (:func:`load_vinbigdata`, :func:`load_nih`, :func:`load_coco`, :func:`load_csv`) return
one :class:`Annotations` table (:func:`load_chestxdet` adds ChestX-Det's boxes to NIH's as a second reader); :func:`fuse_readers` makes consensus boxes;
(:func:`thoracic.batch.export_dataset` writes YOLO or COCO training sets from it through a preprocessing chain);
:func:`header_sizes` reads image sizes from the files (cached); :func:`kfold_split` makes patient-grouped stratified folds; :func:`compute_stats` and
:func:`write_stats` describe a table.
"""

from thoracic.data.annotations import Annotations, ImageInfo, Problem
from thoracic.data.chestxdet import CHESTXDET_TO_VINDR, CHESTXDET_WITHOUT_VINDR, load_chestxdet
from thoracic.data.coco import coco_categories, coco_document, load_coco
from thoracic.data.csvtable import CSV_COLUMNS, load_csv, write_csv
from thoracic.data.fusion import (
    FUSION_METHODS,
    FusionConfig,
    class_counts,
    fuse_readers,
    image_groups,
)
from thoracic.data.nih import NIH_NO_FINDING, NIH_SIZE, load_nih
from thoracic.data.sizes import SizeScan, header_sizes
from thoracic.data.splits import group_of, kfold_split, read_folds, write_folds
from thoracic.data.stats import (
    Agreement,
    ClassStats,
    DatasetStats,
    compute_stats,
    greedy_matches,
    reader_agreement,
    write_stats,
)
from thoracic.data.tables import read_image_sizes
from thoracic.data.vinbigdata import default_images, load_vinbigdata
from thoracic.labels import (
    CLASS_IDS,
    FINDINGS,
    LABELS,
    NIH_TO_VINDR,
    NO_FINDING,
    NO_FINDING_BOX,
    NO_FINDING_ID,
    class_id,
    class_name,
    nih_to_vindr,
)

__all__ = [
    "Agreement",
    "Annotations",
    "CHESTXDET_TO_VINDR",
    "CHESTXDET_WITHOUT_VINDR",
    "CLASS_IDS",
    "CSV_COLUMNS",
    "ClassStats",
    "DatasetStats",
    "FINDINGS",
    "FUSION_METHODS",
    "FusionConfig",
    "ImageInfo",
    "LABELS",
    "NIH_NO_FINDING",
    "NIH_SIZE",
    "NIH_TO_VINDR",
    "NO_FINDING",
    "NO_FINDING_BOX",
    "NO_FINDING_ID",
    "Problem",
    "SizeScan",
    "class_counts",
    "class_id",
    "class_name",
    "coco_categories",
    "coco_document",
    "compute_stats",
    "default_images",
    "fuse_readers",
    "greedy_matches",
    "group_of",
    "header_sizes",
    "image_groups",
    "kfold_split",
    "load_chestxdet",
    "load_coco",
    "load_csv",
    "load_nih",
    "load_vinbigdata",
    "nih_to_vindr",
    "read_folds",
    "read_image_sizes",
    "reader_agreement",
    "write_csv",
    "write_folds",
    "write_stats",
]
