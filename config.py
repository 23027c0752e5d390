"""The one place to write the paths of your downloads and outputs.

Replace every TODO with a path on your machine (absolute, or relative to the folder you
run the scripts from). Each is the default of one setting of every command (see
`--help`: e.g. SMPLX_MODEL is --smplx-model); a flag wins over it.
"""
TODO = "TODO"

# AMASS "SMPL+H G" download: the folder holding the subsets (ACCAD/, BMLmovi/, CMU/, ...).
AMASS_DIR = TODO
# PoseFix release folder: posefix_human_6157.json, pair_id_2_pose_ids.json,
# ids_2_dataset_sequence_and_frame_index_100k.json.
POSEFIX_DIR = TODO
# PoseScript release folder: posescript_human_6293.json and the same id mapping.
# Set it to "" to convert the PoseFix-H poses only.
POSESCRIPT_DIR = TODO
# SMPL-H body model: the AMASS "Extended SMPL+H" folder (with neutral/model.npz, and
# male/ and female/ for convert_sequences.py), or a smplx-codebase SMPLH_NEUTRAL.pkl / .npz file.
SMPLH_MODEL = TODO
# SMPL-X body model: the models_smplx_v1_1 "models" folder (with smplx/SMPLX_NEUTRAL.npz),
# or the model file itself.
SMPLX_MODEL = TODO
# SMPL body model (only for pairs with SMPL): the folder with
# smpl/SMPL_{NEUTRAL,MALE,FEMALE}.pkl, or the model file itself.
SMPL_MODEL = TODO
# From the smplx "model transfer" data: the deformation transfer of the pair converted, or
# the folder holding the official files (each pair takes its own by name;
# --deformation-transfer), and the SMPL-X mask (--mask).
DEFTRAFO_PATH = TODO  # smplh2smplx_deftrafo_setup.pkl
MASK_IDS_PATH = TODO  # smplx_mask_ids.npy

# Outputs. Stage 1 writes <pose_id:06d>.obj and source_params.npz into MESH_DIR;
# stage 2 reads them and writes <pose_id:06d>.pkl and errors.csv into SMPLX_OUTPUT_DIR.
MESH_DIR = "output/smplh_meshes"
SMPLX_OUTPUT_DIR = "output/smplx_params"
# convert_sequences.py writes <input folder's name>/<relative path>/<name>_stageii.npz
# (AMASS SMPL-X format; other targets: <name>_poses.npz), sequences.csv and quality/ here.
SEQUENCE_OUTPUT_DIR = "output/smplx_sequences"
