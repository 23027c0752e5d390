"""What a run runs on: its torch device, torch's thread count for a block, how many frames
it poses at once, the memory it may still take, optional modules."""
from __future__ import annotations

import importlib.util
from contextlib import contextmanager, nullcontext
from pathlib import Path
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


# Frames posed at once on the CPU where only the vertices are wanted (a motion's source
# frames, the errors of the frames written): the (V, 3, 3, B) blended rotations of more
# spill the CPU's caches. The real sample at 30 fps (151 frames, one thread): posing its
# SMPL-H frames 120-128 ms whole, 101-104 ms in slices of 64; the errors of the frames
# written on SMPL-X's mask 188-202 ms whole, 153-163 in slices of 64 (32: slower).
POSING_SLICE_FRAMES = 64


def posing_slices(count: int, device: str | torch.device) -> list:
    """Slices of `count` frames to pose one after another: POSING_SLICE_FRAMES at a time on
    the CPU, all at once on a GPU (whose throughput grows with the batch)."""
    if torch.device(device).type != "cpu":
        return [slice(0, count)]
    return [slice(start, min(start + POSING_SLICE_FRAMES, count))
            for start in range(0, count, POSING_SLICE_FRAMES)] or [slice(0, 0)]


# A cgroup v1 limit at or above this is "no limit" (the kernel writes 2^63 less a page).
NO_CGROUP_LIMIT = 2 ** 60


def available_memory(proc: Path = Path("/proc"),
                     cgroups: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes of memory this process can still take, or None where that cannot be told (not
    Linux): the machine's MemAvailable (free memory and page cache it can drop) and, where
    the process lies in memory-limited control groups (a SLURM job's --mem, a container),
    the least room any of them leaves: its limit less what it holds beside page cache."""
    rooms = [_meminfo_available(proc / "meminfo")]
    rooms += [_cgroup_room(folder) for folder in _memory_cgroups(proc / "self" / "cgroup",
                                                                  cgroups)]
    rooms = [room for room in rooms if room is not None]
    return max(min(rooms), 0) if rooms else None


def _meminfo_available(meminfo: Path) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024          # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _memory_cgroups(membership: Path, cgroups: Path) -> list:
    """The folders of the process's memory cgroups and of their ancestors (v2: the unified
    hierarchy; v1: the memory controller's)."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return []
    folders = []
    for line in lines:
        parts = line.split(":", 2)            # hierarchy id, controllers, path
        if len(parts) != 3:
            continue
        _number, controllers, path = parts
        if controllers == "":
            base = cgroups
        elif "memory" in controllers.split(","):
            base = cgroups / "memory"
        else:
            continue
        folder = base / path.strip("/")
        folders += [folder, *[parent for parent in folder.parents
                              if parent.is_relative_to(base)]]
    return folders


def _cgroup_room(folder: Path) -> int | None:
    """A cgroup's limit less what it holds beside page cache; None without a limit."""
    def number(name):
        return int((folder / name).read_text().strip())

    def page_cache(key):
        stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines())
        return int(stat.get(key, 0))

    try:
        if (folder / "memory.max").exists():                      # v2
            if (folder / "memory.max").read_text().strip() == "max":
                return None
            return number("memory.max") - (number("memory.current") - page_cache("file"))
        if (folder / "memory.limit_in_bytes").exists():           # v1
            limit = number("memory.limit_in_bytes")
            if limit >= NO_CGROUP_LIMIT:
                return None
            return limit - (number("memory.usage_in_bytes") - page_cache("total_cache"))
    except (OSError, ValueError):
        pass
    return None


def is_installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (a parent's absence is a no)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
