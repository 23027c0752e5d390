"""Stage: whole AMASS motion sequences to SMPL-X (convert one, run a tree, report)."""
