"""``wrapperlab reproduce`` and ``wrapperlab report``: paper experiments from their specs, and the report over a
store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wrapperlab.cli.common import PROFILE_HELP, add_examples, positive, runtime, runtime_args, say
from wrapperlab.errors import ConfigError

DEFAULT_SNAPSHOTS = "docs/results"  # the committed snapshots the published blocks are checked against


def add_parsers(sub) -> None:
    from wrapperlab.orchestration.spec import shipped_specs  # no torch: the parser stays fast

    p = sub.add_parser("reproduce", help="run paper experiments from their specs (shipped names or YAML files)")
    p.add_argument("spec", nargs="+", help=f"shipped: {' | '.join(shipped_specs())}; or a spec file (YAML)")
    p.add_argument("--profile", default="quick", help=PROFILE_HELP)
    p.add_argument("--seeds", type=int, help="number of seeds (default: the spec's for this profile)")
    p.add_argument("--out", help="run store directory (default: --runs)")
    p.add_argument("--workers", type=int, default=1, help="local processes running ready nodes in parallel (default 1)")
    p.add_argument("--executor", default="local", choices=["local", "ray", "submitit"],
                   help="local (this process or --workers processes), ray (one task per run; pip install "
                        "'wrapperlab[ray]') or submitit (one Slurm job per ready run, --workers in flight; pip install "
                        "'wrapperlab[slurm]')")
    p.add_argument("--address", help="ray: a running cluster HOST:PORT (default: start a local Ray on 127.0.0.1)")
    p.add_argument("--cluster", default="auto", choices=["auto", "slurm", "local"],
                   help="submitit: slurm, local processes, or auto (Slurm where sbatch exists)")
    p.add_argument("--partition", help="submitit: the Slurm partition (default: the cluster's)")
    p.add_argument("--timeout-min", type=int, default=240, help="submitit: each job's time limit in minutes")
    p.add_argument("--stack", type=int, default=1,
                   help="local executor: train up to N ready fine-tunings as one stack (vmap over their stacked "
                        "weights; each run stored as if trained alone; docs/performance.md: no gain on CPU). "
                        "Default 1: alone")
    p.add_argument("--profile-time", action="store_true",
                   help="print where the computed nodes' time went, per stage: data, training, evaluation, I/O, "
                        "analysis, worker start (also saved per node in reproductions/*.json)")
    p.add_argument("--yes", action="store_true",
                   help="run a grid above the cap of 2,000 runs (grid points x seeds); without it such a grid is "
                        "refused with its size and estimated time")
    runtime_args(p)

    add_examples(sub, {"reproduce": [
        "wrapperlab reproduce pcfg-counter --workers 2             # the demo (make demo)",
        "wrapperlab reproduce pcfg-table5 --profile quick --workers 2 --profile-time",
        "wrapperlab reproduce tracr-counter stories-twist --profile test --runs /tmp/runs",
        "wrapperlab reproduce my-spec.yaml --profile paper --device cuda --executor ray",
        "wrapperlab reproduce pcfg-table5 --executor submitit --partition gpu --workers 64 --device cuda --runs /shared/runs"]})

    p = sub.add_parser("report", help="write the HTML/Markdown report and summary.json for a reproduction directory")
    p.add_argument("dir", nargs="?", help="the run store `reproduce` used (not with --check-docs)")
    p.add_argument("--docs", nargs="+", metavar="FILE",
                   help="also rewrite the marked blocks (<!-- wrapperlab:KIND SPEC/PROFILE -->) of these Markdown "
                        "files from summary.json: published numbers are generated, never typed")
    p.add_argument("--snapshots", metavar="DIR",
                   help="also write each reproduction's summary entry (what the blocks read) as DIR/SPEC-PROFILE.json "
                        "and DIR/by-precision/SPEC-PROFILE-PRECISION.json (commit docs/results/ so the blocks can be "
                        "checked); with --check-docs: where to read them (default "
                        f"{DEFAULT_SNAPSHOTS}); with --docs and no store: render the blocks from these snapshots alone "
                        "(after a change to how a block is written)")
    p.add_argument("--check-docs", nargs="*", metavar="FILE",
                   help="render every block of these files (default README.md and docs/*.md) from the committed "
                        "snapshots and exit 1 where one differs from the text; blocks without a snapshot are listed")
    add_examples(sub, {"report": ["wrapperlab report runs", "wrapperlab report runs --docs README.md docs/reproduce.md",
                                  f"wrapperlab report runs --docs README.md docs/reproduce.md --snapshots "
                                  f"{DEFAULT_SNAPSHOTS}", "wrapperlab report --check-docs",
                                  f"wrapperlab report --docs README.md docs/*.md --snapshots {DEFAULT_SNAPSHOTS}"]})


def cmd_reproduce(args) -> int:
    from wrapperlab.orchestration.reproduce import Executor, reproduce, time_table
    from wrapperlab.orchestration.spec import load_spec
    from wrapperlab.runs.profiles import profile
    from wrapperlab.runs.store import RunStore

    positive("seeds", args.seeds)
    positive("workers", args.workers)
    positive("stack", getattr(args, "stack", 1))
    if getattr(args, "stack", 1) > 64:
        raise ConfigError("stack", args.stack, "at most 64 runs per stack")
    specs = [load_spec(ref) for ref in args.spec]  # every spec is checked before anything runs
    profile(args.profile)  # so is the profile
    if args.executor == "ray":
        from wrapperlab.orchestration.executors.ray import import_ray

        import_ray()  # and the executor, before the store is touched
    slurm = None
    if args.executor == "submitit":
        from wrapperlab.orchestration.executors.submitit import SlurmOptions, import_submitit

        import_submitit()
        positive("timeout-min", args.timeout_min)
        slurm = SlurmOptions(args.cluster, args.partition, args.timeout_min)
    executor = Executor(args.executor, args.workers, args.address, slurm)
    store = RunStore(args.out or args.runs)
    for spec in specs:
        run_time = runtime(args).model_copy(update={"stack": getattr(args, "stack", 1)})
        result = reproduce(spec, args.profile, store, args.seeds, run_time, say=say, executor=executor,
                           yes=getattr(args, "yes", False))
        print(f"{spec.name} ({args.profile}): {len(result.nodes)} nodes, {result.computed} computed, "
              f"{len(result.nodes) - result.computed} reused, {result.seconds:.0f} s; runs in {store.root}")
        if getattr(args, "profile_time", False):
            print("\n".join(time_table(result)))
    return cmd_report(argparse.Namespace(dir=str(store.root)))


def cmd_report(args) -> int:
    import json

    from wrapperlab.report.docs import load_snapshots, update_docs, write_snapshots
    from wrapperlab.report.render import write_report

    docs, snapshots = getattr(args, "docs", None), getattr(args, "snapshots", None)  # reproduce passes only dir
    if getattr(args, "check_docs", None) is not None:
        if args.dir is not None or docs:
            raise ConfigError("check-docs", args.dir or docs, "no run store and no --docs (it reads the committed "
                                                              "snapshots, and writes nothing)")
        return _check_docs(args.check_docs, Path(snapshots or DEFAULT_SNAPSHOTS))
    if args.dir is None and docs and snapshots:  # the blocks re-rendered from the committed snapshots alone
        found = load_snapshots(Path(snapshots))
        if not found:
            raise ConfigError("snapshots", snapshots, "a directory of snapshots written by `report --snapshots`")
        counts = update_docs(found, [Path(d) for d in docs], strict=False)
        print("docs (from snapshots): " + ", ".join(f"{path} ({n} blocks)" for path, n in counts.items()))
        return 0
    if args.dir is None:
        raise ConfigError("dir", None, "the run store `reproduce` used (or --check-docs, or --docs with --snapshots)")
    paths = write_report(args.dir)
    print(f"report: {paths['html']}\nmarkdown: {paths['markdown']}\nsummary: {paths['summary']}")
    summary = json.loads(paths["summary"].read_text()) if docs or snapshots else {}
    if docs:
        counts = update_docs(summary, docs)
        print("docs: " + ", ".join(f"{path} ({n} blocks)" for path, n in counts.items()))
    if snapshots:
        print("snapshots: " + ", ".join(str(p) for p in write_snapshots(summary, Path(snapshots))))
    return 0


def _check_docs(files: list[str], snapshots: Path) -> int:
    """`report --check-docs`: 1 where a block differs from what the committed snapshots give."""
    from wrapperlab.report.docs import check_docs, load_snapshots

    paths = [Path(f) for f in files] or [Path("README.md"), *sorted(Path("docs").glob("*.md"))]
    found = check_docs(paths, load_snapshots(snapshots))
    for block in found.unchecked:
        print(f"not checked (no snapshot in {snapshots}): {block}", file=sys.stderr)
    for block in found.differing:
        print(f"differs from its snapshot: {block}", file=sys.stderr)
    print(f"check-docs: {found.checked} blocks rendered, {len(found.differing)} differ, {len(found.unchecked)} "
          f"without a snapshot")
    return 1 if found.differing else 0


def reproduce_shortcut(spec: str, args) -> int:
    """A verb that runs one shipped spec (``demo``: pcfg-counter; ``tracr study``: tracr-counter)."""
    full = argparse.Namespace(**{**vars(args), "spec": [spec], "out": None, "executor": "local", "address": None,
                                 "yes": False})
    return cmd_reproduce(full)


COMMANDS = {"reproduce": cmd_reproduce, "report": cmd_report}
