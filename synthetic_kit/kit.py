"""Writing a kit: its paths, the model files in both codebases' formats, then AMASS and
the annotations."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .annotations import write_annotations
from .files import atomic_write, write_npz, write_pickle
from .models import GENDERS, MODEL_TYPES, build_models
from .motions import SHAPE_FILE, SMPLX_SEQUENCE, write_amass


@dataclass(frozen=True)
class SyntheticKit:
    """Paths of a written synthetic kit (see write_synthetic_kit); files of genders or
    model types not asked for are absent."""
    root: Path
    body_models: Path             # holds smpl/, smplh/ and smplx/ (smplx.create's model_path)
    smplh_npz: Path               # smplh/neutral/model.npz, AMASS codebase
    smplh_pkl: Path               # smplh/SMPLH_NEUTRAL.pkl, smplx codebase
    smplx_npz: Path               # smplx/SMPLX_NEUTRAL.npz
    smplx_pkl: Path
    smpl_pkl: Path                # smpl/SMPL_NEUTRAL.pkl
    smplh_male_npz: Path          # smplh/male/model.npz
    smplh_male_pkl: Path          # smplh/SMPLH_MALE.pkl
    smplh_female_npz: Path
    smplh_female_pkl: Path
    smplx_male_npz: Path          # smplx/SMPLX_MALE.npz
    smplx_male_pkl: Path
    smplx_female_npz: Path
    smplx_female_pkl: Path
    smpl_male_pkl: Path           # smpl/SMPL_MALE.pkl
    smpl_female_pkl: Path
    deftrafo: Path                # transfer/smplh2smplx_deftrafo_setup.pkl
    mask: Path                    # transfer/smplx_mask_ids.npy
    smpl2smplh_deftrafo: Path     # transfer/smpl2smplh_def_transfer.pkl
    smpl2smplx_deftrafo: Path     # transfer/smpl2smplx_deftrafo_setup.pkl
    smplh2smpl_deftrafo: Path     # transfer/smplh2smpl_def_transfer.pkl
    smplx2smpl_deftrafo: Path     # transfer/smplx2smpl_deftrafo_setup.pkl
    smplx2smplh_deftrafo: Path    # transfer/smplx2smplh_deftrafo_setup.pkl
    amass: Path                   # AMASS SMPL-H root
    amass_smplx: Path             # one AMASS SMPL-X sequence (*_stageii.npz) in that tree
    amass_shape: Path             # one subject's shape.npz in that tree
    smpl_motions: Path            # the same motions as SMPL files (poses (T, 72)), same tree
    smplx_motions: Path           # the same motions as AMASS SMPL-X *_stageii.npz, same tree
    posescript_ids: Path          # posescript/ids_2_dataset_sequence_and_frame_index_100k.json
    posescript_human: Path        # posescript/posescript_human_6293.json
    posefix_human: Path           # posefix/posefix_human_6157.json
    posefix_pairs: Path           # posefix/pair_id_2_pose_ids.json
    posefix_ids: Path             # posefix/ids_2_dataset_sequence_and_frame_index_100k.json
    sequences: tuple              # AMASS SMPL-H files written, relative to `amass`


# The official file name of each deformation transfer.
TRANSFER_FILES = {
    "smpl2smplh": "smpl2smplh_def_transfer.pkl", "smpl2smplx": "smpl2smplx_deftrafo_setup.pkl",
    "smplh2smpl": "smplh2smpl_def_transfer.pkl", "smplh2smplx": "smplh2smplx_deftrafo_setup.pkl",
    "smplx2smpl": "smplx2smpl_deftrafo_setup.pkl", "smplx2smplh": "smplx2smplh_deftrafo_setup.pkl",
}


def model_files(body_models, model_type, gender):
    """{"npz"/"pkl": path} of one model's files in the official layout."""
    upper = gender.upper()
    if model_type == "smplh":
        return {"npz": body_models / "smplh" / gender / "model.npz",
                "pkl": body_models / "smplh" / f"SMPLH_{upper}.pkl"}
    if model_type == "smplx":
        return {"npz": body_models / "smplx" / f"SMPLX_{upper}.npz",
                "pkl": body_models / "smplx" / f"SMPLX_{upper}.pkl"}
    return {"pkl": body_models / "smpl" / f"SMPL_{upper}.pkl"}


def kit_paths(root):
    """The SyntheticKit fields of a kit rooted at `root` (written or not), as a dict."""
    root = Path(root)
    models = root / "body_models"
    paths = dict(root=root, body_models=models)
    for model_type in MODEL_TYPES:
        for gender in GENDERS:
            key = model_type if gender == "neutral" else f"{model_type}_{gender}"
            for ext, path in model_files(models, model_type, gender).items():
                paths[f"{key}_{ext}"] = path
    paths.update(deftrafo=root / "transfer" / TRANSFER_FILES["smplh2smplx"],
                 mask=root / "transfer" / "smplx_mask_ids.npy")
    for name, file_name in TRANSFER_FILES.items():
        if name != "smplh2smplx":
            paths[f"{name}_deftrafo"] = root / "transfer" / file_name
    paths.update(
        amass=root / "amass",
        amass_smplx=root / "amass" / SMPLX_SEQUENCE,
        amass_shape=root / "amass" / SHAPE_FILE,
        smpl_motions=root / "motions_smpl",
        smplx_motions=root / "motions_smplx",
        posescript_ids=root / "posescript" / "ids_2_dataset_sequence_and_frame_index_100k.json",
        posescript_human=root / "posescript" / "posescript_human_6293.json",
        posefix_human=root / "posefix" / "posefix_human_6157.json",
        posefix_pairs=root / "posefix" / "pair_id_2_pose_ids.json",
        posefix_ids=root / "posefix" / "ids_2_dataset_sequence_and_frame_index_100k.json")
    return paths


def write_models(models, paths, genders=GENDERS, model_types=MODEL_TYPES):
    """The body-model files asked for, the deformation transfers between the model types
    asked for, and the SMPL-X mask."""
    for gender in genders:
        key = "" if gender == "neutral" else f"_{gender}"
        if "smplh" in model_types:
            smplh = models.smplh[gender]
            write_npz(paths[f"smplh{key}_npz"], dict(
                smplh.arrays(sparse_regressor=False), J=smplh.j_regressor @ smplh.v_template,
                bs_style=np.array("lbs"), bs_type=np.array("lrotmin")))
            write_pickle(paths[f"smplh{key}_pkl"], dict(
                smplh.arrays(sparse_regressor=True), **smplh.hand_arrays(), bs_style="lbs",
                bs_type="lrotmin"))
        if "smplx" in model_types:
            smplx = models.smplx[gender]
            write_npz(paths[f"smplx{key}_npz"], dict(smplx.arrays(sparse_regressor=False),
                                                     **smplx.hand_arrays()))
            write_pickle(paths[f"smplx{key}_pkl"], dict(smplx.arrays(sparse_regressor=True),
                                                        **smplx.hand_arrays()))
        if "smpl" in model_types:
            smpl = models.smpl[gender]
            write_pickle(paths[f"smpl{key}_pkl"], dict(
                smpl.arrays(sparse_regressor=True), J=smpl.j_regressor @ smpl.v_template,
                bs_style="lbs", bs_type="lrotmin"))
    for name, matrix in models.transfers.items():
        source, target = name.split("2")
        if source in model_types and target in model_types:
            key = "deftrafo" if name == "smplh2smplx" else f"{name}_deftrafo"
            write_pickle(paths[key], {"mtx": matrix})
    if "smplx" in model_types:
        with atomic_write(paths["mask"]) as handle:
            np.save(handle, models.mask_ids)


def write_synthetic_kit(root: Path, seed: int = 0, n_sequences: int = 4,
                        frames_per_sequence: int = 60, variant: str = "default",
                        genders=GENDERS, model_types=MODEL_TYPES) -> SyntheticKit:
    """Write a synthetic kit under `root`, deterministically from `seed`.

    Layout (all in the official formats, see docs FORMATS.md; kit_paths names every file):
        body_models/smplh/{neutral,male,female}/model.npz, body_models/smplh/SMPLH_*.pkl,
        body_models/smplx/SMPLX_{NEUTRAL,MALE,FEMALE}.{npz,pkl},
        body_models/smpl/SMPL_{NEUTRAL,MALE,FEMALE}.pkl,
        transfer/ the six deformation transfers and smplx_mask_ids.npy,
        amass/<subset>/<subject>/<name>_poses.npz (n_sequences of frames_per_sequence),
            plus one SMPL-X *_stageii.npz and one shape.npz in that tree,
        motions_smpl/, motions_smplx/: the same motions as SMPL files and AMASS SMPL-X files
            (same relative folders; the hands of SMPL and the jaw and eyes of SMPL-X at rest),
        posescript/ids_2_dataset_sequence_and_frame_index_100k.json,
        posescript/posescript_human_6293.json, posefix/posefix_human_6157.json,
        posefix/pair_id_2_pose_ids.json, posefix/ids_2_dataset_sequence_and_frame_index_100k.json
    The body surfaces depend on the design only; the seed varies the SMPL-X differences,
    the blend shapes, the motions and the annotations. `variant` (models.VARIANTS) says how
    far SMPL-X is from SMPL-H: "default" a few millimetres everywhere (a nearly constant
    error floor), "realistic" as far as the real models (a floor varying with the pose).
    `genders` and `model_types` limit the model files written (and the transfers to those
    types); the sequences' genders cycle through the genders written.
    """
    if n_sequences < 1 or frames_per_sequence < 8:
        raise ValueError("a kit needs at least one sequence of at least 8 frames")
    unknown = sorted(set(genders) - set(GENDERS)) + sorted(set(model_types) - set(MODEL_TYPES))
    if unknown or not genders or not model_types:
        raise ValueError(f"genders must be among {GENDERS} and model_types among "
                         f"{MODEL_TYPES} (got {tuple(genders)}, {tuple(model_types)})")
    paths = kit_paths(root)
    models = build_models(seed, variant)
    write_models(models, paths, genders, model_types)
    sequences = write_amass(models, paths, seed, n_sequences, frames_per_sequence, genders)
    write_annotations(sequences, paths, seed)
    return SyntheticKit(**paths, sequences=tuple(relative for relative, _ in sequences))
