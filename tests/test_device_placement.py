"""Every path that runs on a GPU keeps its tensors where CUDA needs them, checked on the CPU.

The API, stage 2 and the sequence run are given a stand-in device and run under
`device_discipline.DeviceDiscipline`, in the branches they take on a GPU (whole batches, no
pools of CPU threads): a tensor from numpy meeting one on the device, or `.numpy()` of a
device tensor, fails here as it does on CUDA. Their results must equal the CPU run's.
"""
import numpy as np
import pytest
import torch

import smplh2smplx
from device_discipline import STAND_IN, DeviceDiscipline, take_cuda_branches
from smplh2smplx.body.lbs import BodyModel
from smplh2smplx.fit.fitter import FitSettings
from smplh2smplx.formats.body_models import load_smplh
from smplh2smplx.formats.meshes import write_obj
from smplh2smplx.formats.param_files import read_parameters
from smplh2smplx.formats.sequence_files import read_motion_file
from smplh2smplx.settings import TransferOptions
from smplh2smplx.stages.sequences.convert import SequenceOptions
from smplh2smplx.stages.sequences.run import run_sequences
from smplh2smplx.stages.sequences.tree import output_path
from smplh2smplx.stages.transfer import run_transfer

FAST = FitSettings(max_iterations=3, refine_iterations=1, fit_vertices=500)
QUIET = dict(progress=False, log=lambda _line: None)


def test_the_harness_refuses_what_cuda_refuses():
    """The stand-in follows tensors as CUDA places them, so these fail as on a GPU."""
    with DeviceDiscipline():
        on_device = torch.ones(4, device=STAND_IN)
        assert on_device.device == STAND_IN and (on_device * 2).device == STAND_IN
        assert (on_device + torch.tensor(1.0)).device == STAND_IN    # a 0-dim host tensor
        assert torch.zeros_like(on_device).device == STAND_IN
        host = on_device.cpu()
        assert host.device == torch.device("cpu") and host.numpy().sum() == 4
        assert on_device[torch.arange(2)].device == STAND_IN        # a host index
        for refused in (lambda: on_device + torch.ones(4),
                        lambda: on_device + torch.as_tensor(np.ones(4)),
                        lambda: torch.cat([on_device, torch.ones(1)]),
                        lambda: on_device.numpy(),
                        lambda: np.asarray(on_device),
                        lambda: torch.ones(4)[on_device.long() - 1],
                        lambda: host.to(on_device) + host):
            with pytest.raises(RuntimeError, match="device"):
                refused()


def test_converter_on_a_gpu(kit, monkeypatch):
    """from_params, from_vertices and convert_motions with CPU inputs, as a user gives them
    (and inputs on the device)."""
    generator = torch.Generator().manual_seed(0)
    pose = 0.3 * torch.randn(3, 52, 3, generator=generator)
    betas = torch.randn(3, 10, generator=generator)
    motions = [kit.amass / name for name in kit.sequences[:2]]
    results = {}
    for device in ("cpu", STAND_IN):
        if device == STAND_IN:
            take_cuda_branches(monkeypatch)
        with DeviceDiscipline():
            converter = smplh2smplx.Converter(
                "smplh", "smplx", target_model=kit.body_models, source_model=kit.body_models,
                deformation_transfer=kit.deftrafo, mask=kit.mask, device=device,
                settings=FAST)
            fitted = converter.from_params(pose, betas)
            if device == STAND_IN:          # inputs already on the device are taken too
                on_device = converter.from_params(pose.to(device), betas.to(device))
                assert torch.equal(on_device.pose.cpu(), fitted.pose.cpu())
            files = converter.parameter_dicts(fitted)
            vertices = BodyModel(load_smplh(kit.smplh_npz))(pose)[0].detach()
            again = converter.from_vertices(vertices, pose)
            converted = converter.convert_motions(motions, fps=30)
        results[str(device)] = (fitted.v2v_mean_mm.cpu(), files[0]["body_pose"],
                                again.v2v_mean_mm.cpu(),
                                [motion.output.poses for motion in converted])
    cpu, gpu = results["cpu"], results[str(STAND_IN)]
    assert np.allclose(cpu[0], gpu[0], atol=1e-3) and np.allclose(cpu[2], gpu[2], atol=1e-3)
    assert np.allclose(cpu[1], gpu[1], atol=1e-3)
    assert all(np.allclose(a, b, atol=1e-3) for a, b in zip(cpu[3], gpu[3]))


def test_stage2_on_a_gpu(kit, tmp_path, monkeypatch):
    """From the mesh files, and from source_params.npz alone (--from-params)."""
    smplh = load_smplh(kit.smplh_npz)
    poses = 0.3 * torch.randn(4, 52, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        vertices = BodyModel(smplh)(poses)[0].numpy()
    for pose_id, mesh in enumerate(vertices):
        write_obj(tmp_path / "meshes" / f"{pose_id:06d}.obj", mesh, smplh.faces)
    np.savez(tmp_path / "meshes" / "source_params.npz", pose_ids=np.arange(4),
             poses=poses.reshape(4, -1).numpy())
    take_cuda_branches(monkeypatch)
    outputs = {}
    for name, device, from_params in (("cpu", "cpu", False), ("gpu", STAND_IN, False),
                                      ("gpu_params", STAND_IN, True)):
        options = TransferOptions(mesh_dir=tmp_path / "meshes", output_dir=tmp_path / name,
                                  smplx_model=kit.body_models, smplh_model=kit.body_models,
                                  deformation_transfer=kit.deftrafo, mask=kit.mask,
                                  poses_per_batch=4, device=str(device), fit=FAST,
                                  from_params=from_params)
        with DeviceDiscipline():
            summary = run_transfer(options, **QUIET)
        assert summary.done == 4 and not summary.failures
        outputs[name] = [read_parameters(tmp_path / name / f"{pose_id:06d}.pkl", "smplx")
                         for pose_id in range(4)]
    for cpu, gpu, from_params in zip(outputs["cpu"], outputs["gpu"], outputs["gpu_params"]):
        assert np.allclose(cpu["body_pose"], gpu["body_pose"], atol=1e-3)
        assert np.allclose(cpu["body_pose"], from_params["body_pose"], atol=1e-2)


def test_sequences_on_a_gpu(kit, tmp_path, monkeypatch):
    take_cuda_branches(monkeypatch)
    written = {}
    for name, device in (("cpu", "cpu"), ("gpu", STAND_IN)):
        options = SequenceOptions(input_path=kit.amass, output_dir=tmp_path / name,
                                  model_paths={"smplh": kit.body_models,
                                               "smplx": kit.body_models},
                                  deftrafo_path=kit.deftrafo, mask_path=kit.mask,
                                  device=str(device), fps=30.0, chunk_frames=16, fit=FAST,
                                  source_model="smplh", shard_size=2)
        with DeviceDiscipline():
            summary = run_sequences(options, **QUIET)   # two files, their fits batched
        assert not summary.failures and len(summary.rows) == 2
        written[name] = [read_motion_file(output_path(tmp_path / name, row.sequence,
                                                      "smplx"), "smplx")["poses"]
                         for row in summary.rows]
    assert all(np.allclose(cpu, gpu, atol=1e-3)
               for cpu, gpu in zip(written["cpu"], written["gpu"]))
