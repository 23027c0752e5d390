"""File-level safety: atomic writes, regular-file reads, lock files, stale temporaries.

- `atomic_write`: a file either appears whole under its final name or not at all;
- `open_regular`: inputs are read only from regular files (a FIFO or a device named like
  an input would hang or mislead a reader);
- `exclusive_lock`: a lock file beside a shared output, opened without following links;
- `remove_stale_temporaries`: removes what `atomic_write` left behind in a killed run;
- `check_writable_folder`: an output folder that cannot be written or locked is found
  before any work; `output_blocked`, `blocked_outputs`: so is an output whose place a
  folder takes;
- `check_finite`: nothing non-finite is written as a result;
- `read_csv_rows`, `merge_csv_rows`: the result tables, read with every flaw an InputError,
  merged under their lock.
OS errors on the write side become `OutputError` naming the path.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import re
import stat
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import InputError, OutputError, listed, one_line

try:
    import fcntl
except ImportError:              # Windows: no advisory locks (no shards sharing a folder there)
    fcntl = None

# The process's umask, read once (reading it means setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def output_error(path: str | Path, error: OSError) -> OutputError:
    """OutputError for the OSError `error` met while writing `path`."""
    where = error.filename if getattr(error, "filename", None) else path
    return OutputError(f"{where}: cannot write: {error.strerror or error}")


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `path`; on success rename it onto `path`.

    The temporary name starts with '.' and ends with '.tmp', so folder scans that look
    for `*.obj` or `*.pkl` never see a half-written file, and an interrupted write
    leaves at most a stray temporary file, never a truncated output. The file gets the
    permissions an ordinary `open` would give (mkstemp's are owner-only), so outputs in a
    shared cluster folder stay readable by the group. While it is written the temporary
    file is locked, so that `remove_stale_temporaries` never takes a live one. An OS error
    (unwritable folder, full disk) is raised as OutputError naming the path.
    """
    path = Path(path)
    blocked = output_blocked(path)
    if blocked:
        raise OutputError(blocked)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise output_error(path, error) from None
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(error, OSError):       # about the temporary: name the output
            raise OutputError(f"{path}: cannot write: {error.strerror or error}") from None
        raise


def _kind(mode):
    """What a non-regular file is, in words."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | Path, mode: str = "rb", max_bytes: int | None = None,
                 **kwargs) -> IO:
    """Open an existing file for reading, refusing anything but a regular file.

    Links are followed. The file is opened without blocking, so a FIFO (which would wait
    for a writer forever) or a device is refused at once with an InputError naming it;
    a missing file raises the usual FileNotFoundError. A file larger than `max_bytes` is
    refused too: readers that take a whole file in memory give the largest any genuine
    file of theirs can be (a sparse file of terabytes costs its maker nothing). `kwargs`
    go to `open` (encoding...).
    """
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | _CLOEXEC)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise InputError(f"{path}: is {_kind(status.st_mode)}, expected a regular file")
        if max_bytes is not None and status.st_size > max_bytes:
            raise InputError(f"{path}: {status.st_size / 1e6:,.1f} MB, more than such a file "
                             f"holds (at most {max_bytes / 1e6:,.0f} MB); not read")
        if _NONBLOCK:
            os.set_blocking(fd, True)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def output_blocked(path: str | Path) -> str | None:
    """Why no file can be written at `path`, in words: a folder stands there (a link to one
    is replaced like a file), or a file where one of its folders goes; None otherwise. Runs
    check their outputs with it before the work whose result would go there."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        return f"{path}: is a folder where an output file goes; remove it"
    folder = path.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if os.path.lexists(folder) and not folder.is_dir():
        return f"{folder}: is a file where a folder of outputs goes; remove it"
    return None


def blocked_outputs(outputs: dict) -> dict:
    """{key: problem} of the outputs {key: path} that no file can be written at
    (`output_blocked`), in the order given."""
    return {key: problem for key, path in outputs.items()
            if (problem := output_blocked(path))}


def is_regular_file(path: str | Path) -> bool:
    """Whether `path` itself (not a link to it) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False


@contextmanager
def exclusive_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on the hidden file `.<name>.lock` beside `path`.

    The lock file is opened without following a link: a link planted in a shared folder
    must not make the runner create or touch a file elsewhere with its rights. POSIX only
    (elsewhere nothing is locked).
    """
    if fcntl is None:
        yield
        return
    lock_path = Path(path).with_name(f".{Path(path).name}.lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _NONBLOCK | _CLOEXEC,
                     0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise OutputError(f"{lock_path}: is a symbolic link; refusing to follow it "
                              "(remove the link)") from None
        raise output_error(lock_path, error) from None
    try:
        mode_bits = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode_bits):
            raise OutputError(f"{lock_path}: is {_kind(mode_bits)}, expected a lock file "
                              "(remove it)")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as error:               # a file system without locks
            raise output_error(lock_path, error) from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# `.<final name>.<8 characters of mkstemp>.tmp`, as atomic_write names its temporaries.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")
# The longest file name of the common file systems (ext4, XFS, Btrfs, NFS, Lustre), in bytes.
NAME_MAX_BYTES = 255


def name_too_long(path: str | Path) -> bool:
    """Whether `atomic_write` cannot write `path`: the name of its temporary is over
    NAME_MAX_BYTES."""
    return len(os.fsencode(f".{Path(path).name}.12345678.tmp")) > NAME_MAX_BYTES


def remove_stale_temporaries(folder: str | Path, is_ours: Callable[[str], bool],
                             min_age_s: float = 10.0) -> None:
    """Remove the temporary files that `atomic_write` left in `folder` in a killed run.

    Args:
        folder: the output folder (nothing happens when it does not exist).
        is_ours: predicate on the final file name (e.g. "000001.obj"): only temporaries of
            files this stage writes are touched.
        min_age_s: a temporary written to in the last `min_age_s` seconds is left alone,
            as is one whose writer still holds its lock (a live shard sharing the folder).
    Returns:
        the removed paths.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if not match or not is_ours(match["name"]):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
        except OSError:
            continue             # gone meanwhile, a link, or not ours to open
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or time.time() - info.st_mtime < min_age_s:
                continue
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue             # locked by a live writer, or cannot be removed
        finally:
            os.close(fd)
    return removed


def check_writable_folder(folder: str | Path) -> None:
    """Raise OutputError naming `folder` when output files cannot be written into it, or
    cannot be locked there (`exclusive_lock`: shards sharing the folder merge its tables
    under a lock, and a file system without locks, such as a cluster's mounted without
    them, would fail every merge, or lose rows if merges went unlocked).

    A missing folder is not created here (a run stopped by bad input then leaves nothing
    behind): its nearest existing parent must be a folder that a file can be made in.
    """
    folder = Path(folder)
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is" if existing == folder else f"lies under {existing}, which is"
        raise OutputError(f"{folder}: cannot be the output folder: {where} not a folder")
    try:
        probe = tempfile.TemporaryFile(dir=existing)
    except OSError as error:
        raise OutputError(f"{folder}: cannot write into {existing}: "
                          f"{error.strerror or error}") from None
    with probe:
        try:
            if fcntl is not None:
                fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            raise OutputError(f"{folder}: cannot lock files in {existing} "
                              f"({error.strerror or error}); give an output folder on a file "
                              "system with locks (a local disk, or a cluster file system "
                              "mounted with them)") from None


# A cell starting with one of these is a formula to a spreadsheet (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(text: str) -> str:
    """A text cell that no spreadsheet runs as a formula: a leading `'` is added before a
    formula character (and before a `'`, so that `text_from_spreadsheet` undoes it)."""
    return f"'{text}" if text.startswith(_FORMULA_STARTS + ("'",)) else text


def text_from_spreadsheet(cell: str) -> str:
    """The text that `spreadsheet_text` wrote as `cell`."""
    return cell[1:] if cell.startswith("'") else cell


def write_csv(path: str | Path, columns: Sequence[str], rows: Iterable[list]) -> None:
    """Write a CSV table atomically: the header `columns`, then `rows` (lists of cells)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    with atomic_write(path, "w") as handle:
        handle.write(text.getvalue())


def read_csv_rows(path: str | Path, columns: Sequence[str], parse: Callable) -> list:
    """The rows of a table `write_csv` wrote with the header `columns`, each line's cells
    parsed by `parse` (ValueError for a malformed line); [] when there is no file. Anything
    else (other columns, a malformed line, bytes that are not UTF-8 text, a cell over the
    csv module's limit) is an InputError naming the file."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    try:
        with open_regular(path, "r", newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return []
            if tuple(header) != tuple(columns):
                raise InputError(f"{path}: columns {shown_value(header)}, expected "
                                 f"{list(columns)}")
            for line_number, cells in enumerate(reader, start=2):
                try:
                    rows.append(parse(cells))
                except ValueError:
                    raise InputError(f"{path}: line {line_number} is malformed: "
                                     f"{shown_value(cells)}") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not a readable CSV table ({one_line(error)})") from None
    return rows


def merge_csv_rows(path: str | Path, columns: Sequence[str], read: Callable[[Path], dict],
                   new_rows: Iterable, key: Callable) -> None:
    """Merge `new_rows` into the table at `path` under its exclusive lock: `read(path)` gives
    the stored rows by key, a new row replaces the stored row of its `key(row)`, and the
    table, sorted by key, replaces the file atomically (each row's `cells()`).

    With no new rows the table is only read (it is always replaced whole, so without the
    lock, and nothing is created): a run does so before any fit, so that a table it cannot
    merge into (damaged, or saved by a spreadsheet in its own format) stops it then, not
    after its first results.
    """
    new_rows = list(new_rows)
    if not new_rows:
        read(path)
        return
    with exclusive_lock(path):
        rows = read(path)
        rows.update((key(row), row) for row in new_rows)
        write_csv(path, columns, [rows[name].cells() for name in sorted(rows)])


def name_problem(name: str) -> str | None:
    """Why a file name (as os gives it: undecodable bytes as surrogates) cannot be written
    into CSV and HTML files and shown on one line; None when it can."""
    try:
        str(name).encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if "\n" in str(name) or "\r" in str(name):
        return "holds a line break"
    return None


def shown_name(name: str | Path) -> str:
    """A file name on one printable line: an undecodable byte as `\\xNN`, a line break or
    another control character as its escape."""
    def shown(char):
        if 0xDC80 <= ord(char) <= 0xDCFF:              # os's stand-in for a byte
            return f"\\x{ord(char) - 0xDC00:02x}"
        return char if char.isprintable() else char.encode("unicode_escape").decode()
    return "".join(shown(char) for char in str(name))


def shown_value(value) -> str:
    """A value read from a file, for a message: an array of several elements by its shape
    and type (its repr could run to thousands of lines), anything else by its repr on one
    printable line of at most 80 characters."""
    if getattr(value, "size", 1) > 1:
        return f"an array of shape {value.shape} and type {value.dtype}"
    if getattr(value, "size", 0) == 1:
        value = value.item()                   # a numpy scalar or one-element array
    return shown_text(repr(value))


def shown_text(text: str) -> str:
    """`text` on one printable line of at most 80 characters."""
    text = shown_name(" ".join(str(text).split()))
    return text if len(text) <= 80 else text[:77] + "..."


def check_finite(path: str | Path, arrays: dict) -> None:
    """Raise InputError naming `path` (and nothing is written) when a numeric array of
    `arrays` ({name: numpy array or torch tensor}) holds NaN or infinite values: nothing
    non-finite is ever written as converted."""
    bad = []
    for name, value in arrays.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        value = np.asarray(value)
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            bad.append(name)
    if bad:
        raise InputError(f"{path}: not written: NaN or infinite values in" + listed(bad))
