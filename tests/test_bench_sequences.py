"""benchmarks/bench_sequences.py: the jitter of the source's poses on the target's body (the
reference printed beside each jitter), against the stock smplx layer."""
from pathlib import Path

import numpy as np
import smplx
import torch

from benchmarks.bench_sequences import source_on_target_jitter
from smplh2smplx.family import KINDS
from smplh2smplx.formats.sequence_files import read_motion
from smplh2smplx.stages.sequences.convert import (GenderModels, SequenceOptions, SourceFrames,
                                                  pair_transfer)


def test_source_poses_on_the_target_body_match_the_stock_layer(kit):
    options = SequenceOptions(input_path=kit.amass, output_dir=Path("unused"),
                              model_paths={kind: kit.body_models for kind in KINDS},
                              deftrafo_path=kit.deftrafo.parent, mask_path=kit.mask,
                              target_model="smplx", device="cpu")
    transfer = pair_transfer(options, "smplh", "smplx")
    sequence = read_motion(kit.amass / kit.sequences[0], "smplh")
    models = GenderModels(options, "smplh", sequence.gender, transfer.mask_ids,
                          torch.device("cpu"))
    source = SourceFrames(sequence, 2, models, transfer)           # every 2nd frame
    rate = sequence.framerate / 2
    betas = np.linspace(-1.5, 1.5, models.target.num_betas)
    measured = source_on_target_jitter(models, source, betas, rate)

    count = len(source)
    layer = smplx.create(str(kit.body_models), model_type="smplx", gender=sequence.gender,
                         ext="npz", num_betas=len(betas), use_pca=False, flat_hand_mean=True,
                         batch_size=count)
    poses = torch.as_tensor(sequence.poses[::2], dtype=torch.float32)
    joints = layer(betas=torch.as_tensor(betas, dtype=torch.float32).expand(count, -1),
                   global_orient=poses[:, :3], body_pose=poses[:, 3:66],
                   transl=torch.as_tensor(sequence.trans[::2], dtype=torch.float32)
                   ).joints[:, :22].detach().double().numpy()
    second = joints[2:] - 2 * joints[1:-1] + joints[:-2]
    expected = np.linalg.norm(second, axis=-1).mean(-1) * rate ** 2
    assert measured.shape == (count - 2,)
    np.testing.assert_allclose(measured, expected, rtol=2e-3, atol=1e-3)


def test_the_benchmark_keeps_its_tensors_where_a_gpu_run_needs_them(kit, monkeypatch, capsys):
    """`--device cuda`, checked on the stand-in device (tests/device_discipline.py): the
    floor, both paths and the tree's rows run and print."""
    from dataclasses import replace

    from benchmarks.bench_sequences import measure, measure_tree
    from device_discipline import STAND_IN, DeviceDiscipline, take_cuda_branches
    from smplh2smplx.stages.sequences.convert import FRAME_FIT

    take_cuda_branches(monkeypatch)
    options = SequenceOptions(input_path=kit.amass, output_dir=Path("unused"),
                              model_paths={kind: kit.body_models for kind in KINDS},
                              deftrafo_path=kit.deftrafo.parent, mask_path=kit.mask,
                              device=str(STAND_IN))
    motions = [read_motion(kit.amass / name, "smplh") for name in kit.sequences[:2]]
    motions = [replace(motion, poses=motion.poses[:8], trans=motion.trans[:8])
               for motion in motions]
    with DeviceDiscipline():
        measure("one", motions[0], "smplh", "smplx", options, None, [FRAME_FIT.max_iterations],
                FRAME_FIT.fit_vertices, 1, STAND_IN)
        measure_tree("two", motions, options, 1, STAND_IN)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    columns = [row.split(" | ") for row in rows]
    assert [(cells[0], cells[1], cells[3]) for cells in columns] == [
        ("| one", "SMPL-H -> SMPL-X", "8"), ("| two, one at a time", "SMPL-H -> SMPL-X", "16"),
        ("| two, together", "SMPL-H -> SMPL-X", "16")]
