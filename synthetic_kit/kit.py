"""Writing a kit: its paths, the model files in both codebases' formats, then AMASS and
the annotations."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .annotations import write_annotations
from .files import atomic_write, write_npz, write_pickle
from .models import build_models
from .motions import write_amass


@dataclass(frozen=True)
class SyntheticKit:
    """Paths of a written synthetic kit (see write_synthetic_kit)."""
    root: Path
    body_models: Path             # holds smplh/ and smplx/ (smplx.create's model_path)
    smplh_npz: Path               # smplh/neutral/model.npz, AMASS codebase
    smplh_pkl: Path               # smplh/SMPLH_NEUTRAL.pkl, smplx codebase
    smplx_npz: Path
    smplx_pkl: Path
    deftrafo: Path                # transfer/smplh2smplx_deftrafo_setup.pkl
    mask: Path                    # transfer/smplx_mask_ids.npy
    amass: Path                   # AMASS SMPL-H root
    posescript_ids: Path          # posescript/ids_2_dataset_sequence_and_frame_index_100k.json
    posescript_human: Path        # posescript/posescript_human_6293.json
    posefix_human: Path           # posefix/posefix_human_6157.json
    posefix_pairs: Path           # posefix/pair_id_2_pose_ids.json
    posefix_ids: Path             # posefix/ids_2_dataset_sequence_and_frame_index_100k.json
    sequences: tuple              # AMASS files written, relative to `amass`


def kit_paths(root):
    """The SyntheticKit of a kit rooted at `root` (written or not)."""
    root = Path(root)
    models = root / "body_models"
    return dict(
        root=root, body_models=models,
        smplh_npz=models / "smplh" / "neutral" / "model.npz",
        smplh_pkl=models / "smplh" / "SMPLH_NEUTRAL.pkl",
        smplx_npz=models / "smplx" / "SMPLX_NEUTRAL.npz",
        smplx_pkl=models / "smplx" / "SMPLX_NEUTRAL.pkl",
        deftrafo=root / "transfer" / "smplh2smplx_deftrafo_setup.pkl",
        mask=root / "transfer" / "smplx_mask_ids.npy",
        amass=root / "amass",
        posescript_ids=root / "posescript" / "ids_2_dataset_sequence_and_frame_index_100k.json",
        posescript_human=root / "posescript" / "posescript_human_6293.json",
        posefix_human=root / "posefix" / "posefix_human_6157.json",
        posefix_pairs=root / "posefix" / "pair_id_2_pose_ids.json",
        posefix_ids=root / "posefix" / "ids_2_dataset_sequence_and_frame_index_100k.json")


def write_models(models, paths):
    """The four body-model files, the deformation transfer and the mask."""
    smplh, smplx = models.smplh, models.smplx
    amass_codebase = dict(smplh.arrays(sparse_regressor=False),
                          J=smplh.j_regressor @ smplh.v_template,
                          bs_style=np.array("lbs"), bs_type=np.array("lrotmin"))
    write_npz(paths["smplh_npz"], amass_codebase)
    write_pickle(paths["smplh_pkl"], dict(smplh.arrays(sparse_regressor=True),
                                           **smplh.hand_arrays(), bs_style="lbs",
                                           bs_type="lrotmin"))
    write_npz(paths["smplx_npz"], dict(smplx.arrays(sparse_regressor=False),
                                        **smplx.hand_arrays()))
    write_pickle(paths["smplx_pkl"], dict(smplx.arrays(sparse_regressor=True),
                                           **smplx.hand_arrays()))
    write_pickle(paths["deftrafo"], {"mtx": models.deftrafo})
    with atomic_write(paths["mask"]) as handle:
        np.save(handle, models.mask_ids)



def write_synthetic_kit(root: Path, seed: int = 0, n_sequences: int = 4,
                        frames_per_sequence: int = 60) -> SyntheticKit:
    """Write a complete synthetic kit under `root`, deterministically from `seed`.

    Layout (all in the official formats, see docs FORMATS.md):
        body_models/smplh/neutral/model.npz, body_models/smplh/SMPLH_NEUTRAL.pkl,
        body_models/smplx/SMPLX_NEUTRAL.npz, body_models/smplx/SMPLX_NEUTRAL.pkl,
        transfer/smplh2smplx_deftrafo_setup.pkl, transfer/smplx_mask_ids.npy,
        amass/<subset>/<subject>/<name>_poses.npz (n_sequences of frames_per_sequence),
        posescript/ids_2_dataset_sequence_and_frame_index_100k.json,
        posescript/posescript_human_6293.json, posefix/posefix_human_6157.json,
        posefix/pair_id_2_pose_ids.json, posefix/ids_2_dataset_sequence_and_frame_index_100k.json
    The body surfaces depend on the design only; the seed varies the SMPL-X differences,
    the blend shapes, the motions and the annotations.
    """
    if n_sequences < 1 or frames_per_sequence < 8:
        raise ValueError("a kit needs at least one sequence of at least 8 frames")
    paths = kit_paths(root)
    models = build_models(seed)
    write_models(models, paths)
    sequences = write_amass(models, paths, seed, n_sequences, frames_per_sequence)
    write_annotations(sequences, paths, seed)
    return SyntheticKit(**paths, sequences=tuple(relative for relative, _ in sequences))

