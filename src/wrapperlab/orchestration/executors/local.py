"""The local process pool: ``workers`` processes (spawned, so each starts clean), each with ``cores // workers``
torch threads so that together they do not oversubscribe the machine."""

from __future__ import annotations

from wrapperlab.orchestration.executors.sweep import Job, Sweep, schedule


def die_with_parent() -> None:
    """Pool initializer: on Linux, a worker gets SIGTERM when the ``reproduce`` process dies, so a killed
    sweep leaves no orphan still training (its run resumes from the last checkpoint next time)."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def run_pool(sweep: Sweep, job: Job, workers: int) -> None:
    """Every node of ``sweep`` through ``job`` in a pool of ``workers`` processes."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=die_with_parent) as pool:
        schedule(sweep, workers, submit=lambda group, parents: pool.submit(job, group, parents),
                 wait_any=lambda handles: wait(handles, return_when=FIRST_COMPLETED)[0],
                 result=lambda future: future.result())
