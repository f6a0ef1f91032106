"""Download the official data files and the GPT-2 vocabulary, when no local mirror (../shared) exists.

Every file comes from one table, DOWNLOADS, and lands under `downloads_dir()` in the layout of
../shared/datasets, so that the readers see the same paths either way. NLG_DOWNLOAD_BASE_URL (or the
`base_url` argument) replaces the hosts, e.g. with a local test server.
"""
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from common_data.util.atomic import atomic_open
from common_data.util.errors import UserError
from common_data.util.paths import cache_dir

GITHUB_RAW = "https://raw.githubusercontent.com"
HUGGING_FACE = "https://huggingface.co"
BASE_URL_ENV = "NLG_DOWNLOAD_BASE_URL"
TIMEOUT_S = 60

WEBNLG_SEEN = ("Airport", "Astronaut", "Building", "City", "ComicsCharacter", "Food", "Monument",
               "SportsTeam", "University", "WrittenWork")
WEBNLG_UNSEEN = ("Artist", "Athlete", "CelestialBody", "MeanOfTransportation", "Politician")
WEBNLG_LONG = ("Astronaut", "Monument", "University")
# Category files per triple-set size in WebNLG 2017 v1.4 (train and dev alike; test adds the unseen).
WEBNLG_CATEGORIES = {
    "train": {1: WEBNLG_SEEN, **{n: tuple(c for c in WEBNLG_SEEN if c != "City") for n in (2, 3, 4, 5)},
              6: WEBNLG_LONG, 7: WEBNLG_LONG},
    "test": {**{n: tuple(sorted(WEBNLG_SEEN + WEBNLG_UNSEEN)) for n in (1, 2, 3, 4, 5)},
             6: WEBNLG_LONG, 7: WEBNLG_LONG},
}
WEBNLG_CATEGORIES["dev"] = WEBNLG_CATEGORIES["train"]


@dataclass(frozen=True)
class Download:
    host: str
    remote: str
    local: str


def _webnlg_downloads():
    return [Download(GITHUB_RAW, f"ThiagoCF05/webnlg/master/data/v1.4/en/{split}/{size}triples/{category}.xml",
                     f"webnlg/xml_v1.4/{split}/{size}triples/{category}.xml")
            for split, sizes in WEBNLG_CATEGORIES.items()
            for size, categories in sizes.items() for category in categories]


DOWNLOADS = {
    "e2e": [Download(GITHUB_RAW, f"tuetschek/e2e-dataset/master/{remote}", f"e2e/{local}")
            for remote, local in [("trainset.csv", "official_trainset.csv"), ("devset.csv", "official_devset.csv"),
                                  ("testset_w_refs.csv", "official_testset_w_refs.csv")]],
    "webnlg": _webnlg_downloads(),
    "dart": [Download(GITHUB_RAW, f"Yale-LILY/dart/master/data/v1.1.1/dart-v1.1.1-full-{split}.json",
                      f"dart/dart-v1.1.1-full-{split}.json") for split in ("train", "dev", "test")],
    "gpt2": [Download(HUGGING_FACE, f"gpt2/resolve/main/{name}", f"gpt2/{name}")
             for name in ("vocab.json", "merges.txt")],
}


class DownloadError(UserError, RuntimeError):
    """A file could not be fetched; the message says what to download by hand and where to put it."""


def downloads_dir():
    return cache_dir() / "downloads"


def url_of(item, base_url=None):
    base = base_url or os.environ.get(BASE_URL_ENV) or item.host
    return f"{base.rstrip('/')}/{item.remote}"


def _fetch(url, path):
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, atomic_open(path, "wb") as handle:
        shutil.copyfileobj(response, handle)


def download(name, root=None, base_url=None):
    """Fetch the files of `name` (a key of DOWNLOADS) that are not yet under `root`; return `root`."""
    root = Path(root or downloads_dir())
    missing = [item for item in DOWNLOADS[name] if not (root / item.local).is_file()]
    for item in tqdm(missing, desc=f"download {name}", unit="file", disable=not missing):
        url = url_of(item, base_url)
        try:
            _fetch(url, root / item.local)
        except (urllib.error.URLError, OSError) as error:
            left = [i for i in missing if not (root / i.local).is_file()]
            raise DownloadError(
                f"could not download {url} -> {root / item.local} ({getattr(error, 'reason', error)}).\n"
                f"Without network access, download the {len(left)} missing {name} file(s) by hand into "
                f"{root} (`nlg-data download --list {name}` prints each URL and its destination), "
                f"or set NLG_SHARED_DIR to a local mirror of the official files."
            ) from None
    return root
