"""``wrapperlab stories ...``: the story corpus and its judge (more verbs arrive with the rest of issue 6).

* ``generate``: records in the TinyStories-Instruct text form (``<|endoftext|>`` between records), to a file or
  stdout — the same form the real-data reader takes back.
* ``judge``: train the local judge on generated records or a real TinyStories file/directory and report its
  held-out accuracy per feature; ``--out`` saves it.
"""

from __future__ import annotations

import sys

from wrapperlab.errors import ConfigError


def add_parsers(sub) -> None:
    stories = sub.add_parser("stories", help="the story corpus (TinyStories-Instruct form) and the local judge")
    verbs = stories.add_subparsers(dest="verb", required=True, parser_class=type(stories))
    p = verbs.add_parser("generate", help="procedural TinyStories-Instruct records (deterministic per seed)")
    p.add_argument("--n", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exclude", default="", help="comma-separated features never generated (e.g. Twist)")
    p.add_argument("--out", help="file to write (default: stdout)")
    p = verbs.add_parser("judge", help="train the feature judge and report held-out accuracy per feature")
    p.add_argument("--data", default="generated", help="'generated' or a TinyStories .txt/.json file or directory")
    p.add_argument("--n", type=int, default=10000, help="records used (80 %% train, 20 %% held out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="save the judge (JSON)")


def cmd_stories(args) -> int:
    from wrapperlab.data.stories.records import END_OF_TEXT, FEATURES, format_record

    if args.n <= 0:
        raise ConfigError("n", args.n, "a positive number of records")
    if args.verb == "generate":
        from wrapperlab.data.stories.generator import StoryGenerator

        exclude = tuple(f.strip() for f in args.exclude.split(",") if f.strip())
        unknown = [f for f in exclude if f not in FEATURES]
        if unknown:
            raise ConfigError("exclude", unknown[0], f"features among {list(FEATURES)}")
        text = "".join(format_record(r) + f"\n{END_OF_TEXT}\n"
                       for r in StoryGenerator(args.seed, exclude=exclude).records(args.n))
        if args.out:
            from pathlib import Path

            from wrapperlab.training.checkpoint import atomic_write_text

            atomic_write_text(Path(args.out), text)
            print(f"{args.n} records -> {args.out}")
        else:
            sys.stdout.write(text)
        return 0
    from wrapperlab.analysis.judge import Judge
    from wrapperlab.data.stories.corpus import StoriesDataConfig, records

    data = list(records(StoriesDataConfig(source=args.data, n_records=args.n, seed=args.seed)))
    if len(data) < 10:
        raise ConfigError("data", args.data, "at least 10 records to train and hold out")
    cut = int(0.8 * len(data))
    judge = Judge.fit(data[:cut], seed=args.seed)
    acc = judge.accuracy(data[cut:])
    print(f"judge on {args.data}: {cut} training / {len(data) - cut} held-out records")
    print("  ".join(f"{k} {100 * v:.1f} %" for k, v in acc.items()))
    if args.out:
        print(f"saved: {judge.save(args.out)}")
    return 0
