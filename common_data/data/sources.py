"""Which file each split of each dataset is read from, and where the data root is.

The data root is ../shared/datasets (the local mirror) when it exists, else the download folder;
both have the same layout. For each split the first existing candidate is used. Some candidates
are already an 18% sample (the full E2E/DART train sets are not in the mirror): those are passed
through by the sampler instead of being sampled again.
"""
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from common_data.data.download import downloads_dir
from common_data.data.formats import (read_dart_json, read_e2e_csv, read_formatted, read_webnlg_json,
                                 read_webnlg_xml)
from common_data.util.paths import shared_dir

DATASETS = ("e2e", "webnlg", "dart")


@dataclass(frozen=True)
class Source:
    path: str
    read: Callable
    already_sampled: bool = False


SOURCES = {
    "e2e": {
        "train": [Source("e2e/official_trainset.csv", read_e2e_csv),
                  Source("e2e/train_sampled18_formatted.jsonl", partial(read_formatted, dataset="e2e"), True)],
        "valid": [Source("e2e/official_devset.csv", read_e2e_csv)],
        "test": [Source("e2e/official_testset_w_refs.csv", read_e2e_csv)],
    },
    "webnlg": {
        "train": [Source("webnlg/xml_v1.4/train", read_webnlg_xml)],
        "valid": [Source("webnlg/xml_v1.4/dev", read_webnlg_xml), Source("webnlg/dev.json", read_webnlg_json)],
        "test": [Source("webnlg/xml_v1.4/test", read_webnlg_xml)],
    },
    "dart": {
        "train": [Source("dart/dart-v1.1.1-full-train.json", read_dart_json),
                  Source("dart/train_sampled18_formatted.jsonl", partial(read_formatted, dataset="dart"), True)],
        "valid": [Source("dart/dart-v1.1.1-full-dev.json", read_dart_json)],
        "test": [Source("dart/dart-v1.1.1-full-test.json", read_dart_json),
                 Source("dart/test_formatted.jsonl", partial(read_formatted, dataset="dart"))],
    },
}


def data_root():
    """../shared/datasets when the mirror exists, else the download folder."""
    shared = shared_dir()
    return shared / "datasets" if shared is not None else downloads_dir()


def find_source(root, dataset, split):
    """(Source, its full path): the first candidate present under `root`."""
    for source in SOURCES[dataset][split]:
        path = Path(root) / source.path
        if path.exists():
            return source, path
    wanted = " or ".join(str(Path(root) / source.path) for source in SOURCES[dataset][split])
    raise FileNotFoundError(f"no source for {dataset} {split}: expected {wanted}")
