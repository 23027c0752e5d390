"""The Python API: convert poses and motions between SMPL-family models in memory.

`Converter` loads the target model, the deformation transfer and its mask once, then
converts batches on the CPU or a CUDA device: vertices of the source model, or source
parameters (pose, betas, translation), to target parameters; and whole AMASS motion files,
one at a time or several with their fits batched together.
The pair is data (`family.KINDS`): any of "smpl", "smplh" and "smplx", both ways.
"""
import warnings
from os import PathLike
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from .body.deformation import load_pair_transfer
from .body.lbs import BodyModel
from .errors import InputError, listed
from .family import KINDS, map_pose
from .fit.fitter import BodyFitter, FitResult, FitSettings
from .formats.body_models import load_body_model
from .formats.param_files import betas_problem, build_parameters
from .formats.limits import (MAX_ANGLE_RAD, MAX_BETA, MAX_COORDINATE_M, MAX_TRANSLATION_M,
                             value_problem)
from .formats.sequence_files import (MAX_FRAMERATE, MIN_FRAMERATE, MotionSequence,
                                     checked_motion, is_framerate, read_motion)
from .runtime import resolve_device
from .stages.sequences.batching import fitted_together
from .stages.sequences.convert import (GenderModels, SequenceOptions, SequenceResult,
                                       convert_sequence, sequence_steps, unused_betas,
                                       unused_betas_note)

ArrayLike = Union[np.ndarray, torch.Tensor]
PathType = Union[str, PathLike]


class Converter:
    """Converts poses of one SMPL-family model into parameters of another.

    Args:
        source, target: the model kinds ("smpl", "smplh" or "smplx").
        target_model: the target model file, or a folder holding it.
        source_model: the source model file or folder; needed to convert parameters and
            motions (not vertices).
        deformation_transfer: the official `<source>2<target>` setup file, or the folder
            of the official files; None for SMPL and SMPL-H, which share one mesh.
        mask: the target's valid vertex ids (the SMPL-X mask); None: every vertex.
        gender: "neutral", "male" or "female": the gender of both models.
        device: "cpu", "cuda", "cuda:N" or "auto".
        settings: the fit's settings (`FitSettings`; its num_betas: the betas written).

    Raises InputError naming the file for a missing or wrong model, transfer or mask.
    """

    def __init__(self, source: str, target: str, target_model: PathType,
                 source_model: Optional[PathType] = None,
                 deformation_transfer: Optional[PathType] = None,
                 mask: Optional[PathType] = None, gender: str = "neutral",
                 device: str = "auto", settings: FitSettings = FitSettings()):
        for name, kind in (("source", source), ("target", target)):
            if kind not in KINDS:
                raise InputError(f"{name} model must be one of {', '.join(KINDS)}, got {kind!r}")
        if not isinstance(settings, FitSettings):
            raise InputError(f"settings must be a FitSettings, got {type(settings).__name__}")
        problems = settings.problems("settings.")
        if problems:
            raise InputError("bad settings:" + listed(problems))
        self.source, self.target = KINDS[source], KINDS[target]
        self.gender, self.settings = gender, settings
        self.device = resolve_device(device)
        self.paths = dict(source_model=source_model, target_model=target_model,
                          deformation_transfer=deformation_transfer, mask=mask)
        self.deformation = load_pair_transfer(source, target, deformation_transfer, mask)
        self.mask_ids = torch.as_tensor(self.deformation.mask_ids, device=self.device)
        target_data = load_body_model(target_model, target, gender)
        target_data.check_num_betas(settings.num_betas, "settings.num_betas")
        self.fitter = BodyFitter(target_data, self.deformation.mask_ids, settings).to(self.device)
        self.source_body = None
        self._sequence_models = None
        if source_model is not None:
            source_data = load_body_model(source_model, source, gender)
            self.source_body = BodyModel(source_data, num_betas=source_data.num_shape_coeffs)
            self.source_body = self.source_body.to(self.device)

    def from_vertices(self, vertices: ArrayLike,
                      source_pose: Optional[ArrayLike] = None) -> FitResult:
        """Target parameters of source meshes.

        Args:
            vertices: (B, V_source, 3) source vertices (metres, within
                `formats.limits.MAX_COORDINATE_M`).
            source_pose: (B, J_source, 3) or (B, 3 J_source) axis-angle source poses to start
                from (mapped onto the target's joints); None: the start is read off the meshes.
        Returns:
            a `FitResult` (CPU): pose (B, J_target, 3), betas (B, num_betas), transl (B, 3)
            and the per-pose vertex errors on the mask (mm).
        Raises InputError naming the argument when its shape does not fit or it holds NaN,
        infinity or numbers beyond the limits of `formats.limits`.
        """
        label = self.source.label
        vertices = self._argument("vertices", vertices, [("B", self.source.num_vertices, 3)],
                                  MAX_COORDINATE_M, "m", f"{label} vertices")
        if source_pose is not None:
            source_pose = self._pose_argument("source_pose", source_pose, len(vertices))
        return self._fit(vertices, source_pose)

    def from_params(self, pose: ArrayLike, betas: Optional[ArrayLike] = None,
                    transl: Optional[ArrayLike] = None) -> FitResult:
        """Target parameters of source parameters: the source model is posed, and its
        meshes converted from the source pose (see `from_vertices`).

        Args:
            pose: (B, J_source, 3) or (B, 3 J_source) axis-angle, root first.
            betas: (B, S) source shape coefficients (S up to the model's); None: zero.
            transl: (B, 3) source translation (metres); None: zero.
        Raises InputError naming the argument as `from_vertices` does.
        """
        if self.source_body is None:
            raise InputError("converting parameters needs the source model (source_model=)")
        pose = self._pose_argument("pose", pose)
        batch, num_betas = len(pose), self.source_body.num_betas
        full_betas = pose.new_zeros(batch, num_betas)
        if betas is not None:
            betas = self._argument("betas", betas, [(batch, "S")], MAX_BETA, "",
                                   f"shape coefficients, S at most {num_betas}")
            if betas.shape[1] > num_betas:
                raise InputError(f"betas must be (B, S) with S at most {num_betas} "
                                 f"({self.source.label}'s), got {tuple(betas.shape)}")
            full_betas[:, :betas.shape[1]] = betas
        if transl is not None:
            transl = self._argument("transl", transl, [(batch, 3)], MAX_TRANSLATION_M, "m",
                                    "translations")
        with torch.no_grad():
            vertices = self.source_body(pose, full_betas, transl)[0]
        return self._fit(vertices, pose)

    def _fit(self, vertices: torch.Tensor, source_pose: Optional[torch.Tensor]) -> FitResult:
        """The fit of checked source vertices, started from checked source poses."""
        targets = self.deformation.apply(vertices)[:, self.mask_ids]
        start = None if source_pose is None else map_pose(source_pose.cpu(), self.source.name,
                                                          self.target.name)
        return self.fitter.fit(targets, start)

    def _pose_argument(self, name: str, pose: ArrayLike, batch: Union[int, str] = "B"):
        """A checked (B, J_source, 3) pose tensor of `pose`, (B, J, 3) or (B, 3 J)."""
        joints = self.source.num_joints
        pose = self._argument(name, pose, [(batch, joints, 3), (batch, 3 * joints)],
                              MAX_ANGLE_RAD, "rad", f"{self.source.label} axis-angle poses")
        return pose.reshape(len(pose), joints, 3)

    def _argument(self, name: str, value: ArrayLike, shapes: list, limit: float, unit: str,
                  what: str) -> torch.Tensor:
        """`value` as a float32 tensor on the converter's device; InputError naming the
        argument when it is empty, has none of the `shapes` (a size given as a letter: any
        size) or holds NaN, infinity or numbers beyond +-limit."""
        try:
            # Detached: a network's output that requires grad is taken as values (the fit
            # is no function to differentiate through), without autograd's warnings.
            tensor = torch.as_tensor(value, dtype=torch.float32, device=self.device).detach()
        except (TypeError, ValueError, RuntimeError):
            raise InputError(f"{name} must be an array of numbers, got "
                             f"{type(value).__name__}") from None
        if not any(len(shape) == tensor.ndim and all(isinstance(size, str) or size == got
                                                     for size, got in zip(shape, tensor.shape))
                   for shape in shapes):
            wanted = " or ".join("(" + ", ".join(map(str, shape)) + ")" for shape in shapes)
            raise InputError(f"{name} must be {wanted} {what}, got {tuple(tensor.shape)}")
        if tensor.numel() == 0:
            raise InputError(f"{name} is empty, shape {tuple(tensor.shape)}")
        problem = value_problem(tensor, limit, unit)
        if problem:
            raise InputError(f"{name} {problem}")
        return tensor

    def parameter_dicts(self, result: FitResult) -> list:
        """One dict per pose of `result`, as the target's per-pose `.pkl` files hold it
        (SMPL's and SMPL-X's with 10 betas: `settings.num_betas` must give them)."""
        problem = betas_problem(self.target.name, result.betas.shape[-1])
        if problem:
            raise InputError(f"{problem} (settings.num_betas)")
        return [build_parameters(self.target.name, result.pose[i], result.betas[i],
                                 result.transl[i]) for i in range(len(result.pose))]

    def convert_motion(self, motion: Union[PathType, MotionSequence],
                       fps: Optional[float] = None,
                       source_fps: Optional[float] = None) -> SequenceResult:
        """Convert a whole motion of the source model with the converter's models and
        gender (the sequence stage of `convert_sequences.py`): one shape for the whole
        motion, then every frame warm-started from the one before.

        Args:
            motion: a motion file of the source model (AMASS `*_poses.npz`, `*_stageii.npz`,
                a SMPL motion `.npz`, or the pose cut into parts: docs/FORMATS.md), or a
                `MotionSequence` made in memory. It is posed with the converter's gender
                whatever gender it holds (a file's own is not read), as
                `convert_sequences.py --gender neutral` (or male, female) does; the output
                records that gender.
            fps: the output frame rate, at most the source's (every n-th frame where it
                divides the source's, else the motion between frames); None: the source's.
            source_fps: the frame rate of a motion file that holds none (a pose
                estimator's output is at its video's rate); a file's own rate is kept.
        Returns:
            a `SequenceResult`: `.output` is the target `MotionSequence` (poses, trans,
            betas: as many as AMASS writes, 16 for SMPL-X and SMPL-H, 10 for SMPL),
            `.v2v_mm` the per-frame error.
        """
        return convert_sequence(self._motion(motion, source_fps), self._motion_models(),
                                self.deformation, fps)

    def convert_motions(self, motions: list, fps: Optional[float] = None,
                        source_fps: Optional[float] = None) -> list:
        """Convert several whole motions as `convert_motion` does each, their fits batched
        together (a motion's frames come to the fitter a few dozen at a time, and a step
        costs a fixed part that several motions share): one `SequenceResult` per motion, in
        order. Every motion is read and checked first, and all are held in memory."""
        if not isinstance(motions, (list, tuple)):      # a path alone would be its letters
            raise InputError(f"motions must be a list of motion files or MotionSequence "
                             f"objects, got {type(motions).__name__}")
        sequences = [self._motion(motion, source_fps) for motion in motions]
        models = self._motion_models()
        outcomes = fitted_together([sequence_steps(sequence, models, self.deformation, fps)
                                    for sequence in sequences])
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return outcomes

    def _motion(self, motion: Union[PathType, MotionSequence],
                source_fps: Optional[float] = None) -> MotionSequence:
        """A motion file of the source model, read, or a MotionSequence, checked; a warning
        when it gives more betas than the source model takes (`unused_betas`)."""
        if source_fps is not None and not is_framerate(source_fps):
            raise InputError(f"source_fps must be a number of frames per second from "
                             f"{MIN_FRAMERATE} to {MAX_FRAMERATE}, got {source_fps!r}")
        sequence, models = self._checked_motion(motion, source_fps), self._motion_models()
        if unused_betas(sequence, models):
            note = unused_betas_note(f"{self.source.label} model", models.source.num_betas,
                                     f"the motion gives {sequence.betas.shape[-1]}")
            warnings.warn(f"{sequence.path or 'motion'}: {note}", stacklevel=3)
        return sequence

    def _checked_motion(self, motion: Union[PathType, MotionSequence],
                        source_fps: Optional[float] = None) -> MotionSequence:
        """A motion file of the source model, read, or a MotionSequence, checked."""
        if self.source_body is None:
            raise InputError("converting a motion needs the source model (source_model=)")
        if isinstance(motion, MotionSequence):
            sequence = checked_motion(motion)
            if sequence.kind != self.source.name:
                raise InputError(f"{motion.path or 'motion'}: is a {KINDS[motion.kind].label} "
                                 f"motion, the converter's source is {self.source.label}")
            return sequence
        return read_motion(Path(motion), self.source.name, self.gender, source_fps)

    def _motion_models(self) -> GenderModels:
        """The models of the sequence stage, loaded on the first motion and kept."""
        if self._sequence_models is not None:
            return self._sequence_models
        options = SequenceOptions(
            input_path=Path("."), output_dir=Path("."),
            model_paths={self.source.name: self.paths["source_model"],
                         self.target.name: self.paths["target_model"]},
            deftrafo_path=self.paths["deformation_transfer"], mask_path=self.paths["mask"],
            source_model=self.source.name, target_model=self.target.name,
            gender=self.gender, device=str(self.device))
        self._sequence_models = GenderModels(options, self.source.name, self.gender,
                                             self.deformation.mask_ids, self.device)
        return self._sequence_models
