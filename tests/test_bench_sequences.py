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
