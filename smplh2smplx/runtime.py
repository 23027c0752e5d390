"""What a run runs on: its torch device, torch's thread count for a block, optional modules."""
from __future__ import annotations

import importlib.util
from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch

from .errors import InputError


def resolve_device(name: str | torch.device) -> torch.device:
    """torch.device for "cpu", "cuda", "cuda:N" or "auto" (cuda when available)."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"device {name!r}: expected cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"device {name!r}: expected cpu, cuda, cuda:N or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r}: no CUDA device is available here")
    return device


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch on `count` threads inside the block (a process-wide setting, restored after).

    Our own thread pools (the stage-1 mesh writer, the fitter's batch slices) keep the cores
    busy; torch's pool competing with them, or handing each small LAPACK call (a batch of
    3x3 SVDs or Cholesky factorisations) to another thread, costs more than it saves:
    three to twenty times more on a loaded 2-core machine.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def cpu_single_thread(device: str | torch.device):
    """torch on one thread for the work between fits, on the CPU: its threads spin while
    they wait, and on a shared machine the posing and transfer of a chunk then cost three
    times the CPU time (and more wall time) than on one thread. (The fitter runs its own
    pool of single-threaded workers.)"""
    return torch_threads(1) if torch.device(device).type == "cpu" else nullcontext()


def is_installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (a parent's absence is a no)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
