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


# Pose correctives smaller than this (metres per unit of pose feature, i.e. below a
# micrometre for a 0.1 rad turn) are left out of a vertex group's Jacobian columns.
CORRECTIVE_FLOOR = 1e-5


class _PartGroup(torch.nn.Module):
    """Constants of the vertices whose largest skinning weight is one joint.

    Such vertices move only with a few joints (the ancestors of the joints they are skinned
    to), so their Jacobian is dense over a few columns and zero elsewhere.
    """

    def __init__(self, data, ids, first, slots, in_subtree, num_betas, dtype):
        super().__init__()
        weights = data.weights[ids]
        reach = weights @ in_subtree           # (S_g, J): weight moved by each joint
        posedirs = np.concatenate([np.zeros((len(ids), 3, 1, 9)),
                                   data.posedirs[ids].reshape(len(ids), 3, -1, 9)], axis=2)
        corrected = np.abs(posedirs).max(axis=(0, 1, 3)) > CORRECTIVE_FLOOR
        self.rows = slice(first, first + len(ids))
        # The joints that move these vertices: by skinning, or by a pose corrective.
        self.slot_ids = np.flatnonzero((reach.max(0) > 0)[slots] | corrected[slots])
        self.joints = slots[self.slot_ids]
        self.skinned = np.flatnonzero(weights.max(0) > 0)               # joints it is skinned to
        nb = num_betas
        columns = np.concatenate([3 * self.slot_ids[:, None] + np.arange(3)]).ravel()
        shared = 3 * len(slots) + np.arange(nb + 3)
        self.columns = np.concatenate([columns, shared])

        def buffer(name, array):
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(array), dtype=dtype))

        # mix[i, w, k] = weight of skinned joint w if it lies in the subtree of joint k.
        buffer("mix", weights[:, self.skinned, None] * in_subtree[self.skinned][:, self.joints])
        buffer("reach", reach[:, self.joints])
        buffer("posedirs", posedirs[:, :, self.joints].transpose(2, 0, 1, 3)
               .reshape(len(self.joints), len(ids) * 3, 9))


class _VertexSet(torch.nn.Module):
    """The model's per-vertex constants for some of the masked vertices.

    Vertices are ordered by part group; `positions` gives, in that order, their indices
    into the mask.
    """

    def __init__(self, data, mask_ids, positions, num_betas, slots, dtype):
        super().__init__()
        primary = data.weights[mask_ids[positions]].argmax(1)
        order = np.argsort(primary, kind="stable")
        self.positions = positions[order]
        ids = mask_ids[self.positions]
        primary = primary[order]
        # in_subtree[j, k] = 1 when joint j is k or a descendant of k.
        in_subtree = subtree_sums(torch.eye(data.num_joints, dtype=torch.float64), data.parents,
                                  kinematic_levels(data.parents), dim=0).numpy().T
        bounds = np.searchsorted(primary, np.unique(primary))
        self.groups = torch.nn.ModuleList(
            _PartGroup(data, ids[first:last], first, slots, in_subtree, num_betas, dtype)
            for first, last in zip(bounds, list(bounds[1:]) + [len(ids)]))

        def buffer(name, array):
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(array), dtype=dtype))

        buffer("v_template", data.v_template[ids])
        buffer("shapedirs", data.shapedirs[ids, :, :num_betas])
        buffer("posedirs_flat", data.posedirs[ids].reshape(len(ids) * 3, -1).T)
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

        # Joints that move masked vertices; the others (the eyes) keep their initial value.
        # Unknowns: [3 per active joint (local rotation increment) | betas | translation].
        reach = subtree_sums(torch.as_tensor(data.weights[mask_ids]), self.parents, self.levels, 1)
        self.joint_slots = np.flatnonzero(reach.sum(0).numpy() > 1e-3)
        self.num_unknowns = 3 * len(self.joint_slots) + (nb if settings.fit_betas else 0) + 3

        def vertex_set(positions):
            return _VertexSet(data, mask_ids, positions, nb, self.joint_slots, dtype)

        num_masked = len(mask_ids)
        self.mask_set = vertex_set(np.arange(num_masked))
        subset = settings.fit_vertices
        self.fit_set = (self.mask_set if subset <= 0 or subset >= num_masked else vertex_set(
            np.sort(np.random.default_rng(0).choice(num_masked, subset, replace=False))))

        shapedirs = data.shapedirs[:, :, :nb]
        self.register_buffer("joint_template", torch.as_tensor(
            data.j_regressor @ data.v_template, dtype=dtype))
        self.register_buffer("joint_shapedirs", torch.as_tensor(
            np.einsum("jv,vcs->jcs", data.j_regressor, shapedirs), dtype=dtype))
        self.register_buffer("template_weights", torch.as_tensor(data.weights, dtype=dtype))
        self.register_buffer("template_vertices", torch.as_tensor(data.v_template, dtype=dtype))

    # ----------------------------------------------------------------- forward model

    def _rest_joints(self, betas):
        return self.joint_template + torch.einsum("jcs,bs->bjc", self.joint_shapedirs, betas)

    def _pose(self, vset, rotmats, betas, transl):
        """Posed vertices (B, S, 3) of `vset` and the intermediates the Jacobian needs."""
        batch, num_joints = rotmats.shape[:2]
        rest_joints = self._rest_joints(betas)
        world_rot, world_joints = forward_kinematics(rotmats, rest_joints, self.parents, self.levels)
        identity = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        features = (rotmats[:, 1:] - identity).reshape(batch, -1)
        rest = (vset.v_template + torch.einsum("vcs,bs->bvc", vset.shapedirs, betas)
                + (features @ vset.posedirs_flat).view(batch, -1, 3))
        rot, trans = skinning_transforms(world_rot, world_joints, rest_joints)
        blended = (vset.weights @ rot.reshape(batch, num_joints, 9)).view(batch, -1, 3, 3)
        vertices = ((blended * rest[:, :, None, :]).sum(-1)
                    + vset.weights @ trans + transl[:, None])
        return vertices, dict(rest=rest, world_rot=world_rot, world_joints=world_joints,
                              blended=blended, trans=trans)

    def posed_vertices(self, rotmats, betas, transl):
        """(B, M, 3) posed SMPL-X vertices on the mask, in mask order."""
        vertices = self._pose(self.mask_set, rotmats, betas, transl)[0]
        return vertices[:, np.argsort(self.mask_set.positions)]

    # ----------------------------------------------------------------- Jacobian

    def _normal_equations(self, vset, rotmats, cache, residual):
        """J^T J (B, P, P) and J^T r (B, P) for the vertices of `vset`, in float64.

        J is the derivative of the posed vertices w.r.t. the unknowns; it is built one part
        group at a time over the group's own columns and never held whole.
        """
        batch = rotmats.shape[0]
        world_rot, world_joints = cache["world_rot"], cache["world_joints"]
        blended, rest = cache["blended"], cache["rest"]
        eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        # An increment of joint k turns its subtree about the world axes W_parent(k) e_c.
        parent_rot = torch.cat([eye.expand(batch, 1, 3, 3), world_rot[:, self.parents[1:]]], 1)
        axes = parent_rot.transpose(-1, -2)                              # (B, J, c, xyz)
        # Pose correctives: d vec(R_k) / d e_a = vec([e_a]x R_k).
        dfeat = (skew(eye)[None, None] @ rotmats[:, :, None]).reshape(batch, -1, 3, 9)
        dfeat = dfeat.permute(1, 3, 0, 2).reshape(-1, 9, batch * 3)       # (J, 9, 3B)
        betas_jac = self._betas_jacobian(vset, cache) if self.settings.fit_betas else None
        residual = residual.view(batch, -1, 3)

        num = self.num_unknowns
        hessian = rotmats.new_zeros(batch, num * num)
        gradient = rotmats.new_zeros(batch, num)
        for group in vset.groups:
            rows, joints = group.rows, group.joints
            size = rows.stop - rows.start
            points = rest[:, None, rows] @ world_rot[:, group.skinned].transpose(-1, -2)
            points = points + cache["trans"][:, group.skinned, None]      # (B, W, S_g, 3)
            offsets = (torch.einsum("swk,bwsc->bskc", group.mix, points)
                       - group.reach[None, :, :, None] * world_joints[:, None, joints])
            ax = axes[:, None, joints]                                     # (B, 1, K_g, c, xyz)
            rot_jac = torch.empty(batch, size, 3, len(joints), 3,
                                  dtype=rest.dtype, device=rest.device)
            for x, y, z in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
                rot_jac[:, :, x] = ax[..., y] * offsets[..., z, None] - ax[..., z] * offsets[..., y, None]
            corrective = torch.bmm(group.posedirs, dfeat[joints])          # (K_g, 3S_g, 3B)
            corrective = corrective.view(len(joints), size, 3, batch, 3).permute(3, 1, 2, 0, 4)
            mixed = blended[:, rows]
            for x in range(3):
                rot_jac[:, :, x] += (mixed[:, :, x, 0, None, None] * corrective[:, :, 0]
                                     + mixed[:, :, x, 1, None, None] * corrective[:, :, 1]
                                     + mixed[:, :, x, 2, None, None] * corrective[:, :, 2])
            columns = [rot_jac.view(batch, size, 3, -1)]
            if betas_jac is not None:
                columns.append(betas_jac[:, rows])
            columns.append(eye.expand(batch, size, 3, 3))
            jac = torch.cat(columns, dim=-1).view(batch, size * 3, -1)
            index = torch.as_tensor(group.columns, device=rest.device)
            hessian.index_add_(1, (index[:, None] * num + index[None]).view(-1),
                               (jac.transpose(1, 2) @ jac).view(batch, -1))
            gradient.index_add_(1, index, (jac.transpose(1, 2)
                                           @ residual[:, rows].reshape(batch, -1, 1)).squeeze(-1))
        return hessian.view(batch, num, num).double(), gradient.double()

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
        blended = cache["blended"]
        return (sum(blended[..., y, None] * vset.shapedirs[None, :, None, y] for y in range(3))
                + torch.einsum("vj,bjcs->bvcs", vset.weights, per_joint))

    # ----------------------------------------------------------------- optimisation

    def _apply_step(self, rotmats, betas, transl, step):
        """Unknowns after a step laid out as [rotations | betas | translation]."""
        num_rot = 3 * len(self.joint_slots)
        rotmats = rotmats.clone()
        increments = roma.rotvec_to_rotmat(step[:, :num_rot].reshape(len(step), -1, 3))
        rotmats[:, self.joint_slots] = increments @ rotmats[:, self.joint_slots]
        if self.settings.fit_betas:
            betas = betas + step[:, num_rot:-3]
        return rotmats, betas, transl + step[:, -3:]

    def _loss(self, vset, targets, rotmats, betas, transl):
        return ((self._pose(vset, rotmats, betas, transl)[0] - targets) ** 2).sum((1, 2))

    def _solve(self, vset, targets, rotmats, betas, transl, iterations):
        """Levenberg-Marquardt on `vset` (targets in its order); returns the new state,
        the Jacobian evaluations spent and whether each pose converged."""
        batch = rotmats.shape[0]
        device = rotmats.device
        damping = torch.full((batch,), 1e-3, dtype=torch.float64, device=device)
        loss = self._loss(vset, targets, rotmats, betas, transl)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        spent = torch.zeros(batch, dtype=torch.int64, device=device)
        for _ in range(iterations):
            todo = torch.nonzero(~done).squeeze(1)
            if len(todo) == 0:
                break
            spent[todo] += 1
            rot, bet, tra, tgt = rotmats[todo], betas[todo], transl[todo], targets[todo]
            vertices, cache = self._pose(vset, rot, bet, tra)
            hessian, gradient = self._normal_equations(vset, rot, cache, vertices - tgt)
            diagonal = torch.diagonal(hessian, dim1=1, dim2=2)
            floor = 1e-6 * diagonal.mean(1, keepdim=True)
            lam = damping[todo]
            old_loss = loss[todo]
            accepted = torch.zeros(len(todo), dtype=torch.bool, device=device)
            # Retry rejected steps with more damping, reusing the same Jacobian.
            for _attempt in range(4):
                system = hessian + torch.diag_embed(lam[:, None] * (diagonal + floor))
                chol, info = torch.linalg.cholesky_ex(system)
                step = -torch.cholesky_solve(gradient[..., None], chol).squeeze(-1)
                step = torch.where((info == 0)[:, None], step, torch.zeros_like(step))
                new_rot, new_bet, new_tra = self._apply_step(rot, bet, tra, step.to(rot.dtype))
                new_loss = self._loss(vset, tgt, new_rot, new_bet, new_tra)
                better = (new_loss < old_loss) & (info == 0) & ~accepted
                rot = torch.where(better[:, None, None, None], new_rot, rot)
                bet = torch.where(better[:, None], new_bet, bet)
                tra = torch.where(better[:, None], new_tra, tra)
                small = better & ((old_loss - new_loss < self.settings.tolerance * old_loss)
                                  | (step.abs().amax(1) < 1e-6))
                done[todo[small]] = True
                old_loss = torch.where(better, new_loss, old_loss)
                accepted |= better
                lam = torch.where(better, lam * 0.2, lam).clamp(min=1e-9)
                lam = torch.where(accepted, lam, lam * 10.0)
                if accepted.all():
                    break
            # No step lowers the loss even with 10^4 times the damping: a minimum.
            done[todo[~accepted]] = True
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
        fit_targets = targets[:, self.fit_set.positions]
        start = self._pose(self.fit_set, rotmats, betas, transl)[0]
        transl = (fit_targets - start).mean(1)

        rotmats, betas, transl, spent, done = self._solve(
            self.fit_set, fit_targets, rotmats, betas, transl, settings.max_iterations)
        if settings.refine_iterations > 0 and self.fit_set is not self.mask_set:
            rotmats, betas, transl, refine_spent, done = self._solve(
                self.mask_set, targets[:, self.mask_set.positions], rotmats, betas, transl,
                settings.refine_iterations)
            spent = spent + refine_spent

        errors = (self.posed_vertices(rotmats, betas, transl) - targets).norm(dim=-1) * 1000.0
        return FitResult(pose=roma.rotmat_to_rotvec(rotmats).cpu(), betas=betas.cpu(),
                         transl=transl.cpu(), v2v_mean_mm=errors.mean(1).cpu(),
                         v2v_max_mm=errors.amax(1).cpu(), iterations=spent.cpu(),
                         converged=done.cpu())
