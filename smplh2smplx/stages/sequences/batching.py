"""The fits of several sequences as one batch.

A sequence's conversion is a generator (`convert.sequence_steps`) that yields each fit it
needs as a `FitRequest` and is sent back the `FitResult`. Alone, each request is fitted as
it comes (`fitted_alone`). Together (`FitScheduler`, `fitted_together`), the requests that
several sequences have pending for the same fitter are fitted as one batch: a step of the
fitter costs a fixed
part (the passes over the blend shapes, the Gauss-Newton matrix, a few hundred small
operations) and a part per pose, and a motion's frames come in levels of a few to a few
dozen frames, where the fixed part dominates. Every pose is fitted on its own (its own
damping, steps and stop), so a sequence's result does not depend on its batch companions
but for the rounding of the batched products.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Generator, Hashable

import torch

from ...fit.fitter import BodyFitter, FitResult
from ...runtime import torch_threads


@dataclass
class FitRequest:
    """One call of `fitter.fit(targets, init_pose, betas, transl, error_set)`."""
    fitter: BodyFitter
    targets: torch.Tensor
    init_pose: torch.Tensor
    betas: torch.Tensor = None
    transl: torch.Tensor = None
    error_set: object = None

    def fit(self) -> FitResult:
        return self.fitter.fit(self.targets, self.init_pose, self.betas, self.transl,
                               self.error_set)

    def batch_key(self) -> tuple:
        """Requests of one key can be fitted as one batch: one fitter, one error set, and
        the optional starts given by all or none."""
        return (id(self.fitter), id(self.error_set), self.betas is None, self.transl is None)


Steps = Generator[FitRequest, FitResult, object]


def fitted_alone(steps: Steps):
    """Run a conversion's generator, fitting each of its requests as it comes; its result."""
    try:
        request = next(steps)
        while True:
            request = steps.send(request.fit())
    except StopIteration as stop:
        return stop.value


def fitted_together(conversions: list) -> list:
    """Run several conversions' generators to the end, their requests batched by
    `FitScheduler`; each one's result, or the exception it raised, in order."""
    scheduler, outcomes = FitScheduler(), {}
    for index, steps in enumerate(conversions):
        outcomes.update(scheduler.add(index, steps))
    while len(scheduler):
        outcomes.update(scheduler.round())
    return [outcomes[index] for index in range(len(conversions))]


def joined(requests: list) -> FitRequest:
    """The requests of one batch key as one request, rows in order."""
    first = requests[0]

    def cat(name):
        parts = [getattr(request, name) for request in requests]
        return None if parts[0] is None else torch.cat(parts)

    return FitRequest(first.fitter, cat("targets"), cat("init_pose"), cat("betas"),
                      cat("transl"), first.error_set)


def split(result: FitResult, sizes: list) -> list:
    """A batch's FitResult cut back into the results of its requests of `sizes` poses."""
    parts = {field.name: torch.split(getattr(result, field.name), sizes)
             for field in fields(FitResult)}
    return [FitResult(**{name: parts[name][index] for name in parts})
            for index in range(len(sizes))]


class FitScheduler:
    """Several conversions advanced together: each round fits every pending request, those
    of one batch key as one batch, and sends each generator its result.

    `add(key, steps)` starts a conversion (it runs until its first request); `round()`
    returns the conversions that ended in it: (key, result) or, for one that raised,
    (key, the exception); the others go on. A conversion's own errors never stop another.
    """

    def __init__(self):
        self.pending = {}                  # key -> (steps, its pending FitRequest)

    def __len__(self):
        return len(self.pending)

    def add(self, key: Hashable, steps: Steps) -> list:
        """Start `steps`; returns [(key, outcome)] if it ended before asking for a fit."""
        return self._record(key, steps, *resumed(steps, None))     # send(None) starts it

    def round(self) -> list:
        """Fit every pending request once; the conversions that ended, as (key, outcome).

        On the CPU the conversions then go on to their next requests on a pool of as many
        threads as torch has, torch single-threaded in each (a conversion's own work between
        its fits, posing and measuring its frames, is about half of a run's time, and the
        conversions are independent)."""
        batches = {}
        for key, (_steps, request) in self.pending.items():
            batches.setdefault(request.batch_key(), []).append(key)
        sent = []                          # (key, steps, its FitResult or the fit's error)
        for keys in batches.values():
            requests = [self.pending[key][1] for key in keys]
            try:
                results = split(joined(requests).fit(), [len(r.targets) for r in requests])
            except Exception:              # a failing batch: each request again on its own
                results = [fitted_or_error(request) for request in requests]
            sent += [(key, self.pending[key][0], result) for key, result in zip(keys, results)]
        threads = torch.get_num_threads()
        if threads > 1 and len(sent) > 1 and self._on_cpu():
            with torch_threads(1), ThreadPoolExecutor(min(threads, len(sent))) as pool:
                steps_taken = list(pool.map(lambda item: resumed(*item[1:]), sent))
        else:
            steps_taken = [resumed(steps, result) for _key, steps, result in sent]
        return [ended for (key, steps, _result), taken in zip(sent, steps_taken)
                for ended in self._record(key, steps, *taken)]

    def _on_cpu(self) -> bool:
        return all(request.fitter.device.type == "cpu"
                   for _steps, request in self.pending.values())

    def _record(self, key, steps: Steps, request: FitRequest, outcome) -> list:
        """Keep a conversion's next request; [(key, outcome)] if it has ended."""
        if request is not None:
            self.pending[key] = (steps, request)
            return []
        self.pending.pop(key, None)
        return [(key, outcome)]


def fitted_or_error(request: FitRequest):
    """The request's FitResult, or the exception its fit raised."""
    try:
        return request.fit()
    except Exception as error:         # noqa: BLE001 (that conversion's own failure)
        return error


def resumed(steps: Steps, result) -> tuple:
    """Send a conversion its fit's result: (its next FitRequest, None), or (None, its
    result or the exception it raised, or that of its fit)."""
    if isinstance(result, BaseException):
        steps.close()
        return None, result
    try:
        return steps.send(result), None
    except StopIteration as stop:
        return None, stop.value
    except Exception as error:         # noqa: BLE001 (handed to the caller, per file)
        return None, error
