"""Run an expanded spec in-process: every node is a content-addressed run or cached analysis, so a second
call (or one after a kill) computes only what is missing and reports how much that was.

Executors (in-process, a local process pool, Ray) all call :func:`run_node`; the run store's locks keep
two workers from computing one run twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wrapperlab.errors import ConfigError
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
    seconds: float = 0.0  # wall time of the node where it ran


def _overrides(spec: Spec, profile: str, stage: str, point: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    out = spec.base_for(profile, stage)
    out.update({dotted: point[axis] for axis, dotted in names.items() if axis in point})
    return out


def run_node(node: Node, spec: Spec, profile: str, store: RunStore, done: dict[str, Outcome],
             runtime: Runtime, say: Say) -> Outcome:
    """Compute one node (its parents are in ``done``)."""
    t0 = time.perf_counter()
    parent = done[node.parents[0]] if node.parents else None
    compute = {"pcfg": _pcfg_node, "tracr": _tracr_node, "stories": _stories_node}[spec.kind]
    outcome = compute(node, spec, profile, store, parent, runtime, say)
    outcome.seconds = time.perf_counter() - t0
    return outcome


def _pcfg_node(node, spec, profile, store, parent, runtime, say) -> Outcome:
    from wrapperlab.analysis.probing import ProbeConfig
    from wrapperlab.analysis.pruning import PruneConfig
    from wrapperlab.experiments.analyses import probe_run, prune_run
    from wrapperlab.experiments.configs import PretrainRunConfig, finetune_config, pretrain_config, validated
    from wrapperlab.experiments.configs import profile as load_profile
    from wrapperlab.experiments.pipeline import finetune, pretrain
    from wrapperlab.experiments.reft import run_reft

    seed = node.point["seed"]
    if node.stage == "pretrain":
        cfg = pretrain_config(profile, _overrides(spec, profile, "pretrain", node.point, {"seed": "seed", "prior": "data.prior"}))
        stage = pretrain(cfg, store, runtime, say)
        return Outcome(stage.run.id, stage.reused, stage.result)
    if node.stage == "baseline":  # Scr.+FT's pretraining: the root's config, all prior mass on O_FT
        from wrapperlab.experiments.reft import never_pt_config

        root_cfg = validated(PretrainRunConfig, store.resolve(parent.run_id).config())
        operand = finetune_config(parent.run_id, profile, spec.base_for(profile, "finetune")).data.operand
        stage = pretrain(never_pt_config(root_cfg, operand), store, runtime, say)
        return Outcome(stage.run.id, stage.reused, stage.result)
    if node.stage == "finetune":
        names = {"seed": "seed", "lr": "train.lr", "c_tr": "data.c_tr"}
        stage = finetune(finetune_config(parent.run_id, profile, _overrides(spec, profile, "finetune", node.point, names)),
                         store, runtime, say)
        return Outcome(stage.run.id, stage.reused, stage.result)
    if node.stage == "prune":
        ks = tuple(node.options.get("ks") or (0, 1, 2, 3, 5, 10, 15, 20, 50))
        art = prune_run(store, parent.run_id, PruneConfig(ks=ks), n_eval=node.options.get("n_eval") or 1000,
                        seed=seed, say=say)
        return Outcome(parent.run_id, art.reused, art.data)
    if node.stage == "probe":
        iters = node.options.get("iters") or load_profile(profile).get("probe", {}).get("iters", 4000)
        art = probe_run(store, parent.run_id, ProbeConfig(iters=iters), seed=seed, say=say)
        return Outcome(parent.run_id, art.reused, art.data)
    if node.stage == "reft":
        result = run_reft(store, parent.run_id, profile, spec.base_for(profile, "reft") or None,
                          baselines=node.options.get("baselines", False), runtime=runtime, say=say)
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
                                    _overrides(spec, profile, "finetune", node.point, names))
        stage = tracr_finetune(cfg, store, runtime, say=say)
        return Outcome(stage.run.id, stage.reused, stage.result)
    if node.stage == "attention":
        art = attention_run(store, parent.run_id, seed=seed)
        return Outcome(parent.run_id, art.reused, art.data)
    if node.stage == "prune":
        art = weight_search_run(store, parent.run_id, seed=seed, say=say)
        return Outcome(parent.run_id, art.reused, art.data)
    if node.stage == "reft":
        cfg = tracr_reft_config(store.resolve(parent.run_id), profile, overrides=spec.base_for(profile, "reft"))
        stage = tracr_finetune(cfg, store, runtime, say=say, kind="tracr-reft")
        return Outcome(stage.run.id, stage.reused, stage.result)
    raise ValueError(f"unknown tracr stage {node.stage}")


def _stories_node(node, spec, profile, store, parent, runtime, say) -> Outcome:
    from wrapperlab.experiments.stories import (
        delete_config, pretrain_story_config, probe_story_run, reft_story_config, stories_stage,
    )

    seed = node.point["seed"]
    if node.stage == "probe":
        art = probe_story_run(store, parent.run_id, profile, seed=seed, say=say)
        return Outcome(parent.run_id, art.reused, art.data)
    if node.stage in ("pretrain", "control"):
        cfg = pretrain_story_config(profile, spec.base_for(profile, "pretrain"), seed=seed, control=node.stage == "control")
    elif node.stage == "finetune":
        cfg = delete_config(store, parent.run_id, profile, node.point["protocol"], node.point["lr"],
                            spec.base_for(profile, "finetune"))
    elif node.stage == "reft":
        cfg = reft_story_config(store, parent.run_id, profile, node.point["corpus"], spec.base_for(profile, "reft"))
    else:
        raise ValueError(f"unknown stories stage {node.stage}")
    stage = stories_stage(cfg, store, runtime, say)
    return Outcome(stage.run.id, stage.reused, stage.result)


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


EXECUTORS = ("local", "ray")


def reproduce(spec: Spec, profile: str, store: RunStore, seeds: int | None = None, runtime: Runtime = Runtime(),
              say: Say = print, workers: int = 1, executor: str = "local", address: str | None = None) -> Reproduction:
    """Run every node of ``spec`` once its parents are done, with one progress line per node started and
    finished (nodes done / total, the node, elapsed, an ETA from the nodes computed so far).

    ``executor="local"``: in this process (``workers=1``) or a process pool of ``workers``, each worker
    with ``cores // workers`` torch threads so that together they do not oversubscribe the machine.
    ``executor="ray"``: one Ray task per node (:mod:`wrapperlab.experiments.ray_executor`), on the
    cluster at ``address`` or a local Ray, each task asking for ``runtime.threads`` CPUs (default 1).
    """
    if executor not in EXECUTORS:
        raise ConfigError("executor", executor, f"one of {list(EXECUTORS)}")
    nodes = expand(spec, profile, seeds)
    done: dict[str, Outcome] = {}
    state = {"computed": 0, "finished": 0}
    t0 = time.perf_counter()

    def status() -> str:
        elapsed = time.perf_counter() - t0
        left = len(nodes) - state["finished"]
        eta = f"{elapsed / state['computed'] * left:.0f} s" if state["computed"] else "?"
        return f"elapsed {elapsed:.0f} s, ETA ≤ {eta}"

    def starting(node: Node) -> None:
        say(f"[{state['finished']}/{len(nodes)}] running {node.key} | {status()}")

    def report(node: Node, outcome: Outcome) -> None:
        done[node.key] = outcome
        state["finished"] += 1
        state["computed"] += not outcome.reused
        what = "reused" if outcome.reused else f"{outcome.seconds:.0f} s"
        say(f"[{state['finished']}/{len(nodes)}] {node.key}: {what} | {status()}")

    if executor == "ray":
        from wrapperlab.experiments.ray_executor import run_ray

        run_ray(nodes, spec, profile, store, runtime, report, address=address)
    elif workers <= 1:
        for node in nodes:
            starting(node)
            report(node, run_node(node, spec, profile, store, done, runtime, say))
    else:
        _run_pool(nodes, spec, profile, store, done, runtime, workers, starting, report)
    result = Reproduction(spec.name, profile, nodes, done, state["computed"], time.perf_counter() - t0)
    save(result, spec, store)
    return result


def save(result: Reproduction, spec: Spec, store: RunStore) -> Path:
    """``<store>/reproductions/<spec>-<profile>.json``: every node's grid point and outcome (the report's input)."""
    import json

    from wrapperlab.training.checkpoint import atomic_write_text

    nodes = [{"key": n.key, "stage": n.stage, "point": n.point, "run_id": result.outcomes[n.key].run_id,
              "reused": result.outcomes[n.key].reused,
              "seconds": round(result.outcomes[n.key].seconds, 2), "data": result.outcomes[n.key].data} for n in result.nodes]
    path = store.root / "reproductions" / f"{spec.name}-{result.profile}.json"
    base = {stage: spec.base_for(result.profile, stage) for stage in ("pretrain", "finetune", "reft")}
    atomic_write_text(path, json.dumps({"spec": spec.name, "kind": spec.kind, "profile": result.profile,
                                        "program": spec.program if spec.kind == "tracr" else None, "base": base,
                                        "computed": result.computed, "seconds": result.seconds, "nodes": nodes},
                                       indent=1, default=str) + "\n")
    return path


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


#: which ready node a free worker takes first: the ones that unblock others, then long ones, then short analyses
_RANK = {"pretrain": 0, "compile": 0, "control": 0, "finetune": 1, "baseline": 2, "reft": 3, "prune": 4, "probe": 4, "attention": 4}


def _run_pool(nodes, spec, profile, store, done, runtime, workers, starting, report) -> None:
    import multiprocessing
    import os
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // workers)
    worker_runtime = runtime.model_copy(update={"threads": runtime.threads or threads, "progress": False})
    pending = list(nodes)
    running: dict[Any, Node] = {}
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_die_with_parent) as pool:
        while pending or running:
            ready = [n for n in pending if all(p in done for p in n.parents)]
            for node in sorted(ready, key=lambda n: _RANK.get(n.stage, len(_RANK))):  # stable: graph order within a rank
                if len(running) >= workers:
                    break
                pending.remove(node)
                parents = {p: done[p] for p in node.parents}
                starting(node)
                running[pool.submit(_worker, node, spec, profile, str(store.root), parents, worker_runtime)] = node
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                report(running.pop(future), future.result())
