"""atomic_write: whole files or none, with the permissions of an ordinary open."""
import os
import stat

import pytest

from smplh2smplx.formats.files import atomic_write


def test_written_file_has_umask_permissions_and_no_temporary_is_left(tmp_path):
    target = tmp_path / "sub" / "000001.pkl"
    with atomic_write(target) as handle:
        handle.write(b"data")
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert target.read_bytes() == b"data"
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    assert os.listdir(target.parent) == ["000001.pkl"]


def test_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "errors.csv"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target, "w") as handle:
            handle.write("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["errors.csv"]
