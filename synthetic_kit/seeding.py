"""The kit's random streams: everything is a deterministic function of the seed."""
import numpy as np


def stream_rng(seed, *stream):
    """An independent random generator for one purpose (`stream`), from the kit's seed."""
    return np.random.default_rng([seed, *stream])
