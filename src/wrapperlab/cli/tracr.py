"""``wrapperlab tracr ...``: compile RASP programs, run them, fine-tune and reverse-fine-tune them.

Only ``compile`` imports JAX; every other verb works from the stored compiled model.
"""

from __future__ import annotations

import argparse
from typing import Any

from wrapperlab.cli.common import (
    PROFILE_HELP,
    add_examples,
    add_shortcut_args,
    key_value,
    runtime,
    runtime_args,
    say,
    seed,
)
from wrapperlab.errors import ConfigError


def add_parsers(sub) -> None:
    """Register ``tracr`` and its verbs on the top-level subparsers."""
    tracr = sub.add_parser("tracr", help="Tracr-compiled programs: compile, run, finetune, reft, eval")
    verbs = tracr.add_subparsers(dest="verb", required=True, parser_class=type(tracr))

    p = verbs.add_parser("compile", help="compile a RASP program (needs the tracr extra) and store it as a run")
    p.add_argument("program", help="counter | max-identifier | length | reverse | hist | sort_unique | frac_prevs")
    p.add_argument("--vocab", help="input letters, e.g. abcdefghij (default: the program's)")
    p.add_argument("--max-seq-len", type=int, help="longest input (default: the program's)")
    p.add_argument("--causal", action="store_true", help="compile with causal attention")
    p.add_argument("--runs", default="runs", help="run store directory (default: ./runs)")

    p = verbs.add_parser("run", help="decoded outputs of a tracr run for inputs given as strings of letters")
    p.add_argument("run")
    p.add_argument("inputs", nargs="+", help="e.g. abcaab")
    p.add_argument("--runs", default="runs")

    for name, help_ in (("finetune", "fine-tune a compiled model (noise, SGD+momentum, warm-up + cosine)"),
                        ("reft", "reverse fine-tuning: train a tracr fine-tune back on the compiled task")):
        p = verbs.add_parser(name, help=help_)
        p.add_argument("parent", help="a tracr-compile run (finetune) or tracr-finetune run (reft)")
        p.add_argument("--profile", default="quick", help=PROFILE_HELP)
        p.add_argument("--lr", help="a number or L, M, S, VS = 1e-1, 1e-2, 1e-3, 1e-4")
        p.add_argument("--seed", type=seed)
        p.add_argument("--iters", type=int)
        if name == "finetune":
            p.add_argument("--c-tr", type=float, help="share of training inputs with count(b) = count(a) + q")
            p.add_argument("--noise", type=float, help="std of the Gaussian noise added to the compiled weights")
            p.add_argument("--ft", help="O_FT: the letter (Counter) or rank (Max-identifier) asked for")
        p.add_argument("--set", dest="overrides", action="append", type=key_value, default=[], metavar="KEY=VALUE")
        runtime_args(p)

    p = verbs.add_parser("maps", help="attention patterns and MLP writes (residual-basis labels) for one input; PNG")
    p.add_argument("run")
    p.add_argument("input", help="letters, e.g. abcabba")
    p.add_argument("--runs", default="runs")

    p = verbs.add_parser("noise", help="the compiled Counter's accuracy under Gaussian weight noise of several scales")
    p.add_argument("--profile", default="quick")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--runs", default="runs")

    p = verbs.add_parser("study", help="the Counter experiment (= reproduce tracr-counter): FT grid, attention, "
                                       "single-weight pruning, reFT, and the report")
    add_shortcut_args(p)

    p = verbs.add_parser("eval", help="accuracies of a tracr run against O_PT and O_FT, floors, per-value breakdown")
    p.add_argument("run")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--runs", default="runs")
    add_examples(verbs, {
        "compile": ["wrapperlab tracr compile counter", "wrapperlab tracr compile max-identifier --vocab abcdef"],
        "run": ["wrapperlab tracr run tracr-compile-5be1 abcaab bbc"],
        "finetune": ["wrapperlab tracr finetune tracr-compile-5be1 --lr M --c-tr 1.0"],
        "reft": ["wrapperlab tracr reft tracr-finetune-77d0 --lr S"],
        "maps": ["wrapperlab tracr maps tracr-finetune-77d0 abcabba"],
        "noise": ["wrapperlab tracr noise --seeds 3"],
        "study": ["wrapperlab tracr study --workers 2"],
        "eval": ["wrapperlab tracr eval tracr-finetune-77d0 --n 500"],
    })


def cmd_tracr(args) -> int:
    from wrapperlab.runs.store import RunStore

    store = RunStore(args.runs)
    if args.verb == "compile":
        return _compile(args, store, say)
    if args.verb == "run":
        return _run(args, store)
    if args.verb == "eval":
        return _eval(args, store)
    if args.verb == "maps":
        return _maps(args, store)
    if args.verb == "study":
        from wrapperlab.cli.reproduce import reproduce_shortcut

        return reproduce_shortcut("tracr-counter", args)
    if args.verb == "noise":
        return _noise(args, store)
    return _train(args, store, runtime(args), say)


def _compile(args, store, say) -> int:
    from wrapperlab.settings.tracr.stages import compile_config, compile_stage

    overrides: dict[str, Any] = {"causal": args.causal}
    if args.vocab:
        overrides["vocab"] = sorted(set(args.vocab))
    if args.max_seq_len is not None:
        overrides["max_seq_len"] = args.max_seq_len
    stage = compile_stage(compile_config(args.program, overrides), store, say=say)
    r = stage.result
    print(f"run {stage.run.id}: {r['program']}, {r['n_layers']} layers, d_model {r['d_model']}, "
          f"d_mlp {r['d_mlp']}, head dim {r['head_dim']}, {r['params']} parameters, "
          f"{r['residual_labels']} labelled residual directions")
    return 0


def _run(args, store) -> int:
    from wrapperlab.settings.tracr.stages import compiled_of

    compiled = compiled_of(store.resolve(args.run))
    for text, out in zip(args.inputs, compiled.run([list(t) for t in args.inputs])):
        shown = out[1] if compiled.answer == "index1" and len(out) > 1 else out
        print(f"{text}\t{shown}" + ("\t(answer at index 1; all positions: " + str(out) + ")" if compiled.answer == "index1" else ""))
    return 0


def _eval(args, store) -> int:
    from wrapperlab.runs.profiles import validated
    from wrapperlab.settings.tracr.evaluate import tracr_accuracies, tracr_test_sets
    from wrapperlab.settings.tracr.stages import TracrFinetuneConfig, compiled_of, data_for

    run = store.resolve(args.run)
    if run.kind == "tracr-compile":
        raise ConfigError("run", run.id, "a tracr-finetune or tracr-reft run (its data settings define O_PT/O_FT)")
    cfg = validated(TracrFinetuneConfig, run.config())
    compiled = compiled_of(run)
    data = data_for(compiled, cfg.data)
    acc = tracr_accuracies(compiled.model(), data, tracr_test_sets(data, args.n, args.seed), detail=True)
    _print_accuracies(acc)
    return 0


def _train(args, store, runtime, say) -> int:
    from wrapperlab.settings.tracr.stages import tracr_finetune, tracr_finetune_config, tracr_reft_config

    parent = store.resolve(args.parent, field="parent")
    overrides: dict[str, Any] = {}
    for attr, key in (("seed", "seed"), ("iters", "train.iters"), ("c_tr", "data.c_tr"), ("noise", "noise_std"),
                      ("ft", "data.ft")):
        if getattr(args, attr, None) is not None:
            overrides[key] = getattr(args, attr)
    if args.verb == "finetune":
        if parent.kind != "tracr-compile":
            raise ConfigError("parent", parent.id, "a tracr-compile run")
        if args.lr is not None:
            overrides["train.lr"] = args.lr
        cfg = tracr_finetune_config(parent, args.profile, {**overrides, **dict(args.overrides)})
    else:
        if parent.kind not in ("tracr-finetune", "tracr-reft"):
            raise ConfigError("parent", parent.id, "a tracr-finetune run (reFT reverses a fine-tuning)")
        cfg = tracr_reft_config(parent, args.profile, args.lr)
        extra = {**overrides, **dict(args.overrides)}
        if extra:
            from wrapperlab.runs.profiles import apply_overrides, validated
            from wrapperlab.settings.tracr.stages import TracrFinetuneConfig

            cfg = validated(TracrFinetuneConfig, apply_overrides(cfg.model_dump(mode="json"), extra))
    stage = tracr_finetune(cfg, store, runtime, say=say, kind=f"tracr-{args.verb}")
    print(f"run {stage.run.id} ({stage.result['steps']} steps, {stage.result['train_seconds']:.0f} s)")
    _print_accuracies(stage.result["after"], stage.result["before"])
    return 0


def _print_accuracies(after: dict, before: dict | None = None) -> None:
    from wrapperlab.report.tables import text_table

    columns = [("model", "", "s")] + [
        (f"{k}_{t}", f"{label} C_Te={t[-1]} %", "pct")
        for t in ("cte0", "cte1")
        for k, label in (("acc_pt", "O_PT"), ("acc_ft", "O_FT"), ("shortcut", "O_PT+q"), ("floor_pt", "floor O_PT"))
    ]
    rows = ([{"model": "before", **before}] if before else []) + [{"model": "after" if before else "model", **after}]
    print(text_table(rows, columns))
    for key in sorted(k for k in after if k.startswith("by_value_pt")):
        cells = ", ".join(f"{v}: {100 * a:.0f}% (n={n})" for v, (a, n) in after[key].items())
        print(f"{key.replace('by_value_', 'by true value, ')}: {cells}")


def _noise(args, store) -> int:
    """The noise calibration behind ``noise_std`` (App. C.1 adds N(0, std) to the compiled weights)."""
    from wrapperlab.settings.tracr.stages import compile_config, compile_stage, noise_sweep, tracr_finetune_config

    if args.seeds <= 0:
        raise ConfigError("seeds", args.seeds, "a positive integer")
    compiled = compile_stage(compile_config("counter"), store, say=say)
    data = tracr_finetune_config(compiled.run, args.profile).data
    sweep = noise_sweep(compiled.run, data, seeds=list(range(args.seeds)))
    print("Compiled Counter under weight noise: Acc O_PT (C_Te=0) %, per seed")
    for std, accs in sweep.items():
        print(f"  std {std:>6}: " + " / ".join(f"{100 * a:.1f}" for a in accs))
    return 0


def _maps(args, store) -> int:
    from wrapperlab.report.figures.tracr import tracr_maps_figure
    from wrapperlab.settings.tracr.analysis import top_writes, tracr_maps
    from wrapperlab.settings.tracr.stages import compiled_of

    run = store.resolve(args.run)
    compiled = compiled_of(run)
    tokens = compiled.encode([list(args.input)])[0]
    names = [str(compiled.input_vocab[t]) for t in tokens]
    maps = tracr_maps(compiled.model(), tokens, names, compiled.residual_labels)
    safe = "".join(ch for ch in args.input if ch.isalnum())[:40]
    path = tracr_maps_figure(maps, run.path / "analysis" / f"tracr-maps-{safe}.png")
    answer = 2 if compiled.answer == "index1" else len(tokens) - 1
    print(f"output: {compiled.run([list(args.input)])[0]}")
    for b, writes in enumerate(top_writes(maps, answer)):
        attn = maps["patterns"][b][0][answer]
        top = sorted(range(len(names)), key=lambda i: -attn[i])[:3]
        print(f"block {b}: position {answer} attends to " + ", ".join(f"{names[i]}@{i} {attn[i]:.2f}" for i in top)
              + "; MLP writes " + (", ".join(f"{label} {v:+.2f}" for label, v in writes) or "nothing"))
    print(f"figure: {path}")
    return 0


# -- the general analysis verbs, on tracr runs --------------------------------------------------------


def analyse(command: str, args, run) -> int:
    """``prune`` / ``attention`` / ``reft`` / ``eval`` / ``diff`` on a tracr run, through the tracr tools (cli/main.py
    routes a tracr run here)."""
    from wrapperlab.runs.store import RunStore

    store = RunStore(args.runs)
    if command == "eval":
        return _eval(argparse.Namespace(run=run.id, n=args.n, seed=args.seed), store)
    if command == "reft":
        args.parent, args.verb = run.id, "reft"
        return _train(args, store, runtime(args), say)
    if command == "diff":
        return _diff(args, store)
    if command == "resume":
        raise ConfigError("run", run.id, "a PCFG run: re-run the tracr command that started this one to resume it")
    if command == "prune":
        return _prune(run, store, say)
    if command == "attention":
        return _attention(run, store)
    raise ConfigError("run", run.id, f"a PCFG run: `{command}` has no Tracr form (use `wrapperlab tracr maps`)")


def _prune(run, store, say) -> int:
    from wrapperlab.settings.tracr.stages import weight_search_run

    result = weight_search_run(store, run.id, say=say).data
    base = result["baseline"]
    print(f"{run.id}: Acc O_PT C_Te=0 {100 * base['acc_pt_cte0']:.1f} %, constant-output floor "
          f"{100 * result['floor_pt_cte0']:.1f} %; {result['candidates']} weights with |w| > {result['min_abs']} tried")
    for w in result["best"]:
        print(f"  zero {w['name']:<55} -> O_PT C_Te=0 {100 * w['acc_pt_cte0']:5.1f} %, C_Te=1 {100 * w['acc_pt_cte1']:5.1f} %,"
              f" O_FT C_Te=1 {100 * w['acc_ft_cte1']:5.1f} %; predicted {w['histogram']}")
    for g in result.get("greedy", []):
        print(f"  greedy k={g['k']}: O_PT C_Te=0 {100 * g['acc_pt_cte0']:.1f} % (+ {g['weights'][-1]})")
    return 0


def _attention(run, store) -> int:
    from wrapperlab.settings.tracr.stages import attention_run

    data = attention_run(store, run.id).data
    print(f"attention from the answer position, mean over {data['n']} uncorrelated inputs (before -> after FT):")
    for b, (before, after) in enumerate(zip(data["before"], data["after"])):
        print(f"  block {b}: " + ", ".join(f"{k} {100 * before[k]:.0f} -> {100 * after[k]:.0f} %" for k in before))
    print("patterns and MLP writes for one input: wrapperlab tracr maps RUN INPUT")
    return 0


def _diff(args, store) -> int:
    from wrapperlab.analysis.weight_diff import as_dicts, weight_diff
    from wrapperlab.report.tables import text_table
    from wrapperlab.settings.tracr.stages import compiled_of

    a, b = (compiled_of(store.resolve(r)) for r in (args.run_a, args.run_b))
    rows = as_dicts(weight_diff(a.model(), b.model()))
    print(text_table(rows, [("name", "matrix", "s"), ("rel_change", "|dW|/|W|", "g"), ("effective_rank", "eff. rank", "g"),
                            ("top1_energy", "top-1 %", "pct")]))
    return 0


COMMANDS = {"tracr": cmd_tracr}
