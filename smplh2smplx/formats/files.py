"""Atomic file writing: a file either appears whole under its final name or not at all."""
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

# The process's umask, read once (reading it means setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside `path`; on success rename it onto `path`.

    The temporary name starts with '.' and ends with '.tmp', so folder scans that look
    for `*.obj` or `*.pkl` never see a half-written file, and an interrupted write
    leaves at most a stray temporary file, never a truncated output. The file gets the
    permissions an ordinary `open` would give (mkstemp's are owner-only), so outputs in a
    shared cluster folder stay readable by the group.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@contextmanager
def exclusive_lock(path):
    """Hold an exclusive advisory lock on a hidden lock file beside `path` (POSIX only)."""
    try:
        import fcntl
    except ImportError:          # Windows: no concurrent shards sharing a folder there.
        yield
        return
    lock_path = Path(path).with_name(f".{Path(path).name}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
