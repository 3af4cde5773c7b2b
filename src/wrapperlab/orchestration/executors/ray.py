"""The Ray executor: every node of a reproduction a Ray task, for sweeps that outgrow one machine.

Why object refs: a node's task takes its parents' results as arguments, so Ray itself holds a fine-tuning
until its pretraining is done and we submit the whole graph at once; the driver only waits for tasks to
finish to print progress. Each task asks for the resources it trains with (``runtime.threads`` CPUs,
default 1, and one GPU when the runtime device is CUDA). Results land in the run store given by path,
so every worker must see the same directory (one machine, or a shared filesystem); the store's per-run
locks keep two tasks — or a Ray sweep and a local ``reproduce`` — from computing or half-writing one
run twice.

Ray is optional (``pip install 'wrapperlab[ray]'``) and imported only here, when asked for.
"""

from __future__ import annotations

from typing import Any

from wrapperlab.errors import ConfigError
from wrapperlab.orchestration.executors.sweep import Job, Sweep


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("executor", "ray", "installed Ray: pip install 'wrapperlab[ray]'") from None
    return ray


def _task(job: Job, node, *parents):
    """One node on a Ray worker; ``parents`` arrive resolved, in the order of ``node.parents``."""
    return job([node], dict(zip(node.parents, parents)))[0]


def run_ray(sweep: Sweep, job: Job, address: str | None = None) -> None:
    """Submit every node (parents as object refs), then report each as it finishes; each task asks for the resources
    ``job`` computes with (its runtime's threads, one GPU when the device is CUDA).

    ``address``: a running cluster (``HOST:PORT``); None starts a local Ray on this machine, bound to
    127.0.0.1, and shuts it down afterwards.
    """
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ConfigError("address", address, f"a reachable Ray cluster HOST:PORT ({e})") from None
    try:
        cpus, gpus = job.runtime.threads or 1, 1 if job.runtime.device.startswith("cuda") else 0
        remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_task)
        refs: dict[str, Any] = {}
        started: dict[Any, Any] = {}
        for node in sweep.nodes:  # dependency order: parents' refs exist
            ref = remote.remote(job, node, *(refs[p] for p in node.parents))
            refs[node.key] = ref
            started[ref] = node
        waiting = list(refs.values())
        while waiting:
            finished, waiting = ray.wait(waiting, num_returns=1)
            for ref in finished:
                sweep.report(started[ref], ray.get(ref))
    finally:
        if started_here:
            ray.shutdown()
