"""What every executor is handed: a :class:`Sweep` (the nodes, the outcomes so far, the order ready nodes are taken
in, the progress hooks) and a job — a picklable callable ``job(group, parents) -> outcomes`` that computes one group
of nodes. Executors never import the runner: it hands them what they run (no import circle).

:func:`schedule` is the dispatch loop the local pool and the submitit executor share: ready nodes to free slots, at
most ``slots`` jobs at a time, until every node is done (Ray instead takes the whole graph with its dependencies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from wrapperlab.settings.graph import Node, Outcome
from wrapperlab.training.config import Runtime


class Job(Protocol):
    """What a worker runs (picklable): ``job(group, parents)`` computes a group of nodes (one, or a stack) from their
    parents' outcomes, with ``runtime`` (its resources: threads, device) over the store at ``root``; ``name`` names
    the sweep (Slurm job names)."""

    runtime: Runtime
    root: str

    @property
    def name(self) -> str: ...

    def __call__(self, group: list[Node], parents: dict[str, Outcome]) -> list[Outcome]: ...


@dataclass
class Sweep:
    """A reproduction's nodes as an executor sees them: ``plan(ready)`` orders ready nodes into groups (the setting's
    stage ranks, stackable nodes gathered), ``starting`` / ``report`` are called as each node starts and finishes
    (``report`` also records its outcome in ``done``)."""

    nodes: list[Node]
    done: dict[str, Outcome]
    plan: Callable[[list[Node]], list[list[Node]]]
    starting: Callable[[Node], None]
    report: Callable[[Node, Outcome], None]


def schedule(sweep: Sweep, slots: int, submit: Callable[[list[Node], dict[str, Outcome]], Any],
             wait_any: Callable[[list[Any]], Iterable[Any]], result: Callable[[Any], list[Outcome]]) -> None:
    """Hand ready nodes to an executor until every node is done. ``submit(group, parents)`` starts a job and returns
    its handle, ``wait_any(handles)`` the finished ones, ``result(handle)`` the group's outcomes (raising what the job
    raised)."""
    pending = list(sweep.nodes)
    running: dict[Any, list[Node]] = {}
    while pending or running:
        ready = [n for n in pending if all(p in sweep.done for p in n.parents)]
        for group in sweep.plan(ready):
            if len(running) >= slots:
                break
            parents = {p: sweep.done[p] for node in group for p in node.parents}
            for node in group:
                pending.remove(node)
                sweep.starting(node)
            running[submit(group, parents)] = group
        if not running:
            raise RuntimeError(f"no node is ready, none is running and {len(pending)} wait: the graph is not a DAG")
        for handle in wait_any(list(running)):
            for node, outcome in zip(running.pop(handle), result(handle)):
                sweep.report(node, outcome)
