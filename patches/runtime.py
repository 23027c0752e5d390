"""Run-time adjustments around the official `run_fitting` call, undone after each call.

- `output_as_dict`: the official code reads the body model's output by key and merges it
  into a dict; the smplx clone's own layer returns a namedtuple, which supports neither
  (the published fix edits both places). A forward hook turns any output into a dict.
- `observed_fitting`: counts the optimiser steps of each stage (the official code keeps
  no count) and breaks the gradient reference cycles its trust-region stages leave.
- `quiet_official`: silences the per-stage progress bars and the log unless asked for.
"""
import functools
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass

from tqdm import tqdm


def model_output_to_dict(output):
    """A plain dict of the body model's output: namedtuple, dataclass or mapping.

    Replaces the published fixes "access the model output as attributes" and "convert the
    output to a dict": with a dict, both `output['vertices']` and `var_dict.update(output)`
    in `run_fitting` work for every smplx version.
    """
    if isinstance(output, dict):
        return output
    if hasattr(output, "_asdict"):                     # the clone's TensorOutput
        return dict(output._asdict())
    if is_dataclass(output):                          # smplx 0.1.28's SMPLXOutput
        return {item.name: getattr(output, item.name) for item in fields(output)}
    raise TypeError(f"unexpected body model output of type {type(output).__name__}")


def output_as_dict(body_model):
    """Make `body_model(...)` return a dict (see `model_output_to_dict`); returns the hook."""
    return body_model.register_forward_hook(
        lambda module, inputs, output: model_output_to_dict(output))


@dataclass
class StepCounts:
    """Optimiser steps taken by each stage of one `run_fitting` call, in stage order."""
    per_stage: list = field(default_factory=list)
    parameters: list = field(default_factory=list)

    @property
    def total(self):
        return sum(self.per_stage)

    def all_stopped_before(self, max_steps):
        """Whether every stage met the official stopping tolerance before `max_steps`."""
        return bool(self.per_stage) and all(steps < max_steps for steps in self.per_stage)


def _counted(build_optimizer, counts):
    """`build_optimizer` whose optimisers report each `step` call into a new stage of `counts`
    (and whose parameters are remembered in `counts.parameters`)."""
    @functools.wraps(build_optimizer)
    def build_and_count(parameters, *args, **kwargs):
        parameters = list(parameters)
        counts.parameters.extend(parameters)
        built = build_optimizer(parameters, *args, **kwargs)
        optimizer = built["optimizer"]
        stage = len(counts.per_stage)
        counts.per_stage.append(0)
        step = optimizer.step

        def counted_step(*step_args, **step_kwargs):
            counts.per_stage[stage] += 1
            return step(*step_args, **step_kwargs)

        optimizer.step = counted_step
        return built
    return build_and_count


@contextmanager
def _replaced(module, name, value):
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


@contextmanager
def observed_fitting(modules):
    """Within the block, `modules.fitting.run_fitting` counts its steps (yields StepCounts).

    When the block ends the gradients of the optimised variables are dropped: the official
    trust-region closures back-propagate with `create_graph=True`, which leaves each
    variable's `.grad` holding a graph that leads back to the variable, a reference cycle
    that Python's collector cannot see, so every batch would leak its last graph.
    """
    counts = StepCounts()
    try:
        with _replaced(modules.fitting, "build_optimizer",
                       _counted(modules.fitting.build_optimizer, counts)):
            yield counts
    finally:
        for parameter in counts.parameters:
            parameter.grad = None
        counts.parameters.clear()


@contextmanager
def quiet_official(modules, verbose=False):
    """Silence the official progress bars and loguru messages within the block, unless
    `verbose`, and torch's warning about `create_graph=True` (`observed_fitting` breaks the
    cycle it warns about); everything is restored when the block ends."""
    if verbose:
        yield
        return
    try:
        from loguru import logger
    except ImportError:                  # then the official code cannot have been imported
        logger = None
    quiet_tqdm = functools.partial(tqdm, disable=True)
    if logger is not None:
        logger.disable("transfer_model")
    try:
        with _replaced(modules.fitting, "tqdm", quiet_tqdm), \
                _replaced(modules.minimize, "tqdm", quiet_tqdm), \
                warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
            yield
    finally:
        if logger is not None:
            logger.enable("transfer_model")
