"""Synthetic stand-ins for the licensed inputs: body models, deformation transfers, AMASS
sequences and PoseScript/PoseFix annotations, in exactly the official formats.

SMPL, SMPL-H, SMPL-X, AMASS and the annotations cannot be shipped, so tests, the demo and
the benchmarks run on files written here, with the real vertex, face and joint counts and
blend-shape sizes:

- one designed human body (T-pose, y up, facing +z, metres, ~1.72 m) as a signed distance
  field (shapes.py) around a SMPL-like skeleton (skeleton.py), meshed to exactly 6890
  (SMPL-H and SMPL, closed, genus 0) or 9383 vertices (the SMPL-X body, denser on the face
  and hands, with a small mouth opening) plus two eyeballs (meshing.py);
- skinning weights and joint regressors (skinning.py), shape, expression and corrective
  blend shapes (blendshapes.py), smplx's keypoint vertices and face landmarks
  (landmarks.py), deformation transfers as nearest-triangle barycentric weights
  (transfer.py), assembled in models.py: neutral, male and female bodies (one topology);
  SMPL-X differs from SMPL-H as the real models do, by a few millimetres (variant
  "default") or as far as the real ones (variant "realistic");
- AMASS sequences (motions.py) and annotation files pointing into them (annotations.py);
- kit.py writes it all: write_synthetic_kit(root, seed, variant=...) -> SyntheticKit.

Everything is a deterministic function of the seed. The product never imports this
package; its demo (demo.py, `python -m synthetic_kit.demo`) runs the product on the kit.
"""
from .annotations import describe_change, describe_pose
from .kit import SyntheticKit, kit_paths, write_synthetic_kit

__all__ = ["SyntheticKit", "describe_change", "describe_pose", "kit_paths",
           "write_synthetic_kit"]
