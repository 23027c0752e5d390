"""Run the official smplx `transfer_model` from an unedited clone (`--engine official`).

The published procedure has users hand-edit five files of the clone. Here each edit is a
function applied at run time, so the clone stays as downloaded:

- `loader`: the Python 3.11 dataclass-default fix, the deleted open3d and psbody.mesh
  imports, and the hunt for torchtrustncg;
- `config`: `parse_args` (the config is translated from the project's settings, not argv);
- `dataset`: `MeshFolder` (sorted order, shards, converted meshes skipped);
- `runtime`: the model-output fixes (attributes, dict), plus step counts, the gradient
  cycles of the official optimiser broken after each batch, and quiet logs;
- `writer`: saving the whole variable dict (now the pose fields only, axis-angle, CPU,
  one atomic file per mesh);
- `official`: `__main__.main` (no `use_cuda` prompt); `run_official` is the entry point.

What the official engine needs beyond the project's requirements: `loguru`, and
`torchtrustncg`, which is not on PyPI:

    pip install loguru
    pip install --no-build-isolation git+https://github.com/vchoutas/torch-trust-ncg
"""
from .official import OfficialResult, run_official

__all__ = ["OfficialResult", "run_official"]
