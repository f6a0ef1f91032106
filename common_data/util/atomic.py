"""Write files so that a reader never sees half of one: write a temporary file, then rename.

The temporary file is flushed to the disk (fsync) before the rename and the folder after it, so that a power cut
leaves either the old file or the whole new one under the name, never a renamed but empty one.
"""
import contextlib
import os
import tempfile
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_file_pattern(name_pattern):
    """A regular expression of the temporary files atomic_path makes for the file names name_pattern matches."""
    return rf"\.(?:{name_pattern})\.[^/]+{TEMPORARY_SUFFIX}"


def fsync(path):
    """Flush a file's (or a folder's) data and entry to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is synced and renamed to `path`, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files 0600; give them the usual mode
        fsync(tmp)
        os.replace(tmp, path)
        fsync(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path, mode="w", encoding="utf-8"):
    """Like open(path, mode) for writing, but the file appears only complete."""
    binary = "b" in mode
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if binary else encoding) as handle:
            yield handle
