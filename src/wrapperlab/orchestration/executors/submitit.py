"""The submitit executor: every ready node (or stack of nodes) a Slurm job, for clusters without Ray.

Why a job per ready node rather than the whole graph at once with Slurm dependencies: the driver already knows
which nodes are ready, a failed job then stops the sweep at once with its own error, and ``--workers`` bounds
how many jobs a sweep holds in the queue. The jobs read and write the run store by path, so it must be on a
filesystem every node sees; the store's per-run locks keep two jobs — or a Slurm sweep and a local
``reproduce`` — from computing or half-writing one run twice, and a re-run after a cancelled sweep reuses
what finished and resumes what was checkpointed.

``cluster="local"`` runs the jobs as local processes through submitit's LocalExecutor (what the tests use);
``"auto"`` picks Slurm where ``sbatch`` exists, else local. Submitit's own files (pickled jobs, each job's
stdout and stderr) go under ``<store>/submitit/``. submitit is optional (``pip install 'wrapperlab[slurm]'``)
and imported only here, when asked for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wrapperlab.errors import ConfigError, UserError
from wrapperlab.orchestration.executors.sweep import Job, Sweep, schedule
from wrapperlab.settings.graph import Node, Outcome

CLUSTERS = ("auto", "slurm", "local")


def import_submitit():
    try:
        import submitit
    except ImportError:
        raise ConfigError("executor", "submitit", "installed submitit: pip install 'wrapperlab[slurm]'") from None
    return submitit


@dataclass(frozen=True)
class SlurmOptions:
    """How the jobs are asked for: ``cluster`` (auto / slurm / local), ``partition`` (Slurm's; None: the cluster's
    default), each job's ``timeout_min``, the driver polling every ``poll_s``."""

    cluster: str = "auto"
    partition: str | None = None
    timeout_min: int = 240
    poll_s: float = 1.0

    def __post_init__(self):
        if self.cluster not in CLUSTERS:
            raise ConfigError("cluster", self.cluster, f"one of {list(CLUSTERS)}")
        if self.timeout_min <= 0:
            raise ConfigError("timeout_min", self.timeout_min, "a positive number of minutes")


def _job(job: Job, group: list[Node], parents: dict[str, Outcome]):
    """One job: a node, or a group trained as one stack. An error the user can act on (bad input, a damaged file,
    a diverged run, a full disk) comes back as a value, so the driver raises it whole — submitit would turn it
    into a traceback's text."""
    try:
        return "ok", job(group, parents)
    except (UserError, OSError) as e:
        return "error", e


def run_submitit(sweep: Sweep, job: Job, slots: int, options: SlurmOptions = SlurmOptions()) -> None:
    """Submit ready nodes as jobs, at most ``slots`` in flight; each asks for the job runtime's threads as CPUs
    (default 1) and one GPU when its device is CUDA; submitit's files go under ``<store>/submitit``."""
    submitit = import_submitit()
    executor = submitit.AutoExecutor(folder=Path(job.root) / "submitit" / "%j",
                                     cluster=None if options.cluster == "auto" else options.cluster)
    cpus, gpus = job.runtime.threads or 1, 1 if job.runtime.device.startswith("cuda") else 0
    params: dict[str, Any] = {"timeout_min": options.timeout_min, "cpus_per_task": cpus, "gpus_per_node": gpus,
                              "name": f"wrapperlab-{job.name}"}
    if options.partition:
        params["slurm_partition"] = options.partition
    executor.update_parameters(**params)

    def wait_any(jobs: list) -> list:
        while True:  # the jobs write their outcome to the shared folder; a poll every poll_s is cheap
            finished = [j for j in jobs if j.done()]
            if finished:
                return finished
            time.sleep(options.poll_s)

    def result(submitted_job) -> list[Outcome]:
        status, value = submitted_job.result()  # a crash (a bug, not bad input) raises submitit's error with its log
        if status == "error":
            raise value
        return value

    submitted: list = []

    def submit(group: list[Node], parents: dict[str, Outcome]):
        submitted.append(executor.submit(_job, job, group, parents))
        return submitted[-1]

    try:
        schedule(sweep, slots, submit=submit, wait_any=wait_any, result=result)
    except BaseException:  # a failed job or Ctrl-C: no job of this sweep keeps a cluster slot (runs resume later)
        for j in submitted:
            if not j.done():
                j.cancel(check=False)
        raise
