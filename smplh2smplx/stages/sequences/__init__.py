"""Stage: whole motion files of one SMPL-family model to another (convert one, run a
tree, report)."""
