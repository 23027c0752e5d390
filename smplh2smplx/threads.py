"""torch's intra-op thread count, set for a block of work."""
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(count):
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
