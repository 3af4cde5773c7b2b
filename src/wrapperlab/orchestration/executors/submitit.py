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
from typing import Any, Callable

from wrapperlab.errors import ConfigError, UserError
from wrapperlab.orchestration.spec import Spec
from wrapperlab.runs.store import RunStore
from wrapperlab.settings.base import Node, Outcome
from wrapperlab.training.config import Runtime

CLUSTERS = ("auto", "slurm", "local")


def import_submitit():
    try:
        import submitit
    except ImportError:
        raise ConfigError("executor", "submitit", "installed submitit: pip install 'wrapperlab[slurm]'") from None
    return submitit


def _job(group: list[Node], spec: Spec, profile: str, root: str, parents: dict[str, Outcome], runtime: Runtime):
    """One job: a node, or a group trained as one stack. An error the user can act on (bad input, a damaged file,
    a diverged run, a full disk) comes back as a value, so the driver raises it whole — submitit would turn it
    into a traceback's text."""
    from wrapperlab.orchestration.reproduce import run_job

    try:
        return "ok", run_job(group, spec, profile, root, parents, runtime)
    except (UserError, OSError) as e:
        return "error", e


def run_submitit(nodes: list[Node], spec: Spec, profile: str, store: RunStore, done: dict[str, Outcome],
                 runtime: Runtime, workers: int, starting: Callable[[Node], None],
                 report: Callable[[Node, Outcome], None], cluster: str = "auto", partition: str | None = None,
                 timeout_min: int = 240, poll_s: float = 1.0) -> None:
    """Submit ready nodes as jobs, at most ``workers`` in flight; each asks for ``runtime.threads`` CPUs (default
    1) and one GPU when the runtime device is CUDA, for ``timeout_min`` minutes, on ``partition`` (Slurm)."""
    from wrapperlab.orchestration.reproduce import schedule

    submitit = import_submitit()
    if cluster not in CLUSTERS:
        raise ConfigError("cluster", cluster, f"one of {list(CLUSTERS)}")
    if timeout_min <= 0:
        raise ConfigError("timeout_min", timeout_min, "a positive number of minutes")
    folder = store.root.resolve() / "submitit" / "%j"
    executor = submitit.AutoExecutor(folder=folder, cluster=None if cluster == "auto" else cluster)
    cpus, gpus = runtime.threads or 1, 1 if runtime.device.startswith("cuda") else 0
    params: dict[str, Any] = {"timeout_min": timeout_min, "cpus_per_task": cpus, "gpus_per_node": gpus,
                              "name": f"wrapperlab-{spec.name}"}
    if partition:
        params["slurm_partition"] = partition
    executor.update_parameters(**params)
    job_runtime = runtime.model_copy(update={"threads": cpus, "progress": False})
    root = str(store.root.resolve())

    def wait_any(jobs: list) -> list:
        while True:  # the jobs write their outcome to the shared folder; a poll every poll_s is cheap
            finished = [job for job in jobs if job.done()]
            if finished:
                return finished
            time.sleep(poll_s)

    def result(job) -> list[Outcome]:
        status, value = job.result()  # a crash (a bug, not bad input) raises submitit's error with the job's log
        if status == "error":
            raise value
        return value

    submitted: list = []

    def submit(group: list[Node], parents: dict[str, Outcome]):
        submitted.append(executor.submit(_job, group, spec, profile, root, parents, job_runtime))
        return submitted[-1]

    try:
        schedule(nodes, spec, done, runtime, workers, starting, report, submit=submit, wait_any=wait_any,
                 result=result)
    except BaseException:  # a failed job or Ctrl-C: no job of this sweep keeps a cluster slot (runs resume later)
        for job in submitted:
            if not job.done():
                job.cancel(check=False)
        raise
