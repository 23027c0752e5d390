"""The per-pose parameter-file format of each target model, by model kind."""
from . import smpl_params, smplh_params, smplx_params

# Each module gives PARAMETER_SHAPES, JOINT_SLICES, NUM_BETAS and pose_from_params.
PARAMETER_FORMATS = {"smpl": smpl_params, "smplh": smplh_params, "smplx": smplx_params}
WRITERS = {"smpl": smpl_params.write_smpl_params, "smplh": smplh_params.write_smplh_params,
           "smplx": smplx_params.write_smplx_params}
