"""``wrapperlab stories ...``: the story corpus, its judge, and the story models one stage at a time.

* ``generate``: records in the TinyStories-Instruct text form (``<|endoftext|>`` between records), to a file or
  stdout — the same form the real-data reader takes back.
* ``judge``: train the local judge on generated records or a real TinyStories file/directory and report its
  held-out accuracy per feature; ``--out`` saves it.
* ``pretrain`` (``--control``: without Twist stories), ``delete`` (a protocol at an lr), ``reft`` (on Twist or
  mixed stories), ``probe`` (three designs beside a random-init model): stored, resumable runs — the same stages
  ``wrapperlab reproduce stories-twist`` chains.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from wrapperlab.cli.common import PROFILE_HELP, add_examples, key_value, runtime, runtime_args, seed
from wrapperlab.errors import ConfigError


def add_parsers(sub) -> None:
    stories = sub.add_parser("stories", help="the story corpus (TinyStories-Instruct form) and the local judge")
    verbs = stories.add_subparsers(dest="verb", required=True, parser_class=type(stories))
    p = verbs.add_parser("generate", help="procedural TinyStories-Instruct records (deterministic per seed)")
    p.add_argument("--n", type=int, default=5)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--exclude", default="", help="comma-separated features never generated (e.g. Twist)")
    p.add_argument("--out", help="file to write (default: stdout)")
    p = verbs.add_parser("capability", help="a capability file for `wrapperlab audit`: held-out records that ask for "
                                            "and have a feature, as prompt (instruction) / answer (story) lines")
    p.add_argument("--feature", default="Twist")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--seed", type=seed, default=0, help="the corpus seed (the test split is never trained on)")
    p.add_argument("--data", default="generated", help="'generated' or a TinyStories .txt/.json file or directory")
    p.add_argument("--tokenizer", help="a tokenizer.json: keep only records of at most --max-tokens tokens under it")
    p.add_argument("--max-tokens", type=int, help="with --tokenizer: the model's context (e.g. 160 for quick)")
    p.add_argument("--out", help="file to write (default: stdout)")
    p = verbs.add_parser("judge", help="train the feature judge and report held-out accuracy per feature")
    p.add_argument("--data", default="generated", help="'generated' or a TinyStories .txt/.json file or directory")
    p.add_argument("--n", type=int, default=10000, help="records used: 80 %% from the training split, 20 %% held out")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--out", help="save the judge (JSON)")

    def stage(name: str, help_: str, parent: str | None):
        p = verbs.add_parser(name, help=help_)
        if parent:
            p.add_argument("parent", help=parent)
        p.add_argument("--profile", default="quick", help=PROFILE_HELP)
        p.add_argument("--set", dest="overrides", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                       help="override a setting of the stage, e.g. --set train.iters=500 --set data.source=PATH")
        runtime_args(p)
        return p

    p = stage("pretrain", "train the tokenizer, the judge and a story model (or the not-in-PT control)", None)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--control", action="store_true", help="the same without Twist stories ('not in PT')")
    p = stage("delete", "fine-tune a story model under a deletion protocol", "a story run to fine-tune")
    p.add_argument("--protocol", default="filter", help="filter | filter_mix_match | filter_randomise | refusal | grad_ascent (an "
                   "unlearning method: gradient ascent on Twist stories with a retain loss)")
    p.add_argument("--lr", default="M", help="a number or S / M (1e-4 / 1e-3)")
    p = stage("reft", "reverse fine-tuning on Twist stories (or a truly labelled mix)", "a story run to revive")
    p.add_argument("--corpus", default="twist", help="twist (every story has one) | mixed")
    p = stage("probe", "linear probes per layer in three designs, beside a random-init model", "a story run")
    p.add_argument("--designs", default="", help="comma-separated: last10, requested, requested_matched (default all)")
    p.add_argument("--seed", type=seed, default=0)
    add_examples(verbs, {
        "generate": ["wrapperlab stories generate --n 3", "wrapperlab stories generate --n 1000 --exclude Twist --out corpus.txt"],
        "capability": ["wrapperlab stories capability --feature Twist --n 64 --out twist.jsonl"],
        "judge": ["wrapperlab stories judge", "wrapperlab stories judge --data ~/TinyStories/TinyStoriesInstruct-valid.txt"],
        "pretrain": ["wrapperlab stories pretrain --profile quick", "wrapperlab stories pretrain --control",
                     "wrapperlab stories pretrain --set data.source=~/TinyStories/data00.json"],
        "delete": ["wrapperlab stories delete stories-pretrain-3f2a --protocol filter --lr M"],
        "reft": ["wrapperlab stories reft stories-finetune-81c0 --corpus twist"],
        "probe": ["wrapperlab stories probe stories-finetune-81c0 --designs requested"],
    })


def _capability(args) -> int:
    """Records of the corpus's test split that ask for the feature and have it: the instruction (ending with
    ``Story:``) is the prompt, the story the answer — what an audit scores and relearns."""
    import json

    from wrapperlab.data.stories.corpus import StoriesDataConfig, records
    from wrapperlab.data.stories.records import format_record, header

    cfg = StoriesDataConfig(source=args.data, seed=args.seed, only=(args.feature,))  # validates the feature
    if (args.tokenizer is None) != (args.max_tokens is None):
        raise ConfigError("max-tokens", args.max_tokens, "given together with --tokenizer")
    fits = lambda text: True  # noqa: E731
    if args.tokenizer:
        from wrapperlab.data.stories.tokenizer import load_tokenizer

        source = Path(args.tokenizer)
        tok = load_tokenizer(source / "tokenizer.json" if source.is_dir() else source)  # a file, or a model directory
        fits = lambda text: len(tok.encode(text).ids) <= args.max_tokens  # noqa: E731
    pairs = ((header(r).rstrip(" "), format_record(r)) for r in records(cfg, "test") if args.feature in r.features)
    lines = [json.dumps({"prompt": prompt, "answer": full[len(prompt):]})
             for prompt, full in itertools.islice(((p, f) for p, f in pairs if fits(f)), args.n)]
    if len(lines) < args.n:
        raise ConfigError("n", args.n, f"at most the {len(lines)} test records asking for {args.feature} in {args.data}")
    return _write_records("\n".join(lines) + "\n", len(lines), args.out)


def _write_records(text: str, n: int, out: str | None) -> int:
    """``text`` (``n`` records) to the file ``out``, written atomically, or to stdout."""
    if not out:
        sys.stdout.write(text)
        return 0
    from wrapperlab.files import atomic_write_text

    if Path(out).is_dir():
        raise ConfigError("out", out, "a file to write (this is a directory)")
    atomic_write_text(Path(out), text)
    print(f"{n} records -> {out}")
    return 0


def cmd_stories(args) -> int:
    from wrapperlab.data.stories.records import END_OF_TEXT, FEATURES, format_record

    if args.verb in ("pretrain", "delete", "reft", "probe"):
        return _model_verb(args)
    if args.n <= 0:
        raise ConfigError("n", args.n, "a positive number of records")
    if args.verb == "capability":
        return _capability(args)
    if args.verb == "generate":
        from wrapperlab.data.stories.generator import StoryGenerator

        exclude = tuple(f.strip() for f in args.exclude.split(",") if f.strip())
        unknown = [f for f in exclude if f not in FEATURES]
        if unknown:
            raise ConfigError("exclude", unknown[0], f"features among {list(FEATURES)}")
        text = "".join(format_record(r) + f"\n{END_OF_TEXT}\n"
                       for r in StoryGenerator(args.seed, exclude=exclude).records(args.n))
        return _write_records(text, args.n, args.out)
    from wrapperlab.analysis.judge import Judge
    from wrapperlab.data.stories.corpus import StoriesDataConfig, records

    cfg = StoriesDataConfig(source=args.data, n_records=max(1, int(0.8 * args.n)), seed=args.seed)
    train = list(records(cfg))  # the corpus's own splits: real files hold out every 10th record
    held = list(records(cfg.model_copy(update={"n_records": max(1, args.n - cfg.n_records)}), "test"))
    if len(train) < 8 or len(held) < 2:
        raise ConfigError("data", args.data, "at least 10 records to train and hold out")
    judge = Judge.fit(train, seed=args.seed)
    acc = judge.accuracy(held)
    print(f"judge on {args.data}: {len(train)} training / {len(held)} held-out records")
    print("  ".join(f"{k} {100 * v:.1f} %" for k, v in acc.items()))
    if args.out:
        print(f"saved: {judge.save(args.out)}")
    return 0


def _model_verb(args) -> int:
    """pretrain | delete | reft | probe: build the stage's config from the profile, run or reuse it, print the
    numbers a researcher looks at first."""
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.stories import stages as stories

    store = RunStore(args.runs)
    sets = dict(args.overrides)
    if args.verb == "probe":
        designs = [d.strip() for d in args.designs.split(",") if d.strip()] or None
        from wrapperlab.settings.stories.probes import DESIGNS

        for d in designs or ():
            if d not in DESIGNS:
                raise ConfigError("designs", d, f"among {list(DESIGNS)}")
        art = stories.probe_story_run(store, args.parent, args.profile, designs, seed=args.seed)
        data = art.data
        print(f"probes of {data['run']} ({'stored' if art.reused else 'computed'}): Twist probe accuracy per layer "
              f"{', '.join(data['layers'])}, model | random init | majority")
        for design, targets in data["accuracy"].items():
            if "Twist" in targets:
                acc = targets["Twist"]
                print(f"  {design:18s} {' '.join(f'{100 * a:5.1f}' for a in acc['model'])} | "
                      f"{' '.join(f'{100 * a:5.1f}' for a in acc['random_init'])} | "
                      f"{100 * data['majority'][design]['Twist']:.1f}")
        print(f"saved: {art.json_path}")
        return 0
    if args.verb == "pretrain":
        cfg = stories.pretrain_story_config(args.profile, sets, seed=args.seed, control=args.control)
    elif args.verb == "delete":
        cfg = stories.delete_config(store, args.parent, args.profile, args.protocol, args.lr, sets)
    else:
        cfg = stories.reft_story_config(store, args.parent, args.profile, args.corpus, sets)
    stage = stories.stories_stage(cfg, store, runtime(args))
    r = stage.result
    for when in ("before", "after"):
        if r.get(when):
            m = r[when]
            print(f"{when:6s}: Twist-story loss {m['twist_loss']:.3f}; Twist written for {100 * m['gen_twist']:.1f} % of "
                  f"prompts requesting it, {100 * m['gen_non']:.1f} % of the others ({m['n_gen']} stories)")
    if r.get("judge_accuracy"):
        print("judge held-out: " + "  ".join(f"{k} {100 * v:.1f} %" for k, v in r["judge_accuracy"].items()))
    print(f"run: {stage.run.path}")
    return 0


COMMANDS = {"stories": cmd_stories}


def analyse(command: str, args, run) -> int:
    """The general run verbs on a story run (cli/main.py routes one here): story runs have their own verbs."""
    raise ConfigError("run", run.id, f"a PCFG or Tracr run (`{command}` of a story model: wrapperlab stories "
                                     "probe | reft | delete RUN, re-run to resume)")
