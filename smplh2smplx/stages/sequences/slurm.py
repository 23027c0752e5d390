"""A sequence run as a SLURM array job through submitit: one shard of the sorted file list
per task, each task `run_sequences` with its `shard_index` (so a task submitted again resumes
where it stopped, as a local run does, and submitit requeues a task that runs out of time or
is preempted)."""
from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import submitit
import torch
from submitit.helpers import Checkpointable

from ...errors import InputError, OutputError, below_least, error_text, listed, one_line
from ...formats.files import check_writable_folder
from ...runtime import torch_threads
from .convert import SequenceOptions, pair_transfer
from .run import SequenceSummary, check_source_models, run_sequences
from .tree import check_output_folder, conversion_header, list_sequence_files


@dataclass(frozen=True)
class SlurmOptions:
    """An array job of `shards` tasks, one shard of the sorted file list each.

    cluster: None (submitit picks SLURM when it is there) or "local" (this machine's local
    executor, for tests and trials); log_dir: submitit's folder (logs, pickled results).
    """
    shards: int
    log_dir: Path
    partition: str = None
    minutes: int = 240
    cpus: int = 4
    gpus: int = 0
    mem_gb: int = 16
    parallelism: int = 64
    cluster: str = None


@dataclass(frozen=True)
class ShardError:
    """What a task that stopped at a bad input or an unwritable output returns: the exit
    code the command would give (2 or 3) and its one-line message."""
    code: int
    message: str


class ShardTask(Checkpointable):
    """One array task: a shard run without a progress bar on at most `cpus` torch threads;
    its summary, or a ShardError (a task's error comes back as data, not as submitit's
    traceback).

    The thread cap: a node that limits a task's CPU time but not the cores it sees would
    otherwise get a thread per core of the node, many times the CPUs the task was given.
    Checkpointable, so that when SLURM signals the time limit (90 s ahead) or a preemption,
    submitit requeues the task (up to three time-outs) instead of ending it; run again, the
    task skips the files already done (with --overwrite, those it wrote itself). The file
    being converted at the signal is redone.
    """

    def __init__(self, cpus: int):
        self.cpus = cpus
        self.started = None                 # the first start (kept through requeues)

    def __call__(self, options: SequenceOptions) -> SequenceSummary | ShardError:
        self.started = self.started or time.time()
        try:
            with torch_threads(min(self.cpus, torch.get_num_threads())):
                return run_sequences(options, progress=False)
        except InputError as error:
            return ShardError(2, error_text(error))
        except (OutputError, OSError) as error:
            return ShardError(3, error_text(error))

    def checkpoint(self, options: SequenceOptions):
        """The requeued call: an --overwrite task keeps what its earlier starts wrote."""
        if options.overwrite:
            options = replace(options, overwrite_since=self.started)
        return super().checkpoint(options)


# How often a waiting command looks for a SLURM task's result file, and asks SLURM's queue
# whether the task is still there. A task that has left the queue without a result in two
# asks running (a minute or more: time for a result written on a node to show through a
# shared file system's cache) ended without one.
RESULT_POLL_SECONDS = 5
QUEUE_POLL_SECONDS = 60


def queued_tasks() -> set | None:
    """The ids ("12_3") of this user's jobs and array tasks in SLURM's queue, or None when
    squeue cannot tell (not there, the controller not answering)."""
    try:
        listed = subprocess.run(["squeue", "--noheader", "--array", "--me", "--format", "%i"],
                                capture_output=True, text=True, timeout=120, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return set(listed.stdout.split())


def wait_for_slurm_task(job) -> bool:
    """Wait until the SLURM task `job` has its result file (True) or has left the queue
    without one (False).

    Not submitit's own wait: it learns that a task ended from SLURM's accounting (sacct),
    and where a cluster keeps none it would wait forever for a task killed without a result,
    printing sacct's refusal at every poll."""
    asked, absent = float("-inf"), 0
    while not job.paths.result_pickle.exists():
        if time.monotonic() - asked >= QUEUE_POLL_SECONDS:
            asked = time.monotonic()
            queued = queued_tasks()
            absent = absent + 1 if queued is not None and job.job_id not in queued else 0
            if absent == 2:
                return job.paths.result_pickle.exists()
        time.sleep(RESULT_POLL_SECONDS)
    return True


def shard_outcome(job) -> SequenceSummary | ShardError:
    """What a submitted task gave: its summary or ShardError, or, for a task that ended
    without one (killed, out of memory, out of time once too often, a crash), a ShardError
    with exit code 1 naming its log. Waits for the task."""
    ended_without_result = ShardError(
        1, "the task ended without a result (killed, or out of memory?); its log: "
           f"{job.paths.stderr}; rerun the command to resume it")
    if isinstance(job, submitit.SlurmJob) and not wait_for_slurm_task(job):
        return ended_without_result
    try:
        return job.result()
    except submitit.core.utils.FailedJobError as error:
        lines = [line for line in str(error).splitlines() if line.strip(" -")]
        cause = next((line for line in reversed(lines) if not line.startswith((
            "You can check", "or at paths", "  - "))), "no cause given")
        return ShardError(1, f"the task failed ({one_line(cause)}); its log: "
                             f"{job.paths.stderr}; rerun the command to resume it")
    except submitit.core.utils.UncompletedJobError:
        return ended_without_result


def submit_shards(options: SequenceOptions, slurm: SlurmOptions) -> list:
    """Submit the shards of `options`' file list as one array job; returns the jobs.

    The file list is split into `slurm.shards` shards of equal size (the last shorter);
    each task runs a `ShardTask` with its `shard_index`, so a task that is re-submitted
    resumes where it stopped, as a local run does.
    """
    options.check()
    check_output_folder(options)              # here, not in every task
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if slurm.cluster is None and missing:
        raise InputError(f"--slurm: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'}"
                         " not on PATH (no SLURM on this machine); run without --slurm to "
                         "convert here, or add --local to try the array on this machine")
    impossible = below_least((("--shards", slurm.shards, 1), ("--time", slurm.minutes, 1),
                              ("--cpus", slurm.cpus, 1), ("--gpus", slurm.gpus, 0),
                              ("--mem-gb", slurm.mem_gb, 1)))
    if impossible:
        raise InputError("--slurm: resources no task can have:" + listed(impossible))
    files = list_sequence_files(options.input_path, options.output_dir)
    if not files:
        raise InputError(f"{options.input_path}: no .npz files to convert")
    # Here, not in every task: a path the files need and nobody set would fail them all.
    kinds = {conversion_header(path, options)[0] for _relative, path in files} - {None}
    check_source_models(options, sorted(kinds),
                        lambda kind: pair_transfer(options, kind, options.target_model))
    check_writable_folder(slurm.log_dir)
    shard_size = math.ceil(len(files) / slurm.shards)
    count = math.ceil(len(files) / shard_size)
    # Named, not detected: submitit's detection looks for srun and, without it, would run
    # the array on this machine while the command reports a submitted job.
    executor = submitit.AutoExecutor(folder=str(slurm.log_dir),
                                     cluster=slurm.cluster or "slurm")
    parameters = dict(timeout_min=slurm.minutes, cpus_per_task=slurm.cpus,
                      gpus_per_node=slurm.gpus, mem_gb=slurm.mem_gb, name="convert_sequences")
    if executor.cluster == "slurm":
        parameters.update(slurm_array_parallelism=slurm.parallelism)
        if slurm.partition:
            parameters.update(slurm_partition=slurm.partition)
    executor.update_parameters(**parameters)
    # The tasks import this package: make its folder importable wherever they start.
    repo = str(Path(__file__).resolve().parents[3])
    paths = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    if repo not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([repo] + paths)
    shards = [replace(options, shard_size=shard_size, shard_index=index)
              for index in range(count)]
    try:
        with contextlib.redirect_stderr(io.StringIO()):     # submitit prints sbatch's refusal
            return executor.map_array(ShardTask(slurm.cpus), shards)
    except (submitit.core.utils.FailedJobError, OSError) as error:
        raise InputError(f"--slurm: sbatch did not take the array job: {one_line(error)}") \
            from None
