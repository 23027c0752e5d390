"""Batched Levenberg-Marquardt fit of SMPL-X parameters to target vertices.

Every pose is an independent least-squares problem: minimise the squared distance between
the posed SMPL-X vertices and the target over the masked vertices, with respect to the
local joint rotations, the betas and the translation. The Jacobian is analytic:

- rotations are updated by local left increments, R_k <- exp(e_k) R_k. Such an increment
  turns the whole subtree of joint k about the posed joint p_k by the world-frame vector
  W_parent(k) e_k, so the vertex derivative is -[a_ik]x W_parent(k), where a_ik sums the
  skinning-weighted offsets (G_j(x_i) - p_k) over the joints j of k's subtree; the pose
  correctives add their own exact term;
- betas enter the rest vertices and, through the joint regressor, every joint position;
- translation enters every vertex with the identity.

Each pose keeps its own damping, accepts or rejects its own steps and stops on its own, so
one badly converging pose neither slows nor spoils the others. Steps are computed on a
fixed subset of the masked vertices (the model has ~180 unknowns; a few thousand vertices
pin them down) and refined on the whole mask; errors are always reported on the whole mask.
"""
from dataclasses import dataclass

import numpy as np
import roma
import torch

from .body_models import BodyModelData
from .lbs import forward_kinematics, kinematic_levels, skinning_transforms


@dataclass(frozen=True)
class FitSettings:
    """Knobs of the fit; the defaults are the product's default setting.

    max_iterations: Jacobian evaluations per pose on the vertex subset.
    refine_iterations: further Jacobian evaluations on the whole mask.
    tolerance: a pose has converged when a step lowers its loss by less than this fraction.
    fit_betas: fit the shape (the SMPL-H zero shape is not the SMPL-X zero shape).
    num_betas: shape coefficients fitted and written.
    fit_vertices: size of the vertex subset used for the first phase (0: the whole mask).
    """
    max_iterations: int = 20
    refine_iterations: int = 3
    tolerance: float = 1e-4
    fit_betas: bool = True
    num_betas: int = 10
    fit_vertices: int = 2500


@dataclass
class FitResult:
    """Fitted parameters and errors of a batch of B poses (CPU tensors).

    pose: (B, 55, 3) axis-angle local rotations, root first (SMPL-X joint order).
    betas: (B, num_betas); transl: (B, 3).
    v2v_mean_mm, v2v_max_mm: (B,) mean and max vertex error over the mask, in millimetres.
    iterations: (B,) Jacobian evaluations spent; converged: (B,) bool.
    """
    pose: torch.Tensor
    betas: torch.Tensor
    transl: torch.Tensor
    v2v_mean_mm: torch.Tensor
    v2v_max_mm: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor


def skew(vectors):
    """(..., 3) vectors -> (..., 3, 3) cross-product matrices [v]x."""
    x, y, z = vectors.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).view(*x.shape, 3, 3)


def subtree_sums(values, parents, levels, dim):
    """Sum `values` over each joint's subtree (the joint and all its descendants) along `dim`."""
    sums = values.clone()
    for level in reversed(levels[1:]):
        sums.index_add_(dim, torch.as_tensor(parents[level], device=values.device),
                        sums.index_select(dim, torch.as_tensor(level, device=values.device)))
    return sums


class _VertexSet(torch.nn.Module):
    """The model's per-vertex constants restricted to a set of vertex ids."""

    def __init__(self, data, ids, num_betas, dtype):
        super().__init__()
        num_joints = data.num_joints

        def buffer(name, array):
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(array), dtype=dtype))

        buffer("v_template", data.v_template[ids])
        buffer("shapedirs", data.shapedirs[ids, :, :num_betas])
        posedirs = data.posedirs[ids]                        # (S, 3, 9 * (J - 1))
        buffer("posedirs_flat", posedirs.reshape(len(ids) * 3, -1).T)
        buffer("posedirs", posedirs.reshape(len(ids), 3, num_joints - 1, 9))
        buffer("weights", data.weights[ids])


class SmplxFitter(torch.nn.Module):
    """Fits SMPL-X to batches of target vertices on the masked vertex ids.

    Args:
        data: the SMPL-X model arrays.
        mask_ids: (M,) SMPL-X vertex ids with a valid correspondence.
        settings: `FitSettings`.
        dtype: floating type of the model buffers and the Jacobian.
    Use `.to(device)` to move it; `fit` then runs where the buffers are.
    """

    def __init__(self, data: BodyModelData, mask_ids, settings=FitSettings(), dtype=torch.float32):
        super().__init__()
        self.settings = settings
        self.parents = data.parents.copy()
        self.levels = kinematic_levels(self.parents)
        nb = settings.num_betas
        mask_ids = np.asarray(mask_ids, dtype=np.int64)
        self.register_buffer("mask_ids", torch.as_tensor(mask_ids))
        self.mask_set = _VertexSet(data, mask_ids, nb, dtype)
        self.fit_positions = self._fit_subset(len(mask_ids), settings.fit_vertices)
        self.fit_set = _VertexSet(data, mask_ids[self.fit_positions], nb, dtype)

        shapedirs = data.shapedirs[:, :, :nb]
        self.register_buffer("joint_template", torch.as_tensor(
            data.j_regressor @ data.v_template, dtype=dtype))
        self.register_buffer("joint_shapedirs", torch.as_tensor(
            np.einsum("jv,vcs->jcs", data.j_regressor, shapedirs), dtype=dtype))
        self.register_buffer("template_weights", torch.as_tensor(data.weights, dtype=dtype))
        self.register_buffer("template_vertices", torch.as_tensor(data.v_template, dtype=dtype))
        # Joints that move masked vertices; the others (the eyes) keep their initial value.
        reach = subtree_sums(torch.as_tensor(data.weights[mask_ids]), self.parents, self.levels, 1)
        self.active_joints = torch.nonzero(reach.sum(0) > 1e-3).squeeze(1)

    @staticmethod
    def _fit_subset(num_masked, size):
        if size <= 0 or size >= num_masked:
            return np.arange(num_masked)
        return np.sort(np.random.default_rng(0).choice(num_masked, size, replace=False))

    # ----------------------------------------------------------------- forward model

    def _rest_joints(self, betas):
        return self.joint_template + torch.einsum("jcs,bs->bjc", self.joint_shapedirs, betas)

    def _pose(self, vset, rotmats, betas, transl):
        """Posed vertices of `vset` and the intermediates the Jacobian needs."""
        batch, num_joints = rotmats.shape[:2]
        rest_joints = self._rest_joints(betas)
        world_rot, world_joints = forward_kinematics(rotmats, rest_joints, self.parents, self.levels)
        identity = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        features = (rotmats[:, 1:] - identity).reshape(batch, -1)
        rest = (vset.v_template + torch.einsum("vcs,bs->bvc", vset.shapedirs, betas)
                + (features @ vset.posedirs_flat).view(batch, -1, 3))
        rot, trans = skinning_transforms(world_rot, world_joints, rest_joints)
        blended = torch.einsum("vj,bjk->bvk", vset.weights, rot.reshape(batch, num_joints, 9))
        blended = blended.view(batch, -1, 3, 3)
        vertices = ((blended @ rest[..., None]).squeeze(-1)
                    + torch.einsum("vj,bjc->bvc", vset.weights, trans) + transl[:, None])
        return vertices, dict(rest=rest, rest_joints=rest_joints, world_rot=world_rot,
                              world_joints=world_joints, blended=blended, trans=trans)

    def posed_vertices(self, rotmats, betas, transl, on_mask=True):
        """(B, S, 3) SMPL-X vertices on the mask (or the fitting subset)."""
        return self._pose(self.mask_set if on_mask else self.fit_set, rotmats, betas, transl)[0]

    # ----------------------------------------------------------------- Jacobian

    def _jacobian(self, vset, rotmats, cache):
        """(B, 3S, P) derivative of the posed vertices w.r.t. [rotations, betas, transl]."""
        batch, num_joints = rotmats.shape[:2]
        rest, world_rot, world_joints = cache["rest"], cache["world_rot"], cache["world_joints"]
        active = self.active_joints
        num_vertices = rest.shape[1]

        # Rigid part: a_ik = sum over j in subtree(k) of w_ij (G_j(x_i) - p_k).
        per_joint = torch.einsum("bjkl,bvl->bvjk", world_rot, rest) + cache["trans"][:, None]
        weighted = per_joint * vset.weights[None, :, :, None]
        offsets = subtree_sums(weighted, self.parents, self.levels, dim=2)
        reach = subtree_sums(vset.weights, self.parents, self.levels, dim=1)
        offsets = offsets - reach[None, :, :, None] * world_joints[:, None]
        offsets = offsets[:, :, active]
        parent_rot = torch.cat([torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
                                .expand(batch, 1, 3, 3), world_rot[:, self.parents[1:]]], dim=1)
        jac_rot = -skew(offsets) @ parent_rot[:, None, active]      # (B, S, K, 3, 3)

        # Pose correctives: d vec(R_k) / d e_a = vec([e_a]x R_k), for non-root joints.
        nonroot = active[active > 0]
        axes = skew(torch.eye(3, dtype=rotmats.dtype, device=rotmats.device))
        dfeat = (axes[None, None] @ rotmats[:, nonroot, None]).reshape(batch, len(nonroot), 3, 9)
        corrective = torch.einsum("vcnf,bnaf->bvcna", vset.posedirs[:, :, nonroot - 1], dfeat)
        corrective = cache["blended"] @ corrective.reshape(batch, num_vertices, 3, -1)
        corrective = corrective.view(batch, num_vertices, 3, len(nonroot), 3)
        jac_rot = jac_rot.permute(0, 1, 3, 2, 4).clone()             # (B, S, 3, K, 3)
        jac_rot[:, :, :, active > 0] += corrective

        columns = [jac_rot.reshape(batch, num_vertices, 3, -1)]
        if self.settings.fit_betas:
            columns.append(self._betas_jacobian(vset, cache))
        columns.append(torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
                       .expand(batch, num_vertices, 3, 3))
        return torch.cat(columns, dim=-1).reshape(batch, num_vertices * 3, -1)

    def _betas_jacobian(self, vset, cache):
        """(B, S, 3, nb): shape changes the rest vertices and every joint location."""
        world_rot = cache["world_rot"]
        joint_dirs = self.joint_shapedirs.expand(world_rot.shape[0], -1, -1, -1)
        djoints = torch.empty_like(joint_dirs)
        djoints[:, 0] = joint_dirs[:, 0]
        for level in self.levels[1:]:
            parent = self.parents[level]
            djoints[:, level] = djoints[:, parent] + world_rot[:, parent] @ (
                joint_dirs[:, level] - joint_dirs[:, parent])
        per_joint = djoints - world_rot @ joint_dirs                 # (B, J, 3, nb)
        return (cache["blended"] @ vset.shapedirs
                + torch.einsum("vj,bjcs->bvcs", vset.weights, per_joint))

    # ----------------------------------------------------------------- optimisation

    def _apply_step(self, rotmats, betas, transl, step):
        num_active = len(self.active_joints)
        rotmats = rotmats.clone()
        increments = roma.rotvec_to_rotmat(step[:, :3 * num_active].reshape(-1, num_active, 3))
        rotmats[:, self.active_joints] = increments @ rotmats[:, self.active_joints]
        if self.settings.fit_betas:
            betas = betas + step[:, 3 * num_active:-3]
        return rotmats, betas, transl + step[:, -3:]

    def _solve(self, vset, targets, rotmats, betas, transl, iterations):
        """Levenberg-Marquardt on `vset`; returns the updated state and per-pose counters."""
        batch = rotmats.shape[0]
        device = rotmats.device
        damping = torch.full((batch,), 1e-3, dtype=torch.float64, device=device)
        loss = ((self._pose(vset, rotmats, betas, transl)[0] - targets) ** 2).sum((1, 2))
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        spent = torch.zeros(batch, dtype=torch.int64, device=device)
        for _ in range(iterations):
            todo = torch.nonzero(~done).squeeze(1)
            if len(todo) == 0:
                break
            spent[todo] += 1
            rot, bet, tra = rotmats[todo], betas[todo], transl[todo]
            vertices, cache = self._pose(vset, rot, bet, tra)
            residual = (vertices - targets[todo]).reshape(len(todo), -1)
            jac = self._jacobian(vset, rot, cache)
            hessian = (jac.transpose(1, 2) @ jac).double()
            gradient = (jac.transpose(1, 2) @ residual[..., None]).double()
            diagonal = torch.diagonal(hessian, dim1=1, dim2=2)
            floor = 1e-6 * diagonal.mean(1, keepdim=True)
            lam = damping[todo]
            accepted = torch.zeros(len(todo), dtype=torch.bool, device=device)
            old_loss = loss[todo]
            # Retry rejected steps with more damping, reusing the same Jacobian.
            for _attempt in range(4):
                system = hessian + torch.diag_embed(lam[:, None] * (diagonal + floor))
                chol, info = torch.linalg.cholesky_ex(system)
                step = -torch.cholesky_solve(gradient, chol).squeeze(-1)
                step = torch.where((info == 0)[:, None], step, torch.zeros_like(step))
                new_rot, new_bet, new_tra = self._apply_step(rot, bet, tra, step.to(rot.dtype))
                new_loss = ((self._pose(vset, new_rot, new_bet, new_tra)[0] - targets[todo]) ** 2
                            ).sum((1, 2))
                better = (new_loss < old_loss) & (info == 0) & ~accepted
                rot = torch.where(better[:, None, None, None], new_rot, rot)
                bet = torch.where(better[:, None], new_bet, bet)
                tra = torch.where(better[:, None], new_tra, tra)
                decrease = torch.where(better, old_loss - new_loss, torch.zeros_like(new_loss))
                converged_now = better & (decrease < self.settings.tolerance * old_loss)
                old_loss = torch.where(better, new_loss, old_loss)
                accepted |= better
                lam = torch.where(better, lam * 0.2, lam).clamp(min=1e-9)
                lam = torch.where(accepted, lam, lam * 10.0)
                done[todo[converged_now]] = True
                if accepted.all():
                    break
            # A pose whose damping exploded cannot improve any more: it has converged.
            done[todo[~accepted & (lam > 1e6)]] = True
            rotmats[todo], betas[todo], transl[todo] = rot, bet, tra
            loss[todo] = old_loss
            damping[todo] = lam
        return rotmats, betas, transl, spent, done

    def initial_rotmats_from_mesh(self, targets):
        """Local rotations estimated from target vertices on the mask alone.

        Each body part (the vertices whose largest skinning weight is a joint) is aligned
        rigidly to the target, root first; a part too small to align keeps its parent's
        orientation. Used when no source pose is known.
        """
        batch = targets.shape[0]
        num_joints = len(self.parents)
        template = self.template_vertices[self.mask_ids]
        labels = self.template_weights[self.mask_ids].argmax(1)
        eye = torch.eye(3, dtype=targets.dtype, device=targets.device)
        world = eye.expand(batch, num_joints, 3, 3).clone()
        local = eye.expand(batch, num_joints, 3, 3).clone()
        for level in self.levels:
            for joint in level:
                parent = self.parents[joint]
                members = torch.nonzero(labels == joint).squeeze(1)
                if len(members) >= 4:
                    world[:, joint] = roma.rigid_points_registration(
                        template[members].expand(batch, -1, -1), targets[:, members])[0]
                elif parent >= 0:
                    world[:, joint] = world[:, parent]
                if parent >= 0:
                    local[:, joint] = world[:, parent].transpose(1, 2) @ world[:, joint]
                else:
                    local[:, joint] = world[:, joint]
        return local

    @torch.no_grad()
    def fit(self, targets, init_pose=None):
        """Fit a batch.

        Args:
            targets: (B, M, 3) target vertices on the mask ids (same order as `mask_ids`).
            init_pose: (B, 55, 3) axis-angle initial pose (e.g. the source SMPL-H pose with
                zero jaw and eyes), or None to initialise from the targets alone.
        Returns:
            a `FitResult` on the CPU.
        """
        settings = self.settings
        dtype = self.mask_set.v_template.dtype
        targets = targets.to(self.mask_ids.device, dtype)
        batch = targets.shape[0]
        if init_pose is None:
            rotmats = self.initial_rotmats_from_mesh(targets)
        else:
            rotmats = roma.rotvec_to_rotmat(init_pose.to(targets))
        betas = targets.new_zeros(batch, settings.num_betas)
        transl = targets.new_zeros(batch, 3)
        fit_targets = targets[:, self.fit_positions]
        start = self._pose(self.fit_set, rotmats, betas, transl)[0]
        transl = (fit_targets - start).mean(1)

        rotmats, betas, transl, spent, done = self._solve(
            self.fit_set, fit_targets, rotmats, betas, transl, settings.max_iterations)
        if settings.refine_iterations > 0 and len(self.fit_positions) < targets.shape[1]:
            rotmats, betas, transl, refine_spent, done = self._solve(
                self.mask_set, targets, rotmats, betas, transl, settings.refine_iterations)
            spent = spent + refine_spent

        errors = (self.posed_vertices(rotmats, betas, transl) - targets).norm(dim=-1) * 1000.0
        return FitResult(pose=roma.rotmat_to_rotvec(rotmats).cpu(), betas=betas.cpu(),
                         transl=transl.cpu(), v2v_mean_mm=errors.mean(1).cpu(),
                         v2v_max_mm=errors.amax(1).cpu(), iterations=spent.cpu(),
                         converged=done.cpu())
