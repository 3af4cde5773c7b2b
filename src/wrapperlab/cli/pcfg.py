"""``wrapperlab`` verbs of the PCFG setting: pretrain, finetune, data, demo, prune-study — and the general run verbs
(eval, prune, probe, attention, diff, reft, resume) in their PCFG form. Parse, validate, call one function, print."""

from __future__ import annotations

import json

from wrapperlab.cli.common import (
    COMMON,
    Parser,
    add_examples,
    add_shortcut_args,
    analysis_device_arg,
    check_device,
    emit,
    int_list,
    overrides,
    positive,
    run_args,
    runtime,
    runtime_args,
    say,
    seed,
)
from wrapperlab.errors import ConfigError


def add_parsers(sub) -> None:
    """The PCFG verbs, and the general verbs that take a run of any setting (eval, prune, probe, attention, diff,
    reft, resume: routed by the run's setting in cli/main.py)."""
    _training_verbs(sub)
    _analysis_verbs(sub)
    _examples(sub)
    _data_verbs(sub)


def _training_verbs(sub) -> None:
    p = sub.add_parser("pretrain", help="pretrain a GPT on the PCFG tasks")
    p.add_argument("--prior", help="operand prior: low | 0.99 | medium | 0.7 | high | 'pa,pb,pc'")
    p.add_argument("--window", type=int, help="terminals per string (paper: 250)")
    p.add_argument("--tasks", help="comma-separated task families (default: the profile's; quick: count)")
    run_args(p)

    p = sub.add_parser("finetune", help="fine-tune a run on one (task, operand) pair with a spurious correlation")
    p.add_argument("parent", help="run id, id prefix, or run directory")
    p.add_argument("--task", choices=["count", "index"])
    p.add_argument("--operand", help="O_FT (default b)")
    p.add_argument("--pt-operand", help="O_PT (default a)")
    p.add_argument("--c-tr", type=float, help="fraction of correlated training samples, in [0, 1]")
    p.add_argument("--q", type=int, help="offset r(x,O_FT) - r(x,O_PT) of correlated samples (default 1)")
    p.add_argument("--mix-pt", type=float, help="fraction of each batch drawn from the pretraining mix (e.g. 0.5, 0.1, 0.001)")
    p.add_argument("--randft", action="store_true",
                   help="randFT: ask for O_PT but label with the answer for O_FT (trains the capability 'away')")
    run_args(p)

    p = sub.add_parser("resume", help="continue an interrupted run from its last checkpoint")
    p.add_argument("run", help="run id or directory")
    runtime_args(p)



def _analysis_verbs(sub) -> None:
    p = sub.add_parser("eval", help="accuracy per (task, operand); the four fine-tuning numbers for a fine-tuned run")
    p.add_argument("run", help="run id, id prefix, or run directory")
    p.add_argument("--n", type=int, default=1000, help="samples per pair (default 1000)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--runs", default="runs")
    p.add_argument("--device", default="cpu")

    p = sub.add_parser("demo", help="the Counter experiment (= reproduce pcfg-counter): pretrain, fine-tune, prune, "
                                     "probe, reFT vs Scr.+FT over seeds, and the report")
    add_shortcut_args(p)

    p = sub.add_parser("prune", help="gradient x weight pruning of a fine-tuned run: accuracy vs units pruned")
    p.add_argument("run", help="a fine-tuned run (id, prefix or directory)")
    p.add_argument("--unit", choices=["rows", "mlp_hidden", "weights"], default="rows",
                   help="rows of weight matrices (paper, default) | MLP hidden units | single weights")
    p.add_argument("--matrices", help="comma-separated subset of attn.qkv,attn.out,mlp.fc_in,mlp.fc_out (default all)")
    p.add_argument("--saliency", choices=["signed", "absolute"], default="signed")
    p.add_argument("--samples", type=int, default=512, help="pretraining-task samples for the gradient")
    p.add_argument("--ks", help="numbers of units to prune (comma-separated; default: PruneConfig's, 0-20)")
    p.add_argument("--n", type=int, default=1000, help="test samples per accuracy")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--runs", default="runs")
    analysis_device_arg(p)

    p = sub.add_parser("probe", help="linear probes for the counts of O_PT and O_FT after every block")
    p.add_argument("run", help="run id, prefix or directory")
    p.add_argument("--iters", type=int, help="probe training steps (default: ProbeConfig's, the paper's 4000)")
    p.add_argument("--prompt", choices=["pt", "ft"], default="pt", help="which operand the inputs ask about")
    p.add_argument("--n-train", type=int, help="probe training samples (default: ProbeConfig's)")
    p.add_argument("--n-test", type=int, help="probe test samples (default: ProbeConfig's)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--runs", default="runs")
    analysis_device_arg(p)

    p = sub.add_parser("attention", help="attention and MLP maps of a run beside another (default: its pretrained root)")
    p.add_argument("run", help="run id, prefix or directory")
    p.add_argument("--against", help="the run to compare with (default: the pretraining run it descends from)")
    p.add_argument("--n", type=int, default=300, help="inputs averaged for the attention masses")
    p.add_argument("--example", type=int, default=0, help="which input to draw")
    p.add_argument("--text", help="your own window of a/b/c terminals (exactly the run's window length)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--runs", default="runs")
    analysis_device_arg(p)

    p = sub.add_parser("diff", help="per-matrix weight change from RUN_A to RUN_B (relative size, effective rank)")
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--runs", default="runs")
    analysis_device_arg(p)

    p = sub.add_parser("reft", help="reverse fine-tuning: train a fine-tuned run back on the pretraining question")
    p.add_argument("run", help="a fine-tuned run (id, prefix or directory)")
    p.add_argument("--baselines", action="store_true",
                   help="also Scr.+FT (pretrained on O_FT only; pretrains it if missing) and Scr. (random init)")
    run_args(p)

    p = sub.add_parser("prune-study", help="pruning variants (unit x saliency x pretraining) over seeds, one table")
    p.add_argument("--profile", default="quick")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--lr", default="M", help="fine-tuning lr of the pruned models (default M)")
    p.add_argument("--c-tr", type=float, default=1.0)
    runtime_args(p)


def _examples(sub) -> None:
    add_examples(sub, {
        "pretrain": ["wrapperlab pretrain --profile quick", "wrapperlab pretrain --profile test --iters 50 --prior high",
                     "wrapperlab pretrain --set train.lr=3e-4 --set model.n_layers=4"],
        "finetune": ["wrapperlab finetune pretrain-0d4b --lr M --c-tr 1.0",
                     "wrapperlab finetune pretrain-0d4b --task index --operand b --c-tr 0.5 --q 2"],
        "resume": ["wrapperlab resume finetune-1ea5"],
        "eval": ["wrapperlab eval finetune-1ea5", "wrapperlab eval pretrain-0d4b --n 200 --json"],
        "demo": ["wrapperlab demo --workers 2"],
        "prune": ["wrapperlab prune finetune-1ea5", "wrapperlab prune finetune-1ea5 --unit mlp_hidden --ks 0,5,15"],
        "probe": ["wrapperlab probe finetune-1ea5 --iters 2000"],
        "attention": ["wrapperlab attention finetune-1ea5 --example 3"],
        "diff": ["wrapperlab diff pretrain-0d4b finetune-1ea5"],
        "reft": ["wrapperlab reft finetune-1ea5 --baselines"],
        "prune-study": ["wrapperlab prune-study --profile quick --seeds 3"],
    })


def _data_verbs(sub) -> None:
    data = sub.add_parser("data", help="dump generated data as JSON lines").add_subparsers(
        dest="what", required=True, parser_class=Parser
    )
    p = data.add_parser("derivations", help="full PCFG derivations")
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--grammar", default="cfg3b")
    for name, help_ in (("sample", "pretraining samples"), ("finetune", "fine-tuning samples with planted correlations")):
        p = data.add_parser(name, help=help_)
        p.add_argument("--n", type=int, default=10)
        p.add_argument("--seed", type=seed, default=0)
        p.add_argument("--window", type=int, default=250)
        if name == "sample":
            p.add_argument("--task", help="task family (default: drawn uniformly)")
            p.add_argument("--operand", help="operand (default: drawn from the prior)")
            p.add_argument("--prior", default="low")
            p.add_argument("--capability", action="store_true",
                           help="write prompt/answer lines for `wrapperlab audit` (the tokens space-separated)")
        else:
            p.add_argument("--task", default="count")
            p.add_argument("--operand", default="b")
            p.add_argument("--pt-operand", default="a")
            p.add_argument("--c-tr", type=float, default=1.0)
            p.add_argument("--q", type=int, default=1)





def cmd_pretrain(args) -> int:
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.pcfg.configs import pretrain_config
    from wrapperlab.settings.pcfg.stages import pretrain

    if args.tasks is not None:
        args.tasks = [t.strip() for t in args.tasks.split(",")]
    sets = overrides(args, {**COMMON, "prior": "data.prior", "window": "data.window", "tasks": "data.tasks"})
    cfg = pretrain_config(args.profile, sets)
    stage = pretrain(cfg, RunStore(args.runs), runtime(args), say=say)
    _print_pretrain(stage.run.id, stage.result)
    return 0


def cmd_finetune(args) -> int:
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.pcfg.configs import RANDFT_DATA, finetune_config
    from wrapperlab.settings.pcfg.stages import finetune

    store = RunStore(args.runs)
    parent = store.resolve(args.parent, field="parent")
    sets = overrides(
        args,
        {**COMMON, "task": "data.task", "operand": "data.operand", "pt_operand": "data.pt_operand",
         "c_tr": "data.c_tr", "q": "data.q", "mix_pt": "data.mix_pt"},
    )
    if args.randft:
        sets.update(RANDFT_DATA)
    cfg = finetune_config(parent.id, args.profile, sets)
    stage = finetune(cfg, store, runtime(args), say=say, kind="randft" if args.randft else "finetune")
    _print_finetune([{"model": stage.run.id, "lr": cfg.train.lr, "c_tr": cfg.data.c_tr, **stage.result["after"]}],
                    stage.result["before"])
    return 0


def cmd_resume(args, run) -> int:
    from wrapperlab.runs.profiles import validated
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.pcfg.configs import FinetuneRunConfig, PretrainRunConfig
    from wrapperlab.settings.pcfg.stages import FINETUNE_KINDS, finetune, pretrain

    store = RunStore(run.path.parent)
    if run.kind == "pretrain":
        stage = pretrain(validated(PretrainRunConfig, run.config()), store, runtime(args), say=say)
        _print_pretrain(stage.run.id, stage.result)
    elif run.kind in FINETUNE_KINDS:
        cfg = validated(FinetuneRunConfig, run.config())
        stage = finetune(cfg, store, runtime(args), say=say, kind=run.kind)
        _print_finetune([{"model": stage.run.id, "lr": cfg.train.lr, "c_tr": cfg.data.c_tr, **stage.result["after"]}],
                        stage.result["before"])
    else:
        raise ConfigError("run", args.run, f"a pretrain run or one of {FINETUNE_KINDS}")
    return 0


def cmd_eval(args) -> int:
    from wrapperlab.report.tables import text_table
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.pcfg.stages import evaluate_run

    positive("n", args.n)
    check_device(args.device)
    result = evaluate_run(RunStore(args.runs).resolve(args.run), n=args.n, seed=args.seed, device=args.device)
    if args.json:
        print(json.dumps(result))
        return 0
    rows = [{"pair": k, "acc": v} for k, v in result["accuracy"].items()]
    print(text_table(rows, [("pair", "task/operand", "s"), ("acc", "accuracy %", "pct")]))
    if "finetune" in result:
        print()
        _print_finetune([{"model": result["run"], **result["finetune"]}])
    return 0


def cmd_prune(args) -> int:
    from wrapperlab.analysis.pruning import PruneConfig
    from wrapperlab.report.figures.single import prune_figure
    from wrapperlab.report.tables import text_table
    from wrapperlab.runs.profiles import validated
    from wrapperlab.runs.stage import Lab
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.pcfg.analyses import prune_run

    positive("n", args.n)
    spec = {"unit": args.unit, "saliency": args.saliency, "n_samples": args.samples,
            **({"ks": int_list("ks", args.ks)} if args.ks is not None else {})}
    if args.matrices:
        spec["matrices"] = [m.strip() for m in args.matrices.split(",")]
    cfg = validated(PruneConfig, spec)
    check_device(args.device)
    art = prune_run(Lab(RunStore(args.runs), say, args.device), args.run, cfg, n_eval=args.n, seed=args.seed)
    prune_figure(art.data, art.png_path)
    rows = [{"k": k, **{m: v[i] for m, v in art.data["curves"].items()}} for i, k in enumerate(art.data["ks"])]
    print(text_table(rows, [("k", "K", "s")] + [(key, head, "pct") for key, head, _ in _FT_METRICS]))
    print(f"smallest K restoring Acc O_PT(C_Te=0) to half its pretrained value: {art.data['k_to_half']}")
    top = ", ".join(f"B{u['block']} {u['matrix']}{' ' + u['qkv'] if 'qkv' in u else ''}[{u['index']}]"
                    for u in art.data["top_units"][:5])
    print(f"top units: {top}\nresult: {art.json_path}\nfigure: {art.png_path}")
    return 0


def cmd_probe(args) -> int:
    from wrapperlab.analysis.probing import ProbeConfig
    from wrapperlab.report.figures.single import probe_figure
    from wrapperlab.report.tables import text_table
    from wrapperlab.runs.profiles import validated
    from wrapperlab.runs.stage import Lab
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.pcfg.analyses import probe_run

    given = {"iters": args.iters, "n_train": args.n_train, "n_test": args.n_test}
    cfg = validated(ProbeConfig, {k: v for k, v in given.items() if v is not None})
    check_device(args.device)
    art = probe_run(Lab(RunStore(args.runs), say, args.device), args.run, cfg, prompt=args.prompt, seed=args.seed)
    probe_figure(art.data, art.png_path, title=f"probes of {art.data['run']}")
    rows = []
    for target, acc in art.data["accuracy"].items():
        for name, values in acc.items():
            rows.append({"target": target, "model": name, **dict(zip(art.data["layers"], values)),
                         "majority": art.data["majority"][target]})
    cols = [("target", "target", "s"), ("model", "model", "s")] + [(l, l, "pct") for l in art.data["layers"]]
    print(text_table(rows, cols + [("majority", "majority", "pct")]))
    print(f"result: {art.json_path}\nfigure: {art.png_path}")
    return 0


def cmd_attention(args) -> int:
    from wrapperlab.report.figures.single import attention_figure, attention_mass_figure, mlp_figure
    from wrapperlab.report.tables import text_table
    from wrapperlab.runs.stage import Lab
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.pcfg.analyses import attention_run
    from wrapperlab.settings.pcfg.reft import root_pretrain_run

    positive("n", args.n)
    if args.example < 0:
        raise ConfigError("example", args.example, "an input number >= 0")
    check_device(args.device)
    store = RunStore(args.runs)
    run = store.resolve(args.run)
    other = store.resolve(args.against, field="against") if args.against else root_pretrain_run(store, run)
    if other.id == run.id:
        raise ConfigError("against", args.against or other.id, "a different run to compare with")
    lab = Lab(store, say, args.device)
    arts = {r.id: attention_run(lab, r.id, args.n, args.example, args.seed, text=args.text) for r in (other, run)}
    maps = {rid: a.data for rid, a in arts.items()}
    if len({len(m["patterns"]) for m in maps.values()}) > 1:
        raise ConfigError("against", other.id, "a run of the same architecture")
    out = arts[run.id].path
    figs = [attention_figure(maps, out.with_name(out.name + "-patterns.png")),
            attention_mass_figure(maps, out.with_name(out.name + "-mass.png")),
            mlp_figure(maps, out.with_name(out.name + "-mlp.png"))]
    rows = []
    for rid, m in maps.items():
        for l, (pt_row, ft_row) in enumerate(zip(m["mass_pt"], m["mass_ft"])):
            rows += [{"run": rid, "cell": f"B{l} h{h}", "pt": a, "ft": b} for h, (a, b) in enumerate(zip(pt_row, ft_row))]
    ops = next(iter(maps.values()))["operands"]
    print(text_table(rows, [("run", "run", "s"), ("cell", "block/head", "s"), ("pt", f"mass on {ops['pt']} %", "pct"),
                            ("ft", f"mass on {ops['ft']} %", "pct")]))
    print("figures: " + ", ".join(str(f) for f in figs))
    return 0


def cmd_diff(args) -> int:
    from wrapperlab.report.figures.single import diff_figure
    from wrapperlab.report.tables import text_table
    from wrapperlab.runs.stage import Lab
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.pcfg.analyses import diff_runs

    check_device(args.device)
    art = diff_runs(Lab(RunStore(args.runs), say, args.device), args.run_a, args.run_b)
    diff_figure(art.data, art.png_path)
    print(text_table(art.data["matrices"], [("name", "matrix", "s"), ("rel_change", "|dW|/|W|", "g"),
                                            ("effective_rank", "eff. rank", "g"), ("top1_energy", "top-1 %", "pct"),
                                            ("top5_energy", "top-5 %", "pct")]))
    print(f"result: {art.json_path}\nfigure: {art.png_path}")
    return 0


def cmd_reft(args) -> int:
    from wrapperlab.report.figures.single import reft_figure
    from wrapperlab.report.tables import text_table
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.pcfg.reft import run_reft

    store = RunStore(args.runs)
    result = run_reft(store, args.run, args.profile, overrides(args, COMMON), args.baselines, runtime(args), say)
    summary = result.summary().to_json()
    png = store.resolve(result.curves["reft"].run.id).path / "reft.png"
    reft_figure(summary, png, title=f"reFT of {args.run}")
    rows = [{**v, "name": k} for k, v in summary.items()]
    print(text_table(rows, [("name", "curve", "s"), ("run", "run", "s"), ("start", "Acc O_PT start %", "pct"),
                            ("end", "end %", "pct"), ("steps_to_0.5", "steps to 50 %", "s"),
                            ("steps_to_0.9", "steps to 90 %", "s")]))
    print(f"figure: {png}")
    return 0


def cmd_prune_study(args) -> int:
    from wrapperlab.report.tables import ci_text, text_table
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.pcfg.configs import pcfg_lr
    from wrapperlab.settings.pcfg.prune_study import run_prune_study

    positive("seeds", args.seeds)
    pcfg_lr(args.lr)
    if not 0 <= args.c_tr <= 1:
        raise ConfigError("c_tr", args.c_tr, "a fraction in [0, 1]")
    summary = run_prune_study(RunStore(args.runs), args.profile, list(range(args.seeds)), args.lr, args.c_tr,
                              runtime(args), say)
    for name, info in summary["pretrained"].items():
        print(f"{name} pretraining: count a {ci_text(info['count_a'])} %, after fine-tuning "
              f"{ci_text(info['acc_pt_cte0_after_ft'])} %")
    rows = [{**r, **{k: ci_text(v, pct=not k.startswith("k_")) for k, v in r.items() if isinstance(v, dict) and "mean" in v},
             "where": ", ".join(f"{k} x{v}" for k, v in r["top15_where"].items())} for r in summary["rows"]]
    cols = [("pretraining", "pretraining", "s"), ("unit", "unit", "s"), ("saliency", "saliency", "s")]
    cols += [(f"pt_k{k}", f"O_PT C_Te=0 @K={k}", "s") for k in (5, 15, 50)]
    cols += [(f"ft_k{k}", f"O_FT C_Te=1 @K={k}", "s") for k in (5, 15, 50)]
    cols += [("k_to_half", "K to half", "s"), ("where", "top-15 units (all seeds)", "s")]
    print(text_table(rows, cols, markdown=True))
    print(f"\nsummary: {summary['path']}")
    return 0


def cmd_data(args) -> int:
    import numpy as np

    from wrapperlab.data.pcfg import Grammar, PCFGSampler

    positive("n", args.n)
    if args.seed < 0:
        raise ConfigError("seed", args.seed, "a non-negative integer")
    if args.what == "derivations":
        sampler = PCFGSampler(Grammar.named(args.grammar))
        d = sampler.derivations(args.n, np.random.default_rng(args.seed))
        terminals = np.array(sampler.grammar.terminals)
        for i in range(len(d)):
            emit({"derivation": "".join(terminals[d[i]])})
        return 0

    from wrapperlab.data.samples import PCFGData, PCFGDataConfig
    from wrapperlab.runs.profiles import validated

    rng = np.random.default_rng(args.seed)
    if args.what == "sample":
        if args.operand is not None and args.task is None:
            raise ConfigError("operand", args.operand, "to come with --task")
        tasks = [args.task] if args.task else None
        cfg = validated(PCFGDataConfig, {"window": args.window, "prior": args.prior, **({"tasks": tasks} if tasks else {})})
        data = PCFGData(cfg)
        for row in data.sample(args.n, rng, task=args.task, operand=args.operand).records(data.vocab):
            # the answer is the token before <eos>: a capability scores exactly that token
            emit({"prompt": " ".join(row["tokens"][:-2]), "answer": row["tokens"][-2]} if args.capability else row)
        return 0

    from wrapperlab.data.finetune_data import FinetuneData, FinetuneDataConfig

    ft_cfg = validated(FinetuneDataConfig, {"task": args.task, "operand": args.operand, "pt_operand": args.pt_operand,
                                            "c_tr": args.c_tr, "q": args.q})
    data = PCFGData(validated(PCFGDataConfig, {"window": args.window, "tasks": [args.task]}))
    samples = FinetuneData(data, ft_cfg).sample(args.n, rng)
    for row, corr in zip(samples.records(data.vocab), samples.correlated):
        emit({**row, "correlated": bool(corr), "pt_operand": args.pt_operand})
    return 0


# -- output ---------------------------------------------------------------------------------


def _print_pretrain(run_id: str, result: dict) -> None:
    from wrapperlab.report.tables import text_table

    rows = [{"pair": k, "acc": v} for k, v in result["accuracy"].items()]
    print(f"run {run_id}: {result['steps']} steps in {result['train_seconds']:.0f} s")
    print(text_table(rows, [("pair", "task/operand", "s"), ("acc", "accuracy %", "pct")]))


def _print_finetune(rows: list[dict], before: dict | None = None) -> None:
    from wrapperlab.report.tables import FINETUNE_COLUMNS, text_table

    if before is not None:
        rows = [{"model": "before fine-tuning", **before}] + rows
    print(text_table(rows, FINETUNE_COLUMNS))


_FT_METRICS = [
    ("acc_ft_cte0", "O_FT C_Te=0 %", "pct"),
    ("acc_ft_cte1", "O_FT C_Te=1 %", "pct"),
    ("acc_pt_cte0", "O_PT C_Te=0 %", "pct"),
    ("acc_pt_cte1", "O_PT C_Te=1 %", "pct"),
]

def cmd_demo(args) -> int:
    """``make demo``'s experiment under its old name: a shortcut over ``reproduce pcfg-counter``."""
    from wrapperlab.cli.reproduce import reproduce_shortcut

    return reproduce_shortcut("pcfg-counter", args)


#: the verbs this module adds
COMMANDS = {"pretrain": cmd_pretrain, "finetune": cmd_finetune, "data": cmd_data, "demo": cmd_demo,
            "prune-study": cmd_prune_study}
#: the general run verbs in their PCFG form (cli/main.py routes a PCFG run here)
RUN_COMMANDS = {"eval": cmd_eval, "prune": cmd_prune, "probe": cmd_probe, "attention": cmd_attention,
                "diff": cmd_diff, "reft": cmd_reft}


def analyse(command: str, args, run) -> int:
    if command == "resume":
        return cmd_resume(args, run)
    return RUN_COMMANDS[command](args)
