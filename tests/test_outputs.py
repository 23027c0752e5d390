"""The stage-2 output contract (.pkl) and the per-pose error table (errors.csv)."""
import pickle
import threading
from pathlib import Path

import pytest
import torch

from smplh2smplx.errors import InputError
from smplh2smplx.formats.errors_csv import CSV_COLUMNS, ErrorRow, merge_error_rows, read_error_rows
from smplh2smplx.formats.param_files import parameter_path
from smplh2smplx.family import SMPLX
from smplh2smplx.formats.param_files import (pose_from_parameters, read_parameters,
                                             write_parameters)

CONTRACT = {
    "global_orient": (1, 3), "body_pose": (21, 3), "betas": (1, 10),
    "left_hand_pose": (15, 3), "right_hand_pose": (15, 3), "jaw_pose": (1, 3),
    "leye_pose": (1, 1, 3), "reye_pose": (1, 1, 3), "transl": (1, 3),
}


def check_contract(path):
    """Load with plain pickle (what PoseEmbroider does) and check every key against the
    contract of docs/FORMATS.md."""
    with open(path, "rb") as handle:
        params = pickle.load(handle)
    assert type(params) is dict and set(params) == set(CONTRACT)
    for key, shape in CONTRACT.items():
        value = params[key]
        assert isinstance(value, torch.Tensor), key
        assert tuple(value.shape) == shape, key
        assert value.dtype == torch.float32 and value.device.type == "cpu", key
        assert not value.requires_grad and value.grad_fn is None, key
    return params


def test_contract_table_matches_formats_doc():
    assert SMPLX.parameter_shapes == CONTRACT


def test_written_file_matches_contract_and_joint_order(tmp_path):
    pose = torch.arange(165, dtype=torch.float64).view(55, 3).requires_grad_()
    betas = torch.linspace(-1, 1, 10, requires_grad=True)
    transl = torch.tensor([0.25, -0.5, 1.0], requires_grad=True)
    path = parameter_path(tmp_path, 42)
    assert path.name == "000042.pkl"
    write_parameters(path, "smplx", pose * 1, betas * 1, transl * 1)   # tensors with history
    params = check_contract(path)
    expected = pose.detach().float()
    assert torch.equal(params["global_orient"][0], expected[0])
    assert torch.equal(params["body_pose"], expected[1:22])
    assert torch.equal(params["jaw_pose"][0], expected[22])
    assert torch.equal(params["leye_pose"][0, 0], expected[23])
    assert torch.equal(params["reye_pose"][0, 0], expected[24])
    assert torch.equal(params["left_hand_pose"], expected[25:40])
    assert torch.equal(params["right_hand_pose"], expected[40:55])
    # The consumer's (52, 3): root, body, left hand, right hand.
    full = torch.cat([params[k] for k in ("global_orient", "body_pose", "left_hand_pose",
                                          "right_hand_pose")])
    assert full.shape == (52, 3)
    read_pose, read_betas, read_transl = pose_from_parameters(read_parameters(path, "smplx"), "smplx")
    assert torch.equal(read_pose, expected) and torch.equal(read_betas, betas.detach())
    assert torch.equal(params["transl"][0], transl.detach()) and torch.equal(read_transl,
                                                                             transl.detach())
    assert [p.name for p in tmp_path.iterdir()] == ["000042.pkl"]   # no temporary left


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.pop("jaw_pose"), "keys"),
    (lambda p: p.update(betas=torch.zeros(1, 16)), "betas shape"),
    (lambda p: p.update(body_pose=torch.zeros(21, 3, dtype=torch.float64)), "dtype"),
    (lambda p: p.update(body_pose=torch.zeros(21, 3, requires_grad=True)), "autograd"),
    (lambda p: p.update(body_pose=torch.full((21, 3), float("nan"))), "NaN"),
    (lambda p: p.update(betas=[0.0] * 10), "torch tensor"),
])
def test_reader_rejects_departures_from_contract(tmp_path, damage, message):
    path = tmp_path / "000001.pkl"
    write_parameters(path, "smplx", torch.zeros(55, 3), torch.zeros(10))
    params = read_parameters(path, "smplx")
    damage(params)
    with open(path, "wb") as handle:
        pickle.dump(params, handle)
    with pytest.raises(InputError, match=message) as error:
        read_parameters(path, "smplx")
    assert str(path) in str(error.value)


def poseembroider_pose(folder, pose_id):
    """PoseEmbroider's reading of a converted PoseScript/PoseFix pose, written anew from its
    documented behaviour: plain-pickle `<pose_id:06d>.pkl`, then global_orient, body_pose,
    left_hand_pose and right_hand_pose concatenated as one float32 (52, 3) pose; any other
    key of the file is not looked at."""
    with open(Path(folder) / f"{pose_id:06d}.pkl", "rb") as handle:
        data = pickle.load(handle)
    keys = ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose")
    return torch.concat([data[key] for key in keys]).to(torch.float32).view(-1, 3).detach()


def test_poseembroider_reads_the_smplx_files_with_their_translation(tmp_path):
    pose = torch.randn(55, 3, generator=torch.Generator().manual_seed(0))
    write_parameters(parameter_path(tmp_path, 7), "smplx", pose, torch.zeros(10),
                     torch.tensor([0.1, 0.2, 0.3]))
    read = poseembroider_pose(tmp_path, 7)
    # Root, the 21 body joints, then the hands (SMPL-X joints 25-54): the jaw and eyes
    # (22-24) are not part of PoseEmbroider's pose.
    assert read.shape == (52, 3) and read.dtype == torch.float32
    assert torch.equal(read, torch.cat([pose[:22], pose[25:]]).float())


def test_reader_names_unreadable_file(tmp_path):
    path = tmp_path / "000001.pkl"
    path.write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="000001.pkl"):
        read_parameters(path, "smplx")


def test_writer_refuses_wrong_shapes(tmp_path):
    with pytest.raises(ValueError):
        write_parameters(tmp_path / "x.pkl", "smplx", torch.zeros(52, 3), torch.zeros(10))
    with pytest.raises(ValueError):
        write_parameters(tmp_path / "x.pkl", "smplx", torch.zeros(55, 3), torch.zeros(16))
    assert not list(tmp_path.iterdir())


def row(pose_id, mean=1.0):
    return ErrorRow(pose_id, mean, 2 * mean, 5, True, mean > 10)


def test_csv_merge_keeps_earlier_rows_replaces_same_ids_and_sorts(tmp_path):
    path = tmp_path / "errors.csv"
    merge_error_rows(path, [row(7), row(3)])
    merge_error_rows(path, [row(5), row(3, mean=12.5)])
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS)
    assert [line.split(",")[0] for line in lines[1:]] == ["3", "5", "7"]
    rows = read_error_rows(path)
    assert rows[3] == row(3, mean=12.5) and rows[3].flagged
    assert rows[7] == row(7)


def test_csv_concurrent_writers_lose_no_rows(tmp_path):
    """Shards sharing an output folder merge into the same table at the same time."""
    path = tmp_path / "errors.csv"

    def writer(offset):
        for batch in range(10):
            merge_error_rows(path, [row(offset + 10 * batch + i) for i in range(10)])

    threads = [threading.Thread(target=writer, args=(1000 * k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(read_error_rows(path)) == 400


def test_csv_reader_names_malformed_file(tmp_path):
    path = tmp_path / "errors.csv"
    path.write_text("pose_id,v2v\n1,2\n")
    with pytest.raises(InputError, match="errors.csv"):
        read_error_rows(path)
