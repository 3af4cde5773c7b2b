"""Run an expanded spec: every node is a content-addressed run or cached analysis, so a second call (or one after a
kill) computes only what is missing and reports how much that was.

Every executor (in-process, a local process pool, Ray, submitit) runs nodes through a :class:`Job` it is handed
(orchestration/executors/sweep.py); the run store's locks keep two workers from computing one run twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wrapperlab import timing
from wrapperlab.errors import ConfigError
from wrapperlab.orchestration.executors.sweep import Sweep
from wrapperlab.orchestration.spec import expand
from wrapperlab.runs.stage import Say
from wrapperlab.runs.store import RunStore
from wrapperlab.settings import registry
from wrapperlab.settings.graph import Node, NodeContext, Outcome
from wrapperlab.settings.spec import Spec
from wrapperlab.training.config import Runtime


def run_group(group: list[Node], ctx: NodeContext, done: dict[str, Outcome]) -> list[Outcome]:
    """Compute nodes of one stage (their parents are in ``done``) through the spec's setting: one node, or several
    trained as one stack. A group's wall time and its split are shared evenly among its nodes (what each would be
    charged, since they ran as one)."""
    t0 = time.perf_counter()
    ctxs = [NodeContext(ctx.spec, ctx.profile, ctx.store, [done[p] for p in node.parents], ctx.runtime, ctx.say)
            for node in group]
    with timing.collect() as split:
        outcomes = registry.get(ctx.spec.kind).run_group(group, ctxs)
    seconds = time.perf_counter() - t0
    for outcome in outcomes:
        outcome.seconds = seconds / len(group)
        outcome.split = {k: v / len(group) for k, v in split.items()}
        if len(group) > 1:
            outcome.split["group"] = len(group)  # how many nodes shared the time (the dispatch time reads it)
    return outcomes


@dataclass(frozen=True)
class Job:
    """What a worker runs: a group of nodes of one spec and profile over the store at ``root`` (top level and plain
    data, so it pickles for the process pool, Ray and submitit)."""

    spec: Spec
    profile: str
    root: str
    runtime: Runtime

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, group: list[Node], parents: dict[str, Outcome]) -> list[Outcome]:
        ctx = NodeContext(self.spec, self.profile, RunStore(self.root), [], self.runtime, lambda _: None)
        return run_group(group, ctx, parents)


def next_groups(ready: list[Node], spec: Spec, runtime: Runtime) -> list[list[Node]]:
    """The ready nodes in the order a free worker takes them (the setting's stage ranks, graph order within a
    rank), with up to ``runtime.stack`` ready nodes of a stackable stage gathered into one group."""
    setting = registry.get(spec.kind)
    ordered = sorted(ready, key=lambda n: setting.stage(n.stage).rank)  # stable: graph order within a rank
    groups: list[list[Node]] = []
    open_group: dict[str, list[Node]] = {}
    for node in ordered:
        if runtime.stack > 1 and setting.stackable(node.stage):
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


@dataclass(frozen=True)
class Executor:
    """Where the nodes run: ``kind`` local (this process, or a pool of ``workers`` processes), ray (one task per node,
    on the cluster at ``address`` or a local Ray) or submitit (``workers`` jobs in flight; ``slurm``: how they are
    asked for)."""

    kind: str = "local"
    workers: int = 1
    address: str | None = None
    slurm: Any = None  # executors.submitit.SlurmOptions

    def __post_init__(self):
        if self.kind not in EXECUTORS:
            raise ConfigError("executor", self.kind, f"one of {list(EXECUTORS)}")


def reproduce(spec: Spec, profile: str, store: RunStore, seeds: int | None = None, runtime: Runtime = Runtime(),
              say: Say = print, executor: Executor = Executor(), yes: bool = False) -> Reproduction:
    """Run every node of ``spec`` once its parents are done, with one progress line per node started and
    finished (nodes done / total, the node, elapsed, an ETA from the nodes computed so far).

    ``executor``: in this process (local, one worker), a local process pool (each worker with ``cores // workers``
    torch threads, so that together they do not oversubscribe the machine), one Ray task per node
    (:mod:`~wrapperlab.orchestration.executors.ray`, each asking for ``runtime.threads`` CPUs, default 1), or one
    Slurm job per ready node or group (:mod:`~wrapperlab.orchestration.executors.submitit`).

    A grid of more than :data:`GRID_CAP` runs is refused (its size and estimated time in the message) unless ``yes``.
    """
    check_size(spec, profile, store, seeds, executor.workers, yes)
    nodes = expand(spec, profile, seeds)
    ctx = NodeContext(spec, profile, store, [], runtime, say)
    registry.get(spec.kind).check(nodes, ctx)  # every stage's values, before the first node runs
    sweep = _sweep(nodes, spec, runtime, say)
    t0 = time.perf_counter()
    _execute(sweep, ctx, executor)
    result = Reproduction(spec.name, profile, nodes, sweep.done, sum(not o.reused for o in sweep.done.values()),
                          time.perf_counter() - t0)
    save(result, spec, store)
    return result


def _sweep(nodes: list[Node], spec: Spec, runtime: Runtime, say: Say) -> Sweep:
    """The nodes with their progress lines: started and finished (done / total, elapsed, an ETA from the nodes
    computed so far), and each node's dispatch time (handing it out to its result: process start, imports)."""
    done: dict[str, Outcome] = {}
    started: dict[str, float] = {}
    t0 = time.perf_counter()

    def status() -> str:
        elapsed = time.perf_counter() - t0
        computed = sum(not o.reused for o in done.values())
        eta = f"{elapsed / computed * (len(nodes) - len(done)):.0f} s" if computed else "?"
        return f"elapsed {elapsed:.0f} s, ETA ≤ {eta}"

    def starting(node: Node) -> None:
        started[node.key] = time.perf_counter()
        say(f"[{len(done)}/{len(nodes)}] running {node.key} | {status()}")

    def report(node: Node, outcome: Outcome) -> None:
        if node.key in started and outcome.split:
            ran = outcome.seconds * outcome.split.get("group", 1)  # a group's nodes ran together for all of it
            outcome.split["dispatch"] = round(max(0.0, time.perf_counter() - started[node.key] - ran), 3)
        done[node.key] = outcome
        what = "reused" if outcome.reused else f"{outcome.seconds:.0f} s"
        say(f"[{len(done)}/{len(nodes)}] {node.key}: {what} | {status()}")

    return Sweep(nodes, done, lambda ready: next_groups(ready, spec, runtime), starting, report)


def _execute(sweep: Sweep, ctx: NodeContext, executor: Executor) -> None:
    """Every node of ``sweep`` on ``executor``."""
    import os

    root = str(ctx.store.root.resolve())
    task = ctx.runtime.model_copy(update={"threads": ctx.runtime.threads or 1, "progress": False})
    if executor.kind == "ray":
        from wrapperlab.orchestration.executors.ray import run_ray

        run_ray(sweep, Job(ctx.spec, ctx.profile, root, task), address=executor.address)
    elif executor.kind == "submitit":
        from wrapperlab.orchestration.executors.submitit import SlurmOptions, run_submitit

        run_submitit(sweep, Job(ctx.spec, ctx.profile, root, task), executor.workers, executor.slurm or SlurmOptions())
    elif executor.workers <= 1:  # in this process: in graph order (parents first), or a stack of ready nodes at a time
        pending = list(sweep.nodes)
        while pending:
            ready = [n for n in pending if all(p in sweep.done for p in n.parents)]
            group = sweep.plan(ready)[0] if ctx.runtime.stack > 1 else ready[:1]
            for node in group:
                pending.remove(node)
                sweep.starting(node)
            for node, outcome in zip(group, run_group(group, ctx, sweep.done)):
                sweep.report(node, outcome)
    else:
        from wrapperlab.orchestration.executors.local import run_pool

        threads = ctx.runtime.threads or max(1, (os.cpu_count() or 1) // executor.workers)
        worker = ctx.runtime.model_copy(update={"threads": threads, "progress": False})
        run_pool(sweep, Job(ctx.spec, ctx.profile, str(ctx.store.root), worker), executor.workers)


def _json(result: Any) -> dict[str, Any]:
    """A node's typed result as the JSON the report reads back (a node without one: empty)."""
    return result.to_json() if result is not None else {}


def save(result: Reproduction, spec: Spec, store: RunStore) -> Path:
    """``<store>/reproductions/<spec>-<profile>.json``: every node's grid point and outcome (the report's input)."""
    import json

    from wrapperlab.files import atomic_write_text

    nodes = [{"key": n.key, "stage": n.stage, "point": n.point, "run_id": result.outcomes[n.key].run_id,
              "reused": result.outcomes[n.key].reused,
              "seconds": round(result.outcomes[n.key].seconds, 2), "split": result.outcomes[n.key].split,
              "data": _json(result.outcomes[n.key].result)} for n in result.nodes]
    path = store.root / "reproductions" / f"{spec.name}-{result.profile}.json"
    base = {stage: spec.base_for(result.profile, stage) for stage in registry.get(spec.kind).base_stages}
    options = spec.options.model_dump(mode="json") if spec.options is not None else {}  # the setting's own keys
    atomic_write_text(path, json.dumps({"spec": spec.name, "kind": spec.kind, "profile": result.profile,
                                        **options, "base": base,
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
