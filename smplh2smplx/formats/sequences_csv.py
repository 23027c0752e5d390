"""`sequences.csv`: one row of quality figures per converted motion sequence.

Merged under an exclusive lock and replaced atomically, like errors.csv, so that shards
sharing an output folder keep each other's rows. Accelerations are in m/s^2. A sequence
name is data: one that a spreadsheet would take for a formula (`=`, `+`, `-`, `@`...) is
written behind a `'` (`spreadsheet_text`) and read back as it was.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import InputError
from .files import (exclusive_lock, open_regular, spreadsheet_text, text_from_spreadsheet,
                    write_csv)

SEQUENCES_CSV = "sequences.csv"


@dataclass(frozen=True)
class SequenceRow:
    """One sequence's line in sequences.csv (accelerations in m/s^2)."""
    sequence: str
    frames: int
    fps: float
    gender: str
    v2v_mean_mm: float
    v2v_p95_mm: float
    v2v_max_mm: float
    jitter: float
    source_jitter: float
    seconds: float

    @property
    def jitter_excess(self) -> float:
        """Fitted minus source mean joint acceleration."""
        return self.jitter - self.source_jitter

    def cells(self) -> list:
        return [spreadsheet_text(self.sequence), str(self.frames), f"{self.fps:g}", self.gender,
                f"{self.v2v_mean_mm:.4f}", f"{self.v2v_p95_mm:.4f}", f"{self.v2v_max_mm:.4f}",
                f"{self.jitter:.4f}", f"{self.source_jitter:.4f}", f"{self.jitter_excess:.4f}",
                f"{self.seconds:.2f}"]


CSV_COLUMNS = ("sequence", "frames", "fps", "gender", "v2v_mean_mm", "v2v_p95_mm",
               "v2v_max_mm", "jitter_mps2", "source_jitter_mps2", "jitter_excess_mps2",
               "seconds")


def read_sequence_rows(path: str | Path) -> dict:
    """{sequence: SequenceRow} of a sequences.csv; empty when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return {}
    rows = {}
    with open_regular(path, "r", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return {}
        if tuple(header) != CSV_COLUMNS:
            raise InputError(f"{path}: columns {header}, expected {list(CSV_COLUMNS)}")
        for line_number, cells in enumerate(reader, start=2):
            try:
                name, frames, fps, gender, mean, p95, peak, jitter, source, _excess, secs = cells
                row = SequenceRow(text_from_spreadsheet(name), int(frames), float(fps),
                                  gender, float(mean), float(p95), float(peak), float(jitter),
                                  float(source), float(secs))
            except ValueError:
                raise InputError(f"{path}: line {line_number} is malformed: {cells}") from None
            rows[row.sequence] = row
    return rows


def merge_sequence_rows(path: str | Path, new_rows: Iterable[SequenceRow]) -> None:
    """Merge rows into sequences.csv under an exclusive lock; a new row replaces the stored
    row of the same sequence; the file is sorted by sequence and replaced atomically."""
    new_rows = list(new_rows)
    if not new_rows:
        return
    with exclusive_lock(path):
        rows = read_sequence_rows(path)
        rows.update((row.sequence, row) for row in new_rows)
        write_csv(path, CSV_COLUMNS, [rows[name].cells() for name in sorted(rows)])
