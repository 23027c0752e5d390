"""The per-pose error table of stage 2, `errors.csv` (one row per converted pose).

The table is rewritten whole after every batch: the rows already in the file and the new
rows are merged (a new row replaces an old one of the same pose id, rows sorted by pose
id), and the merged table replaces the file atomically under an exclusive lock. So a resumed
run keeps the rows of earlier runs, shards sharing an output folder never lose each other's
rows, and the table never depends on the order in which poses finished. Rewriting 10,000
short rows costs milliseconds, far below a batch's fit.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import InputError
from .files import exclusive_lock, open_regular, write_csv

ERRORS_CSV = "errors.csv"
CSV_COLUMNS = ("pose_id", "v2v_mean_mm", "v2v_max_mm", "iterations", "converged", "flagged")


@dataclass(frozen=True)
class ErrorRow:
    """One pose's line in errors.csv."""
    pose_id: int
    v2v_mean_mm: float
    v2v_max_mm: float
    iterations: int
    converged: bool
    flagged: bool

    def cells(self) -> list:
        return [str(self.pose_id), f"{self.v2v_mean_mm:.4f}", f"{self.v2v_max_mm:.4f}",
                str(self.iterations), str(int(self.converged)), str(int(self.flagged))]


def read_error_rows(path: str | Path) -> dict:
    """Rows of an errors.csv as {pose_id: ErrorRow}; empty when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return {}
    rows = {}
    try:
        with open_regular(path, "r", newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return {}
            if tuple(header) != CSV_COLUMNS:
                raise InputError(f"{path}: columns {header[:10]}, expected "
                                 f"{list(CSV_COLUMNS)}")
            for line_number, cells in enumerate(reader, start=2):
                try:
                    pose_id, mean, peak, iterations, converged, flagged = cells
                    row = ErrorRow(int(pose_id), float(mean), float(peak), int(iterations),
                                   bool(int(converged)), bool(int(flagged)))
                except ValueError:
                    raise InputError(f"{path}: line {line_number} is malformed: "
                                     f"{cells[:10]}"[:300]) from None
                rows[row.pose_id] = row
    except (csv.Error, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not a readable CSV table ({error})") from None
    return rows


def merge_error_rows(path: str | Path, new_rows: Iterable[ErrorRow]) -> None:
    """Merge `new_rows` (iterable of ErrorRow) into errors.csv at `path`, atomically.

    A new row replaces the stored row of the same pose id; the file is sorted by pose id.
    """
    new_rows = list(new_rows)
    if not new_rows:
        return
    with exclusive_lock(path):
        rows = read_error_rows(path)
        rows.update((row.pose_id, row) for row in new_rows)
        write_csv(path, CSV_COLUMNS, [rows[pose_id].cells() for pose_id in sorted(rows)])
