"""The Python API: convert poses and motions between SMPL-family models in memory.

`Converter` loads the target model, the deformation transfer and its mask once, then
converts batches on the CPU or a CUDA device: vertices of the source model, or source
parameters (pose, betas, translation), to target parameters; and whole AMASS motion files.
The pair is data (`family.KINDS`): any of "smpl", "smplh" and "smplx", both ways.
"""
from os import PathLike
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from .body.deformation import load_pair_transfer
from .body.lbs import BodyModel
from .errors import InputError
from .family import KINDS, map_pose
from .fit.fitter import BodyFitter, FitResult, FitSettings
from .formats.body_models import load_body_model
from .formats.param_files import build_parameters
from .formats.sequence_files import MotionSequence, read_motion
from .runtime import resolve_device
from .stages.sequences.convert import (GenderModels, SequenceOptions, SequenceResult,
                                       convert_sequence)

ArrayLike = Union[np.ndarray, torch.Tensor]
PathType = Union[str, PathLike]


class Converter:
    """Converts poses of one SMPL-family model into parameters of another.

    Args:
        source, target: the model kinds ("smpl", "smplh" or "smplx").
        target_model: the target model file, or a folder holding it.
        source_model: the source model file or folder; needed to convert parameters and
            motions (not vertices).
        deformation_transfer: the official `<source>2<target>` setup file; None for SMPL
            and SMPL-H, which share one mesh.
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
        self.source, self.target = KINDS[source], KINDS[target]
        self.gender, self.settings = gender, settings
        self.device = resolve_device(device)
        self.paths = dict(source_model=source_model, target_model=target_model,
                          deformation_transfer=deformation_transfer, mask=mask)
        self.deformation = load_pair_transfer(source, target, deformation_transfer, mask)
        self.mask_ids = torch.as_tensor(self.deformation.mask_ids, device=self.device)
        target_data = load_body_model(target_model, target, gender)
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
            vertices: (B, V_source, 3) source vertices (metres).
            source_pose: (B, J_source, 3) axis-angle source poses to start from (mapped
                onto the target's joints); None: the start is read off the meshes.
        Returns:
            a `FitResult` (CPU): pose (B, J_target, 3), betas (B, num_betas), transl (B, 3)
            and the per-pose vertex errors on the mask (mm).
        """
        vertices = torch.as_tensor(vertices, dtype=torch.float32, device=self.device)
        if vertices.ndim != 3 or vertices.shape[1:] != (self.source.num_vertices, 3):
            raise InputError(f"vertices must be (B, {self.source.num_vertices}, 3) "
                             f"{self.source.label} vertices, got {tuple(vertices.shape)}")
        targets = self.deformation.apply(vertices)[:, self.mask_ids]
        start = None if source_pose is None else map_pose(
            torch.as_tensor(source_pose, dtype=torch.float32), self.source.name,
            self.target.name)
        return self.fitter.fit(targets, start)

    def from_params(self, pose: ArrayLike, betas: Optional[ArrayLike] = None,
                    transl: Optional[ArrayLike] = None) -> FitResult:
        """Target parameters of source parameters: the source model is posed, and its
        meshes converted from the source pose (see `from_vertices`).

        Args:
            pose: (B, J_source, 3) or (B, 3 J_source) axis-angle, root first.
            betas: (B, S) source shape coefficients (S up to the model's); None: zero.
            transl: (B, 3) source translation; None: zero.
        """
        if self.source_body is None:
            raise InputError("converting parameters needs the source model (source_model=)")
        pose = torch.as_tensor(pose, dtype=torch.float32, device=self.device)
        pose = pose.reshape(len(pose), self.source.num_joints, 3)
        full_betas = pose.new_zeros(len(pose), self.source_body.num_betas)
        if betas is not None:
            betas = torch.as_tensor(betas, dtype=torch.float32, device=self.device)
            full_betas[:, :betas.shape[1]] = betas
        if transl is not None:
            transl = torch.as_tensor(transl, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            vertices = self.source_body(pose, full_betas, transl)[0]
        return self.from_vertices(vertices, pose.cpu())

    def parameter_dicts(self, result: FitResult) -> list:
        """One dict per pose of `result`, as the target's per-pose `.pkl` files hold it."""
        return [build_parameters(self.target.name, result.pose[i], result.betas[i],
                                 result.transl[i]) for i in range(len(result.pose))]

    def convert_motion(self, motion: Union[PathType, MotionSequence],
                       fps: Optional[float] = None) -> SequenceResult:
        """Convert a whole motion of the source model with the converter's models and
        gender (the sequence stage of `convert_sequences.py`): one shape for the whole
        motion, then every frame warm-started from the one before.

        Args:
            motion: a motion file of the source model (AMASS `*_poses.npz`, `*_stageii.npz`
                or a SMPL motion `.npz`), or a `MotionSequence` made in memory.
            fps: the output frame rate (must divide the source's); None: the source's.
        Returns:
            a `SequenceResult`: `.output` is the target `MotionSequence` (poses, trans,
            betas: as many as AMASS writes, 16 for SMPL-X and SMPL-H, 10 for SMPL),
            `.v2v_mm` the per-frame error.
        """
        if self.source_body is None:
            raise InputError("converting a motion needs the source model (source_model=)")
        sequence = (motion if isinstance(motion, MotionSequence)
                    else read_motion(Path(motion), self.source.name))
        return convert_sequence(sequence, self._motion_models(), self.deformation, fps)

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
