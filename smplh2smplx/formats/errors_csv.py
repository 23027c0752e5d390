"""The per-pose error table of stage 2, `errors.csv` (one row per converted pose).

The table is rewritten whole after every batch: the rows already in the file and the new
rows are merged (a new row replaces an old one of the same pose id, rows sorted by pose
id), and the merged table replaces the file atomically under an exclusive lock. So a resumed
run keeps the rows of earlier runs, shards sharing an output folder never lose each other's
rows, and the table never depends on the order in which poses finished. Rewriting 10,000
short rows costs milliseconds, far below a batch's fit.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .files import merge_csv_rows, read_csv_rows

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
    """Rows of an errors.csv as {pose_id: ErrorRow}; empty when the file does not exist.
    InputError naming the file when it is not such a table (`read_csv_rows`)."""
    def parse(cells):
        pose_id, mean, peak, iterations, converged, flagged = cells
        return ErrorRow(int(pose_id), float(mean), float(peak), int(iterations),
                        bool(int(converged)), bool(int(flagged)))

    return {row.pose_id: row for row in read_csv_rows(path, CSV_COLUMNS, parse)}


def merge_error_rows(path: str | Path, new_rows: Iterable[ErrorRow]) -> None:
    """Merge `new_rows` (iterable of ErrorRow) into errors.csv at `path`, atomically.

    A new row replaces the stored row of the same pose id; the file is sorted by pose id.
    No rows: the table is only checked (`merge_csv_rows`).
    """
    merge_csv_rows(path, CSV_COLUMNS, read_error_rows, new_rows, lambda row: row.pose_id)
