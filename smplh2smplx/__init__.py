"""smplh2smplx: convert poses and motions between SMPL, SMPL-H and SMPL-X.

The public API (see README.md, "Python API"):

- `Converter(source, target, target_model, ...)`: the models loaded once; converts
  vertices (`from_vertices`) or parameters (`from_params`) of the source in memory,
  batched, on CPU or CUDA, and whole AMASS motion files (`convert_motion`);
- `FitSettings`, `FitResult`: the fit's knobs and its batched result;
- `KINDS`: the model table (joint layouts, parameter keys and shapes, ...);
- `read_parameters`, `write_parameters`, `build_parameters`: the per-pose `.pkl` files;
- `MotionSequence`, `read_motion`, `write_motion`: motion files in AMASS's layouts (a
  converted motion's `.output` is written as `convert_sequences.py` writes it).
"""
from .api import Converter
from .family import KINDS
from .fit.fitter import FitResult, FitSettings
from .formats.param_files import build_parameters, read_parameters, write_parameters
from .formats.sequence_files import MotionSequence, read_motion, write_motion

__all__ = ["Converter", "FitResult", "FitSettings", "KINDS", "MotionSequence",
           "build_parameters", "read_motion", "read_parameters", "write_motion",
           "write_parameters"]
