"""`sequences.csv`: one row of quality figures per converted motion sequence.

Merged under an exclusive lock and replaced atomically, like errors.csv, so that shards
sharing an output folder keep each other's rows. Accelerations are in m/s^2. A sequence
name is data: one that a spreadsheet would take for a formula (`=`, `+`, `-`, `@`...) is
written behind a `'` (`spreadsheet_text`) and read back as it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .files import merge_csv_rows, read_csv_rows, spreadsheet_text, text_from_spreadsheet

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
    """{sequence: SequenceRow} of a sequences.csv; empty when the file does not exist.
    InputError naming the file when it is not such a table (`read_csv_rows`)."""
    def parse(cells):
        name, frames, fps, gender, mean, p95, peak, jitter, source, _excess, secs = cells
        return SequenceRow(text_from_spreadsheet(name), int(frames), float(fps), gender,
                           float(mean), float(p95), float(peak), float(jitter),
                           float(source), float(secs))

    return {row.sequence: row for row in read_csv_rows(path, CSV_COLUMNS, parse)}


def merge_sequence_rows(path: str | Path, new_rows: Iterable[SequenceRow]) -> None:
    """Merge rows into sequences.csv under an exclusive lock; a new row replaces the stored
    row of the same sequence; the file is sorted by sequence and replaced atomically.
    No rows: the table is only checked (`merge_csv_rows`)."""
    merge_csv_rows(path, CSV_COLUMNS, read_sequence_rows, new_rows, lambda row: row.sequence)
