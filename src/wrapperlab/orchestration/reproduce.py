"""Run an expanded spec in-process: every node is a content-addressed run or cached analysis, so a second
call (or one after a kill) computes only what is missing and reports how much that was.

Executors (in-process, a local process pool, Ray) all call :func:`run_node`; the run store's locks keep
two workers from computing one run twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from wrapperlab import timing
from wrapperlab.errors import ConfigError
from wrapperlab.orchestration.spec import Spec, expand
from wrapperlab.runs.stage import Say
from wrapperlab.runs.store import RunStore
from wrapperlab.settings import registry
from wrapperlab.settings.base import Node, NodeContext, Outcome
from wrapperlab.training.config import Runtime


def run_node(node: Node, spec: Spec, profile: str, store: RunStore, done: dict[str, Outcome],
             runtime: Runtime, say: Say) -> Outcome:
    """Compute one node (its parents are in ``done``) through its spec's setting."""
    t0 = time.perf_counter()
    parent = done[node.parents[0]] if node.parents else None
    with timing.collect() as split:
        outcome = registry.get(spec.kind).run_node(node, NodeContext(spec, profile, store, parent, runtime, say))
    outcome.seconds = time.perf_counter() - t0
    outcome.split = split
    return outcome


def run_group(group: list[Node], spec: Spec, profile: str, store: RunStore, done: dict[str, Outcome],
              runtime: Runtime, say: Say) -> list[Outcome]:
    """Compute nodes of one stackable stage together (their trainings as one stack); the group's wall time and its
    split are shared evenly among its nodes (what each would be charged, since they ran as one)."""
    setting = registry.get(spec.kind)
    if len(group) == 1 or setting.run_group is None:
        return [run_node(node, spec, profile, store, done, runtime, say) for node in group]
    t0 = time.perf_counter()
    ctxs = [NodeContext(spec, profile, store, done[node.parents[0]] if node.parents else None, runtime, say)
            for node in group]
    with timing.collect() as split:
        outcomes = setting.run_group(group, ctxs)
    seconds = time.perf_counter() - t0
    for outcome in outcomes:
        outcome.seconds = seconds / len(group)
        outcome.split = {k: v / len(group) for k, v in split.items()}
        outcome.split["group"] = len(group)  # how many nodes shared the time (the dispatch time reads it)
    return outcomes


def next_groups(ready: list[Node], spec: Spec, runtime: Runtime) -> list[list[Node]]:
    """The ready nodes in the order a free worker takes them (the setting's stage ranks, graph order within a
    rank), with up to ``runtime.stack`` ready nodes of a stackable stage gathered into one group."""
    setting = registry.get(spec.kind)
    rank = setting.stage_rank
    ordered = sorted(ready, key=lambda n: rank.get(n.stage, len(rank)))  # stable: graph order within a rank
    stackable = runtime.stack > 1 and setting.run_group is not None
    groups: list[list[Node]] = []
    open_group: dict[str, list[Node]] = {}
    for node in ordered:
        if stackable and node.stage in setting.stack_stages:
            group = open_group.get(node.stage)
            if group is not None and len(group) < runtime.stack:
                group.append(node)
                continue
            open_group[node.stage] = group = [node]
            groups.append(group)
        else:
            groups.append([node])
    return groups


@dataclass
class Reproduction:
    spec: str
    profile: str
    nodes: list[Node]
    outcomes: dict[str, Outcome]
    computed: int
    seconds: float


def run_job(group: list[Node], spec: Spec, profile: str, root: str, done: dict[str, Outcome],
            runtime: Runtime) -> list[Outcome]:
    """A job of the process pool or of submitit (top level, so it pickles): one node, or a group trained as one
    stack."""
    return run_group(group, spec, profile, RunStore(root), done, runtime, say=lambda _: None)


EXECUTORS = ("local", "ray", "submitit")

#: runs (grid points × seeds) above which ``reproduce`` asks for ``--yes``: a typo in an axis can mean weeks of compute
GRID_CAP = 2000
#: above this many runs the graph is not even expanded to estimate it
EXPAND_LIMIT = 50_000


def grid_runs(spec: Spec, profile: str, seeds: int | None = None) -> int:
    """Grid points × seeds: one fine-tuning (or deletion) each, before analyses — counted without expanding."""
    n = len(spec.seeds_for(profile, seeds))
    for values in spec.axes_for(profile).values():
        n *= len(values)
    return n


def estimate_seconds(nodes: list[Node], store: RunStore, profile: str, workers: int) -> tuple[float, list[str]]:
    """Wall-time estimate of ``nodes`` from this store's earlier reproductions on ``profile``: the median seconds of a
    computed node per stage, summed, over ``workers``; also the stages with no earlier node (not estimated)."""
    import json
    import statistics

    seen: dict[str, list[float]] = {}
    for path in sorted((store.root / "reproductions").glob(f"*-{profile}.json")):
        try:
            for n in json.loads(path.read_text())["nodes"]:
                if not n.get("reused"):
                    seen.setdefault(n["stage"], []).append(float(n["seconds"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unreadable record only makes the estimate poorer
    median = {stage: statistics.median(v) for stage, v in seen.items()}
    unknown = sorted({n.stage for n in nodes} - set(median))
    return sum(median.get(n.stage, 0.0) for n in nodes) / max(1, workers), unknown


def check_size(spec: Spec, profile: str, store: RunStore, seeds: int | None, workers: int, yes: bool) -> None:
    """Refuse a grid above :data:`GRID_CAP` runs unless ``yes``, saying its size and its estimated time."""
    runs = grid_runs(spec, profile, seeds)
    if yes or runs <= GRID_CAP:
        return
    if runs > EXPAND_LIMIT:
        size = f"{runs:,} runs (grid points × seeds; too many to estimate)"
    else:
        nodes = expand(spec, profile, seeds)
        seconds, unknown = estimate_seconds(nodes, store, profile, workers)
        guess = f"about {seconds / 3600:.1f} h on {workers} worker(s) from this store's earlier {profile} nodes" \
            if seconds else f"no earlier computed {profile} node of its stages in this store to estimate from"
        missing = f"; not counted: {', '.join(unknown)}" if unknown and seconds else ""
        size = f"{runs:,} runs, {len(nodes):,} nodes ({guess}{missing})"
    raise ConfigError(f"spec {spec.name} ({profile})", size,
                      f"at most {GRID_CAP:,} runs, or --yes (api: yes=True) to run it anyway")


def reproduce(spec: Spec, profile: str, store: RunStore, seeds: int | None = None, runtime: Runtime = Runtime(),
              say: Say = print, workers: int = 1, executor: str = "local", address: str | None = None,
              yes: bool = False, cluster: dict[str, Any] | None = None) -> Reproduction:
    """Run every node of ``spec`` once its parents are done, with one progress line per node started and
    finished (nodes done / total, the node, elapsed, an ETA from the nodes computed so far).

    ``executor="local"``: in this process (``workers=1``) or a process pool of ``workers``, each worker
    with ``cores // workers`` torch threads so that together they do not oversubscribe the machine.
    ``executor="ray"``: one Ray task per node (:mod:`wrapperlab.orchestration.executors.ray`), on the
    cluster at ``address`` or a local Ray, each task asking for ``runtime.threads`` CPUs (default 1).
    ``executor="submitit"``: one Slurm job per ready node (or group), at most ``workers`` in flight
    (:mod:`wrapperlab.orchestration.executors.submitit`; ``cluster``: its options — ``cluster`` auto/slurm/local,
    ``partition``, ``timeout_min``).

    A grid of more than :data:`GRID_CAP` runs is refused (its size and estimated time in the message) unless ``yes``.
    """
    if executor not in EXECUTORS:
        raise ConfigError("executor", executor, f"one of {list(EXECUTORS)}")
    check_size(spec, profile, store, seeds, workers, yes)
    nodes = expand(spec, profile, seeds)
    check = registry.get(spec.kind).check
    if check is not None:  # every stage's values, before the first node runs
        check(nodes, NodeContext(spec, profile, store, None, runtime, say))
    done: dict[str, Outcome] = {}
    state = {"computed": 0, "finished": 0}
    t0 = time.perf_counter()

    def status() -> str:
        elapsed = time.perf_counter() - t0
        left = len(nodes) - state["finished"]
        eta = f"{elapsed / state['computed'] * left:.0f} s" if state["computed"] else "?"
        return f"elapsed {elapsed:.0f} s, ETA ≤ {eta}"

    started: dict[str, float] = {}

    def starting(node: Node) -> None:
        started[node.key] = time.perf_counter()
        say(f"[{state['finished']}/{len(nodes)}] running {node.key} | {status()}")

    def report(node: Node, outcome: Outcome) -> None:
        if node.key in started and outcome.split:  # from handing the node out to its result: process start, imports
            ran = outcome.seconds * outcome.split.get("group", 1)  # a group's nodes ran together for all of it
            outcome.split["dispatch"] = round(max(0.0, time.perf_counter() - started[node.key] - ran), 3)
        done[node.key] = outcome
        state["finished"] += 1
        state["computed"] += not outcome.reused
        what = "reused" if outcome.reused else f"{outcome.seconds:.0f} s"
        say(f"[{state['finished']}/{len(nodes)}] {node.key}: {what} | {status()}")

    if executor == "ray":
        from wrapperlab.orchestration.executors.ray import run_ray

        run_ray(nodes, spec, profile, store, runtime, report, address=address)
    elif executor == "submitit":
        from wrapperlab.orchestration.executors.submitit import run_submitit

        run_submitit(nodes, spec, profile, store, done, runtime, workers, starting, report, **(cluster or {}))
    elif workers <= 1 and runtime.stack <= 1:
        for node in nodes:
            starting(node)
            report(node, run_node(node, spec, profile, store, done, runtime, say))
    elif workers <= 1:  # stacking in this process: the ready nodes, a group at a time
        pending = list(nodes)
        while pending:
            group = next_groups([n for n in pending if all(p in done for p in n.parents)], spec, runtime)[0]
            for node in group:
                pending.remove(node)
                starting(node)
            for node, outcome in zip(group, run_group(group, spec, profile, store, done, runtime, say)):
                report(node, outcome)
    else:
        _run_pool(nodes, spec, profile, store, done, runtime, workers, starting, report)
    result = Reproduction(spec.name, profile, nodes, done, state["computed"], time.perf_counter() - t0)
    save(result, spec, store)
    return result


def save(result: Reproduction, spec: Spec, store: RunStore) -> Path:
    """``<store>/reproductions/<spec>-<profile>.json``: every node's grid point and outcome (the report's input)."""
    import json

    from wrapperlab.files import atomic_write_text

    nodes = [{"key": n.key, "stage": n.stage, "point": n.point, "run_id": result.outcomes[n.key].run_id,
              "reused": result.outcomes[n.key].reused,
              "seconds": round(result.outcomes[n.key].seconds, 2), "split": result.outcomes[n.key].split,
              "data": result.outcomes[n.key].data} for n in result.nodes]
    path = store.root / "reproductions" / f"{spec.name}-{result.profile}.json"
    base = {stage: spec.base_for(result.profile, stage) for stage in ("pretrain", "finetune", "reft")}
    extra = {name: getattr(spec, name) for name in registry.get(spec.kind).spec_fields}
    atomic_write_text(path, json.dumps({"spec": spec.name, "kind": spec.kind, "profile": result.profile,
                                        "program": None, **extra, "base": base,
                                        "computed": result.computed, "seconds": result.seconds, "nodes": nodes},
                                       indent=1, default=str) + "\n")
    return path


def time_table(result: Reproduction) -> list[str]:
    """Where the computed nodes' time went, per stage (``reproduce --profile-time``): seconds summed over nodes
    in each section of :mod:`wrapperlab.timing`, ``dispatch`` (handing a node to a worker process: its start and
    imports), and wall ÷ train — how much of a node is not training (goal for FT and reFT nodes: ≤ 1.25)."""
    rows = timing.per_stage({"stage": n.stage, "seconds": result.outcomes[n.key].seconds,
                             "split": result.outcomes[n.key].split, "reused": result.outcomes[n.key].reused}
                            for n in result.nodes)
    lines = ["stage      nodes   wall s " + " ".join(f"{c:>9}" for c in timing.COLUMNS) + "  wall/train"]
    for stage, row in rows.items():
        ratio = f"{row['wall/train']:.2f}" if "wall/train" in row else "-"
        lines.append(f"{stage:<10} {row['nodes']:>5.0f} {row['wall']:>8.1f} "
                     + " ".join(f"{row.get(c, 0.0):>9.1f}" for c in timing.COLUMNS) + f"  {ratio:>10}")
    return lines


def _die_with_parent() -> None:
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


def _run_pool(nodes, spec, profile, store, done, runtime, workers, starting, report) -> None:
    import multiprocessing
    import os
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // workers)
    worker_runtime = runtime.model_copy(update={"threads": runtime.threads or threads, "progress": False})
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_die_with_parent) as pool:
        schedule(nodes, spec, done, runtime, workers, starting, report,
                 submit=lambda group, parents: pool.submit(run_job, group, spec, profile, str(store.root), parents,
                                                           worker_runtime),
                 wait_any=lambda handles: wait(handles, return_when=FIRST_COMPLETED)[0],
                 result=lambda future: future.result())


def schedule(nodes: list[Node], spec: Spec, done: dict[str, Outcome], runtime: Runtime, slots: int,
             starting: Callable[[Node], None], report: Callable[[Node, Outcome], None],
             submit: Callable[[list[Node], dict[str, Outcome]], Any], wait_any: Callable[[list[Any]], Any],
             result: Callable[[Any], list[Outcome]]) -> None:
    """Hand ready nodes to an executor, at most ``slots`` jobs at a time, until every node is done (the local pool
    and the submitit executor share it; Ray instead takes the whole graph with its dependencies).

    Which ready node a free slot takes first: the setting's ranks (roots, then what unblocks others, then long
    nodes, then short analyses; unranked stages last), stackable ready nodes as one group (``runtime.stack``).
    ``submit(group, parents)`` starts a job and returns its handle, ``wait_any(handles)`` the finished ones,
    ``result(handle)`` the group's outcomes (raising what the job raised)."""
    pending = list(nodes)
    running: dict[Any, list[Node]] = {}
    while pending or running:
        ready = [n for n in pending if all(p in done for p in n.parents)]
        for group in next_groups(ready, spec, runtime):
            if len(running) >= slots:
                break
            parents = {p: done[p] for node in group for p in node.parents}
            for node in group:
                pending.remove(node)
                starting(node)
            running[submit(group, parents)] = group
        if not running:
            raise RuntimeError(f"no node is ready, none is running and {len(pending)} wait: the graph is not a DAG")
        for handle in wait_any(list(running)):
            for node, outcome in zip(running.pop(handle), result(handle)):
                report(node, outcome)
