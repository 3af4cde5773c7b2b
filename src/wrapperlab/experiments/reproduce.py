"""Run an expanded spec in-process: every node is a content-addressed run or cached analysis, so a second
call (or one after a kill) computes only what is missing and reports how much that was.

Executors that spread nodes over processes or Ray workers build on :func:`run_node`; the run store's
locks already keep two workers from computing one run twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wrapperlab.experiments.pipeline import Say
from wrapperlab.experiments.spec import Node, Spec, expand
from wrapperlab.experiments.store import RunStore
from wrapperlab.training.config import Runtime


@dataclass
class Outcome:
    """What a node produced: the run (or analysed run) id, whether it already existed, and its data."""

    run_id: str
    reused: bool
    data: dict[str, Any] = field(default_factory=dict)


def _overrides(spec: Spec, stage: str, point: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    out = dict(spec.base.get(stage, {}))
    out.update({dotted: point[axis] for axis, dotted in names.items() if axis in point})
    return out


def run_node(node: Node, spec: Spec, profile: str, store: RunStore, done: dict[str, Outcome],
             runtime: Runtime, say: Say) -> Outcome:
    """Compute one node (its parents are in ``done``)."""
    parent = done[node.parents[0]] if node.parents else None
    if spec.kind == "pcfg":
        return _pcfg_node(node, spec, profile, store, parent, runtime, say)
    return _tracr_node(node, spec, profile, store, parent, runtime, say)


def _pcfg_node(node, spec, profile, store, parent, runtime, say) -> Outcome:
    from wrapperlab.analysis.probing import ProbeConfig
    from wrapperlab.analysis.pruning import PruneConfig
    from wrapperlab.experiments.analyses import probe_run, prune_run
    from wrapperlab.experiments.configs import finetune_config, pretrain_config
    from wrapperlab.experiments.configs import profile as load_profile
    from wrapperlab.experiments.pipeline import finetune, pretrain
    from wrapperlab.experiments.reft import run_reft

    seed = node.point["seed"]
    if node.stage == "pretrain":
        cfg = pretrain_config(profile, _overrides(spec, "pretrain", node.point, {"seed": "seed", "prior": "data.prior"}))
        stage = pretrain(cfg, store, runtime, say)
        return Outcome(stage.run.id, stage.reused, stage.result)
    if node.stage == "finetune":
        names = {"seed": "seed", "lr": "train.lr", "c_tr": "data.c_tr"}
        stage = finetune(finetune_config(parent.run_id, profile, _overrides(spec, "finetune", node.point, names)),
                         store, runtime, say)
        return Outcome(stage.run.id, stage.reused, stage.result)
    if node.stage == "prune":
        art = prune_run(store, parent.run_id, PruneConfig(ks=(0, 1, 2, 3, 5, 10, 15, 20, 50)), seed=seed, say=say)
        return Outcome(parent.run_id, art.reused, art.data)
    if node.stage == "probe":
        iters = load_profile(profile).get("probe", {}).get("iters", 4000)
        art = probe_run(store, parent.run_id, ProbeConfig(iters=iters), seed=seed, say=say)
        return Outcome(parent.run_id, art.reused, art.data)
    if node.stage == "reft":
        result = run_reft(store, parent.run_id, profile, baselines=node.options.get("baselines", False),
                          runtime=runtime, say=say)
        return Outcome(result.curves["reft"].run.id, all(c.reused for c in result.curves.values()), result.summary())
    raise ValueError(f"unknown pcfg stage {node.stage}")


def _tracr_node(node, spec, profile, store, parent, runtime, say) -> Outcome:
    from wrapperlab.experiments.tracr_runs import (
        attention_run, compile_config, compile_stage, tracr_finetune, tracr_finetune_config, tracr_reft_config,
        weight_search_run,
    )

    if node.stage == "compile":
        stage = compile_stage(compile_config(spec.program), store, say=say)
        return Outcome(stage.run.id, stage.reused, stage.result)
    seed = node.point["seed"]
    if node.stage == "finetune":
        names = {"seed": "seed", "lr": "train.lr", "c_tr": "data.c_tr", "noise_std": "noise_std"}
        cfg = tracr_finetune_config(store.resolve(parent.run_id), profile,
                                    _overrides(spec, "finetune", node.point, names))
        stage = tracr_finetune(cfg, store, runtime, say=say)
        return Outcome(stage.run.id, stage.reused, stage.result)
    if node.stage == "attention":
        art = attention_run(store, parent.run_id, seed=seed)
        return Outcome(parent.run_id, art.reused, art.data)
    if node.stage == "prune":
        art = weight_search_run(store, parent.run_id, seed=seed, say=say)
        return Outcome(parent.run_id, art.reused, art.data)
    if node.stage == "reft":
        stage = tracr_finetune(tracr_reft_config(store.resolve(parent.run_id), profile), store, runtime, say=say,
                               kind="tracr-reft")
        return Outcome(stage.run.id, stage.reused, stage.result)
    raise ValueError(f"unknown tracr stage {node.stage}")


@dataclass
class Reproduction:
    spec: str
    profile: str
    nodes: list[Node]
    outcomes: dict[str, Outcome]
    computed: int
    seconds: float


def _worker(node: Node, spec: Spec, profile: str, root: str, done: dict[str, Outcome], runtime: Runtime) -> Outcome:
    """Process-pool entry point (top level, so it pickles)."""
    return run_node(node, spec, profile, RunStore(root), done, runtime, say=lambda _: None)


def reproduce(spec: Spec, profile: str, store: RunStore, seeds: int | None = None, runtime: Runtime = Runtime(),
              say: Say = print, workers: int = 1) -> Reproduction:
    """Run every node of ``spec`` once its parents are done, with one progress line per finished node
    (nodes done / total, the node, elapsed, an ETA from the nodes computed so far).

    ``workers > 1`` runs ready nodes in a process pool, each worker with ``cores // workers`` torch threads
    so that the workers together do not oversubscribe the machine.
    """
    nodes = expand(spec, profile, seeds)
    done: dict[str, Outcome] = {}
    state = {"computed": 0, "finished": 0}
    t0 = time.perf_counter()

    def report(node: Node, outcome: Outcome, seconds: float) -> None:
        done[node.key] = outcome
        state["finished"] += 1
        state["computed"] += not outcome.reused
        elapsed = time.perf_counter() - t0
        left = len(nodes) - state["finished"]
        eta = elapsed / state["computed"] * left if state["computed"] else 0.0
        what = "reused" if outcome.reused else f"{seconds:.0f} s"
        say(f"[{state['finished']}/{len(nodes)}] {node.key}: {what} | elapsed {elapsed:.0f} s, ETA ≤ {eta:.0f} s")

    if workers <= 1:
        for node in nodes:
            t = time.perf_counter()
            report(node, run_node(node, spec, profile, store, done, runtime, say), time.perf_counter() - t)
    else:
        _run_pool(nodes, spec, profile, store, done, runtime, workers, report)
    result = Reproduction(spec.name, profile, nodes, done, state["computed"], time.perf_counter() - t0)
    save(result, spec, store)
    return result


def save(result: Reproduction, spec: Spec, store: RunStore) -> Path:
    """``<store>/reproductions/<spec>-<profile>.json``: every node's grid point and outcome (the report's input)."""
    import json

    from wrapperlab.training.checkpoint import atomic_write_text

    nodes = [{"key": n.key, "stage": n.stage, "point": n.point, "run_id": result.outcomes[n.key].run_id,
              "reused": result.outcomes[n.key].reused, "data": result.outcomes[n.key].data} for n in result.nodes]
    path = store.root / "reproductions" / f"{spec.name}-{result.profile}.json"
    atomic_write_text(path, json.dumps({"spec": spec.name, "kind": spec.kind, "profile": result.profile,
                                        "computed": result.computed, "seconds": result.seconds, "nodes": nodes},
                                       indent=1, default=str) + "\n")
    return path


def _run_pool(nodes, spec, profile, store, done, runtime, workers, report) -> None:
    import multiprocessing
    import os
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // workers)
    worker_runtime = runtime.model_copy(update={"threads": runtime.threads or threads, "progress": False})
    pending = list(nodes)
    running: dict[Any, tuple[Node, float]] = {}
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        while pending or running:
            for node in [n for n in pending if all(p in done for p in n.parents)]:
                if len(running) >= workers:
                    break
                pending.remove(node)
                parents = {p: done[p] for p in node.parents}
                future = pool.submit(_worker, node, spec, profile, str(store.root), parents, worker_runtime)
                running[future] = (node, time.perf_counter())
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                node, started = running.pop(future)
                report(node, future.result(), time.perf_counter() - started)
