"""Convert SMPL-H poses (PoseScript / PoseFix, drawn from AMASS) to SMPL-X parameters."""
