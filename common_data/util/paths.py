"""Where things live: the repository, the local mirror of the official downloads, the cache."""
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir():
    """The local mirror of the official files (../shared beside the checkout), or None.

    NLG_SHARED_DIR overrides the location; set it to an empty string to ignore the mirror.
    """
    override = os.environ.get("NLG_SHARED_DIR")
    if override is not None:
        return Path(override) if override else None
    candidate = REPO_ROOT.parent / "shared"
    return candidate if candidate.is_dir() else None


def cache_dir():
    """Folder for downloads and built artefacts that are not committed (NLG_CACHE_DIR overrides)."""
    path = Path(os.environ.get("NLG_CACHE_DIR") or REPO_ROOT / ".cache")
    path.mkdir(parents=True, exist_ok=True)
    return path
