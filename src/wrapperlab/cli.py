"""``wrapperlab`` command line: parse, validate, call one function, print. No logic lives here.

Bad input ends with one line on stderr naming the field, and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from wrapperlab.errors import ConfigError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (no usage dump) with exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _key_value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def _runtime_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime (does not change a run's identity)")
    g.add_argument("--runs", default="runs", help="run store directory (default: ./runs)")
    g.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--threads", type=int, help="torch CPU threads")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="quick", help="test | quick | paper (default: quick)")
    p.add_argument("--seed", type=int)
    p.add_argument("--iters", type=int, help="training iterations")
    p.add_argument("--lr", help="learning rate (a number; for finetune also L, M, S = 1e-4, 1e-5, 1e-6)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (pays off at d_model >= 256)")
    p.add_argument("--set", dest="overrides", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="override any profile setting, e.g. --set train.answer_weight=2 --set model.d_model=96")
    _runtime_args(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wrapperlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("pretrain", help="pretrain a GPT on the PCFG tasks")
    p.add_argument("--prior", help="operand prior: low | 0.99 | medium | 0.7 | high | 'pa,pb,pc'")
    p.add_argument("--window", type=int, help="terminals per string (paper: 250)")
    p.add_argument("--tasks", help="comma-separated task families (default: all five)")
    _run_args(p)

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
    _run_args(p)

    p = sub.add_parser("resume", help="continue an interrupted run from its last checkpoint")
    p.add_argument("run", help="run id or directory")
    _runtime_args(p)

    p = sub.add_parser("eval", help="accuracy per (task, operand); the four fine-tuning numbers for a fine-tuned run")
    p.add_argument("run", help="run id, id prefix, or run directory")
    p.add_argument("--n", type=int, default=1000, help="samples per pair (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--runs", default="runs")
    p.add_argument("--device", default="cpu")

    p = sub.add_parser("demo", help="the counter study: pretrain, fine-tune an lr x C_Tr grid, prune/probe/reFT, summarise")
    p.add_argument("--profile", default="quick")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (0 .. N-1)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--lrs", help="comma-separated fine-tuning lrs (numbers or L, M, S; default: the profile's)")
    p.add_argument("--c-tr", help="comma-separated C_Tr values (default: the profile's)")
    p.add_argument("--analyse-c-tr", default="1", help="C_Tr values whose models get pruning/probing/reFT")
    p.add_argument("--analyse-lrs", help="lrs whose models get pruning/probing/reFT (default: the profile's)")
    p.add_argument("--no-analyses", action="store_true", help="only pretrain and fine-tune")
    p.add_argument("--no-baselines", action="store_true", help="reFT without the Scr.+FT and Scr. baselines")
    _runtime_args(p)

    p = sub.add_parser("prune", help="gradient x weight pruning of a fine-tuned run: accuracy vs units pruned")
    p.add_argument("run", help="a fine-tuned run (id, prefix or directory)")
    p.add_argument("--unit", choices=["rows", "mlp_hidden", "weights"], default="rows",
                   help="rows of weight matrices (paper, default) | MLP hidden units | single weights")
    p.add_argument("--matrices", help="comma-separated subset of attn.qkv,attn.out,mlp.fc_in,mlp.fc_out (default all)")
    p.add_argument("--saliency", choices=["signed", "absolute"], default="signed")
    p.add_argument("--samples", type=int, default=512, help="pretraining-task samples for the gradient")
    p.add_argument("--ks", default="0,1,2,3,5,10,15,20", help="numbers of units to prune (comma-separated)")
    p.add_argument("--n", type=int, default=1000, help="test samples per accuracy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default="runs")

    p = sub.add_parser("probe", help="linear probes for the counts of O_PT and O_FT after every block")
    p.add_argument("run", help="run id, prefix or directory")
    p.add_argument("--iters", type=int, default=4000, help="probe training steps (paper: 4000)")
    p.add_argument("--prompt", choices=["pt", "ft"], default="pt", help="which operand the inputs ask about")
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default="runs")

    p = sub.add_parser("attention", help="attention and MLP maps of a run beside another (default: its pretrained root)")
    p.add_argument("run", help="run id, prefix or directory")
    p.add_argument("--against", help="the run to compare with (default: the pretraining run it descends from)")
    p.add_argument("--n", type=int, default=300, help="inputs averaged for the attention masses")
    p.add_argument("--example", type=int, default=0, help="which input to draw")
    p.add_argument("--text", help="your own window of a/b/c terminals (exactly the run's window length)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default="runs")

    p = sub.add_parser("diff", help="per-matrix weight change from RUN_A to RUN_B (relative size, effective rank)")
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--runs", default="runs")

    p = sub.add_parser("reft", help="reverse fine-tuning: train a fine-tuned run back on the pretraining question")
    p.add_argument("run", help="a fine-tuned run (id, prefix or directory)")
    p.add_argument("--baselines", action="store_true",
                   help="also Scr.+FT (pretrained on O_FT only; pretrains it if missing) and Scr. (random init)")
    _run_args(p)

    p = sub.add_parser("reproduce", help="run paper experiments from their specs (shipped names or YAML files)")
    p.add_argument("spec", nargs="+", help="pcfg-counter | pcfg-indexer | tracr-counter | tracr-max | a spec file")
    p.add_argument("--profile", default="quick", help="test | quick | paper (default: quick)")
    p.add_argument("--seeds", type=int, help="number of seeds (default: the spec's for this profile)")
    p.add_argument("--out", help="run store directory (default: --runs)")
    p.add_argument("--workers", type=int, default=1, help="local processes running ready nodes in parallel (default 1)")
    p.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local (this process or --workers processes) or ray (one task per run; pip install 'wrapperlab[ray]')")
    p.add_argument("--address", help="ray: a running cluster HOST:PORT (default: start a local Ray on 127.0.0.1)")
    _runtime_args(p)

    p = sub.add_parser("report", help="write the HTML/Markdown report and summary.json for a reproduction directory")
    p.add_argument("dir", help="the run store `reproduce` used")

    p = sub.add_parser("prune-study", help="pruning variants (unit x saliency x pretraining) over seeds, one table")
    p.add_argument("--profile", default="quick")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--lr", default="M", help="fine-tuning lr of the pruned models (default M)")
    p.add_argument("--c-tr", type=float, default=1.0)
    _runtime_args(p)

    from wrapperlab import cli_tracr

    cli_tracr.add_parsers(sub, _runtime_args, _key_value)
    from wrapperlab import cli_stories

    cli_stories.add_parsers(sub, _runtime_args, _key_value)

    data = sub.add_parser("data", help="dump generated data as JSON lines").add_subparsers(
        dest="what", required=True, parser_class=_Parser
    )
    p = data.add_parser("derivations", help="full PCFG derivations")
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grammar", default="cfg3b")
    for name, help_ in (("sample", "pretraining samples"), ("finetune", "fine-tuning samples with planted correlations")):
        p = data.add_parser(name, help=help_)
        p.add_argument("--n", type=int, default=10)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--window", type=int, default=250)
        if name == "sample":
            p.add_argument("--task", help="task family (default: drawn uniformly)")
            p.add_argument("--operand", help="operand (default: drawn from the prior)")
            p.add_argument("--prior", default="low")
        else:
            p.add_argument("--task", default="count")
            p.add_argument("--operand", default="b")
            p.add_argument("--pt-operand", default="a")
            p.add_argument("--c-tr", type=float, default=1.0)
            p.add_argument("--q", type=int, default=1)
    return parser


# -- commands -------------------------------------------------------------------------------


def _positive(name: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise ConfigError(name, value, "a positive integer")


def _overrides(args, mapping: dict[str, str]) -> dict[str, Any]:
    out = {}
    for attr, key in mapping.items():
        value = getattr(args, attr, None)
        if value is not None:
            out[key] = value
    if getattr(args, "bf16", False):
        out["train.precision"] = "bf16"
    out.update(dict(args.overrides))
    return out


def _runtime(args):
    from wrapperlab.training.config import Runtime

    if args.threads is not None and args.threads <= 0:
        raise ConfigError("threads", args.threads, "a positive integer")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device", args.device, "a device this machine has (no CUDA here; use --device cpu)")
    elif args.device != "cpu":
        raise ConfigError("device", args.device, "cpu, cuda or cuda:N")
    return Runtime(device=args.device, compile=args.compile, threads=args.threads, progress=not args.quiet)


_COMMON = {"seed": "seed", "iters": "train.iters", "lr": "train.lr", "batch_size": "train.batch_size"}


def cmd_pretrain(args) -> int:
    from wrapperlab.experiments.configs import pretrain_config
    from wrapperlab.experiments.pipeline import pretrain
    from wrapperlab.experiments.store import RunStore

    if args.lr is not None:
        try:
            args.lr = float(args.lr)
        except ValueError:
            raise ConfigError("lr", args.lr, "a positive number")
    if args.tasks is not None:
        args.tasks = [t.strip() for t in args.tasks.split(",")]
    overrides = _overrides(args, {**_COMMON, "prior": "data.prior", "window": "data.window", "tasks": "data.tasks"})
    cfg = pretrain_config(args.profile, overrides)
    stage = pretrain(cfg, RunStore(args.runs), _runtime(args), say=_say)
    _print_pretrain(stage.run.id, stage.result)
    return 0


def cmd_finetune(args) -> int:
    from wrapperlab.experiments.configs import finetune_config
    from wrapperlab.experiments.pipeline import finetune
    from wrapperlab.experiments.store import RunStore

    store = RunStore(args.runs)
    parent = store.resolve(args.parent, field="parent")
    overrides = _overrides(
        args,
        {**_COMMON, "task": "data.task", "operand": "data.operand", "pt_operand": "data.pt_operand",
         "c_tr": "data.c_tr", "q": "data.q", "mix_pt": "data.mix_pt"},
    )
    if args.randft:
        overrides.update({"data.ask": "pt", "data.answer": "ft"})
    cfg = finetune_config(parent.id, args.profile, overrides)
    stage = finetune(cfg, store, _runtime(args), say=_say, kind="randft" if args.randft else "finetune")
    _print_finetune([{"model": stage.run.id, "lr": cfg.train.lr, "c_tr": cfg.data.c_tr, **stage.result["after"]}],
                    stage.result["before"])
    return 0


def cmd_resume(args) -> int:
    from wrapperlab.experiments.configs import FinetuneRunConfig, PretrainRunConfig, validated
    from wrapperlab.experiments.pipeline import FINETUNE_KINDS, finetune, pretrain
    from wrapperlab.experiments.store import Run, RunStore

    store = RunStore(args.runs)
    run = next((r for r in (Run(store.root / args.run), Run(Path(args.run))) if (r.path / "config.json").exists()), None)
    if run is None:
        raise ConfigError("run", args.run, f"a run id or directory with a config.json (under {store.root})")
    store = RunStore(run.path.parent)
    if run.kind == "pretrain":
        stage = pretrain(validated(PretrainRunConfig, run.config()), store, _runtime(args), say=_say)
        _print_pretrain(stage.run.id, stage.result)
    elif run.kind in FINETUNE_KINDS:
        cfg = validated(FinetuneRunConfig, run.config())
        stage = finetune(cfg, store, _runtime(args), say=_say, kind=run.kind)
        _print_finetune([{"model": stage.run.id, "lr": cfg.train.lr, "c_tr": cfg.data.c_tr, **stage.result["after"]}],
                        stage.result["before"])
    else:
        raise ConfigError("run", args.run, f"a pretrain run or one of {FINETUNE_KINDS}")
    return 0


def cmd_eval(args) -> int:
    from wrapperlab.experiments.pipeline import evaluate_run
    from wrapperlab.experiments.store import RunStore
    from wrapperlab.report.tables import text_table

    _positive("n", args.n)
    device = _runtime(argparse.Namespace(device=args.device, threads=None, compile=False, quiet=True)).device
    result = evaluate_run(RunStore(args.runs).resolve(args.run), n=args.n, seed=args.seed, device=device)
    if args.json:
        print(json.dumps(result))
        return 0
    rows = [{"pair": k, "acc": v} for k, v in result["accuracy"].items()]
    print(text_table(rows, [("pair", "task/operand", "s"), ("acc", "accuracy %", "pct")]))
    if "finetune" in result:
        print()
        _print_finetune([{"model": result["run"], **result["finetune"]}])
    return 0


def _int_list(name: str, text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(name, text, "comma-separated integers")


def cmd_prune(args) -> int:
    from wrapperlab.analysis.pruning import PruneConfig
    from wrapperlab.experiments.analyses import prune_run
    from wrapperlab.experiments.configs import validated
    from wrapperlab.experiments.store import RunStore
    from wrapperlab.report.figures import prune_figure
    from wrapperlab.report.tables import text_table

    _positive("n", args.n)
    spec = {"unit": args.unit, "saliency": args.saliency, "n_samples": args.samples, "ks": _int_list("ks", args.ks)}
    if args.matrices:
        spec["matrices"] = [m.strip() for m in args.matrices.split(",")]
    cfg = validated(PruneConfig, spec)
    art = prune_run(RunStore(args.runs), args.run, cfg, n_eval=args.n, seed=args.seed, say=_say)
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
    from wrapperlab.experiments.analyses import probe_run
    from wrapperlab.experiments.configs import validated
    from wrapperlab.experiments.store import RunStore
    from wrapperlab.report.figures import probe_figure
    from wrapperlab.report.tables import text_table

    cfg = validated(ProbeConfig, {"iters": args.iters, "n_train": args.n_train, "n_test": args.n_test})
    art = probe_run(RunStore(args.runs), args.run, cfg, prompt=args.prompt, seed=args.seed, say=_say)
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
    from wrapperlab.experiments.analyses import attention_run
    from wrapperlab.experiments.reft import root_pretrain_run
    from wrapperlab.experiments.store import RunStore
    from wrapperlab.report.figures import attention_figure, attention_mass_figure, mlp_figure
    from wrapperlab.report.tables import text_table

    _positive("n", args.n)
    store = RunStore(args.runs)
    run = store.resolve(args.run)
    other = store.resolve(args.against, field="against") if args.against else root_pretrain_run(store, run)
    if other.id == run.id:
        raise ConfigError("against", args.against or other.id, "a different run to compare with")
    arts = {r.id: attention_run(store, r.id, args.n, args.example, args.seed, say=_say, text=args.text) for r in (other, run)}
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
    from wrapperlab.experiments.analyses import diff_runs
    from wrapperlab.experiments.store import RunStore
    from wrapperlab.report.figures import diff_figure
    from wrapperlab.report.tables import text_table

    art = diff_runs(RunStore(args.runs), args.run_a, args.run_b, say=_say)
    diff_figure(art.data, art.png_path)
    print(text_table(art.data["matrices"], [("name", "matrix", "s"), ("rel_change", "|dW|/|W|", "g"),
                                            ("effective_rank", "eff. rank", "g"), ("top1_energy", "top-1 %", "pct"),
                                            ("top5_energy", "top-5 %", "pct")]))
    print(f"result: {art.json_path}\nfigure: {art.png_path}")
    return 0


def cmd_reft(args) -> int:
    from wrapperlab.experiments.reft import run_reft
    from wrapperlab.experiments.store import RunStore
    from wrapperlab.report.figures import reft_figure
    from wrapperlab.report.tables import text_table

    store = RunStore(args.runs)
    if args.lr is not None:
        from wrapperlab.experiments.configs import parse_lr

        args.lr = parse_lr(args.lr)
    result = run_reft(store, args.run, args.profile, _overrides(args, _COMMON), args.baselines, _runtime(args), _say)
    summary = result.summary()
    png = store.resolve(result.curves["reft"].run.id).path / "reft.png"
    reft_figure(summary, png, title=f"reFT of {args.run}")
    rows = [{**v, "name": k} for k, v in summary.items()]
    print(text_table(rows, [("name", "curve", "s"), ("run", "run", "s"), ("start", "Acc O_PT start %", "pct"),
                            ("end", "end %", "pct"), ("steps_to_0.5", "steps to 50 %", "s"),
                            ("steps_to_0.9", "steps to 90 %", "s")]))
    print(f"figure: {png}")
    return 0


def _float_list(name: str, text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(name, text, "comma-separated numbers")


def cmd_prune_study(args) -> int:
    from wrapperlab.experiments.configs import parse_lr
    from wrapperlab.experiments.prune_study import run_prune_study
    from wrapperlab.experiments.store import RunStore
    from wrapperlab.report.tables import ci_text, text_table

    _positive("seeds", args.seeds)
    parse_lr(args.lr)
    if not 0 <= args.c_tr <= 1:
        raise ConfigError("c_tr", args.c_tr, "a fraction in [0, 1]")
    summary = run_prune_study(RunStore(args.runs), args.profile, list(range(args.seeds)), args.lr, args.c_tr,
                              _runtime(args), _say)
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


def cmd_demo(args) -> int:
    from wrapperlab.experiments.demo import StudyConfig, run_study
    from wrapperlab.experiments.store import RunStore
    from wrapperlab.report.tables import study_tables

    _positive("seeds", args.seeds)
    lrs = [v.strip() for v in args.lrs.split(",")] if args.lrs else None
    cfg = StudyConfig(
        profile=args.profile, seeds=list(range(args.seed, args.seed + args.seeds)), lrs=lrs,
        c_tr=_float_list("c_tr", args.c_tr), analyse_c_tr=_float_list("analyse_c_tr", args.analyse_c_tr) or [],
        analyses=not args.no_analyses, baselines=not args.no_baselines,
        analyse_lrs=[v.strip() for v in args.analyse_lrs.split(",")] if args.analyse_lrs else None,
    )
    for c in (cfg.c_tr or []) + cfg.analyse_c_tr:
        if not 0 <= c <= 1:
            raise ConfigError("c_tr", c, "a fraction in [0, 1]")
    summary = run_study(cfg, RunStore(args.runs), _runtime(args), say=_say)
    print()
    print(f"Counter study (profile {args.profile}, seeds {cfg.seeds}): fine-tune to count b; mean ± 95 % CI in %")
    print(study_tables(summary["aggregate"]))
    print(f"\nsummary: {summary['path']}  (runs, metrics and figures under {args.runs}/)")
    return 0


def cmd_data(args) -> int:
    import numpy as np

    from wrapperlab.data.pcfg import Grammar, PCFGSampler

    _positive("n", args.n)
    if args.seed < 0:
        raise ConfigError("seed", args.seed, "a non-negative integer")
    if args.what == "derivations":
        sampler = PCFGSampler(Grammar.named(args.grammar))
        d = sampler.derivations(args.n, np.random.default_rng(args.seed))
        terminals = np.array(sampler.grammar.terminals)
        for i in range(len(d)):
            _emit({"derivation": "".join(terminals[d[i]])})
        return 0

    from wrapperlab.data.samples import PCFGData, PCFGDataConfig
    from wrapperlab.experiments.configs import validated

    rng = np.random.default_rng(args.seed)
    if args.what == "sample":
        if args.operand is not None and args.task is None:
            raise ConfigError("operand", args.operand, "to come with --task")
        tasks = [args.task] if args.task else None
        cfg = validated(PCFGDataConfig, {"window": args.window, "prior": args.prior, **({"tasks": tasks} if tasks else {})})
        data = PCFGData(cfg)
        for row in data.sample(args.n, rng, task=args.task, operand=args.operand).records(data.vocab):
            _emit(row)
        return 0

    from wrapperlab.data.finetune_data import FinetuneData, FinetuneDataConfig

    ft_cfg = validated(FinetuneDataConfig, {"task": args.task, "operand": args.operand, "pt_operand": args.pt_operand,
                                            "c_tr": args.c_tr, "q": args.q})
    data = PCFGData(validated(PCFGDataConfig, {"window": args.window, "tasks": [args.task]}))
    samples = FinetuneData(data, ft_cfg).sample(args.n, rng)
    for row, corr in zip(samples.records(data.vocab), samples.correlated):
        _emit({**row, "correlated": bool(corr), "pt_operand": args.pt_operand})
    return 0


# -- output ---------------------------------------------------------------------------------


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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

def cmd_reproduce(args) -> int:
    from wrapperlab.experiments.configs import profile
    from wrapperlab.experiments.reproduce import reproduce
    from wrapperlab.experiments.spec import load_spec
    from wrapperlab.experiments.store import RunStore

    _positive("seeds", args.seeds)
    _positive("workers", args.workers)
    specs = [load_spec(ref) for ref in args.spec]  # every spec is checked before anything runs
    profile(args.profile)  # so is the profile
    if args.executor == "ray":
        from wrapperlab.experiments.ray_executor import import_ray

        import_ray()  # and the executor, before the store is touched
    store = RunStore(args.out or args.runs)
    for spec in specs:
        result = reproduce(spec, args.profile, store, args.seeds, _runtime(args), say=_say, workers=args.workers,
                           executor=args.executor, address=args.address)
        print(f"{spec.name} ({args.profile}): {len(result.nodes)} nodes, {result.computed} computed, "
              f"{len(result.nodes) - result.computed} reused, {result.seconds:.0f} s; runs in {store.root}")
    return cmd_report(argparse.Namespace(dir=str(store.root)))


def cmd_report(args) -> int:
    from wrapperlab.report.report import write_report

    paths = write_report(args.dir)
    print(f"report: {paths['html']}\nmarkdown: {paths['markdown']}\nsummary: {paths['summary']}")
    return 0


def cmd_stories(args) -> int:
    from wrapperlab.cli_stories import cmd_stories as run_stories

    if args.verb in ("pretrain", "delete", "reft", "probe"):
        args.runtime = _runtime(args) if hasattr(args, "device") else None

    return run_stories(args)


def cmd_tracr(args) -> int:
    from wrapperlab.cli_tracr import cmd_tracr as run_tracr

    return run_tracr(args, _runtime, _say)


#: verbs that also take a tracr run (routed to the tracr tools)
TRACR_AWARE = ("prune", "attention", "reft", "eval", "diff", "probe")

COMMANDS = {
    "reproduce": cmd_reproduce,
    "report": cmd_report,
    "tracr": cmd_tracr,
    "stories": cmd_stories,
    "prune": cmd_prune,
    "reft": cmd_reft,
    "prune-study": cmd_prune_study,
    "diff": cmd_diff,
    "attention": cmd_attention,
    "probe": cmd_probe,
    "pretrain": cmd_pretrain,
    "finetune": cmd_finetune,
    "resume": cmd_resume,
    "eval": cmd_eval,
    "demo": cmd_demo,
    "data": cmd_data,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(None if argv is None else [str(a) for a in argv])
    try:
        if args.command in TRACR_AWARE:
            from wrapperlab.cli_tracr import analyse, tracr_run_for

            run = tracr_run_for(args)
            if run is not None:
                return analyse(args.command, args, run, _runtime, _say)
        return COMMANDS[args.command](args)
    except ConfigError as e:
        print(f"wrapperlab: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("wrapperlab: interrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `wrapperlab data sample | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
