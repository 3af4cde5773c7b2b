"""Property-based fuzz of the command line (issue 17): whatever a user types — a verb with odd flags, `--set` keys
and values, a run reference that is no run, a spec file of garbage — wrapperlab answers with exit code 0 or 2,
never a traceback, at most three lines on stderr, and leaves no run directory without DONE behind.

In-process (``main``), so a case costs milliseconds when refused and a second or two when it trains (the test
profile, at most 3 steps). ``FUZZ_CASES`` (default 360) sets how many cases each verb group draws in total.
"""

import json
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from wrapperlab.cli.main import main

CASES = int(os.environ.get("FUZZ_CASES", "360"))
#: how the cases split over the groups below (training verbs cost the most per case)
SHARE = {"set": 0.35, "ref": 0.3, "data": 0.2, "spec": 0.15, "audit": 0.1}
FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None,
                phases=[Phase.explicit, Phase.generate])  # no shrinking: a raw failing case is enough, and fast

ODD = st.sampled_from(["inf", "-inf", ".inf", ".nan", "nan", "-1", "0", "1e6", "1e400", "true", "false", "null",
                       "~", "[]", "[count,count]", "[-5]", "{a: 1}", "'", "\"", "abc", "", " ", "0x10", "1_000",
                       "99999999999999999999999", "-0.0", "[1, true]", "{}"])
SMALL = st.integers(-3, 70).map(str)
VALUE = st.one_of(ODD, SMALL, st.floats(allow_nan=True, allow_infinity=True).map(repr),
                  st.text(alphabet="abcdefxyz0123456789-_.,[]{}: ", max_size=10))
SET_KEYS = ["train.lr", "train.batch_size", "train.eval_at", "train.eval_every", "train.warmup_frac",
            "train.min_lr_frac", "train.grad_clip", "train.precision", "train.loss", "train.weight_decay",
            "train.betas", "train.stop_when", "train.checkpoint_every", "data.window", "data.prior", "data.tasks",
            "data.grammar", "model.n_layers", "model.d_model", "model.n_heads", "model.vocab_size", "model.n_ctx",
            "model.preset", "model.act", "eval.n", "eval.n_during", "seed", "train.nonsense", "nonsense.key",
            "train", "model", ""]


def _dims_ok(key: str, value: str) -> bool:
    """Model dimensions are fuzzed up to sizes that fit in memory (a 10^6-wide model is a legal config that would
    try to allocate terabytes; the caps on dimensions are a separate question from the error path)."""
    if key in ("model.d_model", "model.n_layers", "model.n_heads", "eval.n", "eval.n_during", "train.batch_size",
               "data.window", "train.eval_every", "train.checkpoint_every"):
        try:
            return abs(float(yaml.safe_load(value))) <= 512
        except (TypeError, ValueError, yaml.YAMLError, OverflowError):
            return True
    return True


def check(argv: list, store: Path, capsys) -> int:
    """Run one invocation and assert the contract; returns its exit code."""
    try:
        code = main([*map(str, argv)])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err[-1500:])
    assert "Traceback" not in err, (argv, err[-1500:])
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) <= 3 or code == 0, (argv, err[-1500:])
    half = [p.name for p in store.iterdir() if p.is_dir() and not (p / "DONE").exists()] if store.is_dir() else []
    assert not half, (argv, half, err[-1500:])
    return code


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, str]:
    """A store with one finished pretraining (test profile), the parent the run-taking verbs may be pointed at."""
    store = tmp_path_factory.mktemp("fuzz") / "runs"
    assert main(["pretrain", "--profile", "test", "--quiet", "--runs", str(store), "--iters", "4"]) == 0
    (run,) = [p for p in store.iterdir() if p.is_dir()]
    return store, run.name


TALLY: dict[str, int] = {}


def _count(code: int) -> None:
    TALLY[str(code)] = TALLY.get(str(code), 0) + 1


@settings(FUZZ, max_examples=max(1, int(CASES * SHARE["set"])))
@given(verb=st.sampled_from(["pretrain", "finetune"]),
       sets=st.lists(st.tuples(st.sampled_from(SET_KEYS), VALUE), max_size=3),
       flags=st.lists(st.tuples(st.sampled_from(["--lr", "--seed", "--batch-size", "--prior", "--window", "--tasks",
                                                 "--c-tr", "--q", "--operand", "--task"]), VALUE), max_size=2),
       iters=st.one_of(st.integers(1, 3).map(str), ODD))
def test_training_verbs_with_odd_settings(finished, tmp_path_factory, capsys, verb, sets, flags, iters):
    store, parent = finished
    sets = [(k, v) for k, v in sets if _dims_ok(k, v)]
    argv = [verb, *([parent] if verb == "finetune" else []), "--profile", "test", "--quiet", "--runs", store]
    for flag, value in flags:
        if flag in ("--c-tr", "--q", "--operand", "--task") and verb != "finetune":
            continue
        if flag in ("--prior", "--window", "--tasks") and verb != "pretrain":
            continue
        argv += [flag, value]
    for key, value in sets:
        argv += ["--set", f"{key}={value}"]
    argv += ["--set", f"train.iters={iters}"]  # last: a drawn train.iters may not make a run take minutes
    _count(check(argv, store, capsys))


@settings(FUZZ, max_examples=max(1, int(CASES * SHARE["ref"])))
@given(verb=st.sampled_from(["eval", "prune", "probe", "attention", "diff", "reft", "resume"]),
       ref=st.one_of(st.sampled_from(["/definitely/not/a/run", "../..", ".", "*", "pretrain-", "pretrain-[0-9]",
                                      "x" * 300, "runs", "DONE", "-", "pretrain-000000000000", "~"]),
                     st.text(alphabet="abcxyz-/.*?[]0123456789", min_size=1, max_size=20)),
       real=st.booleans(),
       extra=st.lists(st.tuples(st.sampled_from(["--example", "--n", "--seed", "--against", "--k"]), VALUE),
                      max_size=2))
def test_run_verbs_with_references_that_are_no_runs(finished, capsys, verb, ref, real, extra):
    store, parent = finished
    target = parent if real else ref
    argv = [verb, target, *([ref] if verb == "diff" else []), "--runs", store]
    for flag, value in extra:
        if flag == "--example" and verb == "attention" or flag == "--against" and verb == "attention":
            argv += [flag, value]
        elif flag in ("--n", "--seed") and verb in ("prune", "probe", "attention") and not real:
            argv += [flag, value]
    if real and verb in ("eval", "resume", "diff"):  # cheap on a finished run
        _count(check(argv, store, capsys))
    elif not real:
        _count(check(argv, store, capsys))


@settings(FUZZ, max_examples=max(1, int(CASES * SHARE["data"])))
@given(group=st.sampled_from(["sample", "finetune", "derivations"]),
       flags=st.lists(st.tuples(st.sampled_from(["--n", "--task", "--operand", "--prior", "--window", "--seed",
                                                 "--c-tr", "--q", "--pt-operand", "--grammar"]), VALUE), max_size=3))
def test_data_verbs_with_odd_flags(tmp_path, capsys, group, flags):
    argv = ["data", group]
    for flag, value in flags:
        if flag == "--n":
            try:
                if abs(int(value)) > 50:
                    continue
            except ValueError:
                pass
        argv += [flag, value]
    _count(check(argv, tmp_path / "runs", capsys))


@settings(FUZZ, max_examples=max(1, int(CASES * SHARE["spec"])))
@given(body=st.one_of(
    st.binary(max_size=200).map(lambda b: ("bytes", b)),
    st.text(max_size=200).map(lambda t: ("text", t)),
    st.fixed_dictionaries({
        "name": st.sampled_from(["x", "", "pcfg-counter"]),
        "kind": st.sampled_from(["pcfg", "tracr", "stories", "nope", ""]),
        "axes": st.dictionaries(st.sampled_from(["prior", "lr", "c_tr", "blocks", "pt_iters", "seed", "bogus"]),
                                st.lists(st.one_of(st.sampled_from(["low", "M", "L", "S", "high"]),
                                                   st.integers(-2, 3), st.floats(allow_nan=True), st.booleans()),
                                         max_size=3), max_size=4),
        "base": st.dictionaries(st.sampled_from(["pretrain", "finetune", "reft", "tune"]),
                                st.dictionaries(st.sampled_from(["train.lr", "train.weight_decay", "data.task",
                                                                 "train.iters", "data.operand"]),
                                                st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                                          st.integers(-3, 3), st.booleans(), st.text(max_size=4)),
                                                max_size=2), max_size=2),
    }).map(lambda d: ("yaml", d)),
    # any nesting and size (issue 34): brackets thousands deep, nested aliases, long flat lists
    st.tuples(st.sampled_from(["[", "{a: ", "- "]), st.integers(1, 6000)).map(lambda t: ("deep", t)),
    st.integers(1, 12).map(lambda n: ("aliases", n)),
    st.integers(1, 300_000).map(lambda n: ("long", n))))
def test_spec_files_of_any_content(tmp_path, capsys, body):
    kind, content = body
    spec = tmp_path / "spec.yaml"
    if kind == "bytes":
        spec.write_bytes(content)
    elif kind == "text":
        spec.write_text(content)
    elif kind == "deep":
        opener, depth = content
        closer = {"[": "]", "{a: ": "}", "- ": ""}[opener]
        nested = opener * depth + "x" + closer * depth if closer else "\n".join("  " * i + opener for i in range(depth))
        spec.write_text(f"name: deep\nkind: pcfg\naxes: {nested}\n")
    elif kind == "aliases":
        lines = ["  a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, content)]
        spec.write_text("name: laughs\nkind: pcfg\naxes:\n" + "\n".join(lines) + "\n")
    elif kind == "long":
        spec.write_text("name: long\nkind: pcfg\naxes: {bogus: [" + ", ".join(["1"] * content) + "]}\n")
    else:
        content = {**content, "profiles": {"test": {"seeds": 1}}}
        # a drawn valid grid trains: keep it to the test profile's seconds by capping what it may run
        spec.write_text(yaml.safe_dump(content))
    store = tmp_path / "runs"
    code = check(["reproduce", spec, "--profile", "test", "--runs", store, "--quiet", "--seeds", "1"], store, capsys)
    _count(code)


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    """A tiny GPT-2 pair that audits in seconds (tests/tiny_lm.py), and its capability file."""
    pytest.importorskip("transformers")
    import tiny_lm as T

    root = tmp_path_factory.mktemp("fuzz_audit")
    return (*T.build_pair("gpt2", root), T.write_capability(root / "cap.jsonl"))


AUDIT_FLAGS = ["--seeds", "--steps", "--lr", "--lora", "--probe-iters", "--batch-size", "--batch-tokens",
               "--attack-share", "--dtype", "--device", "--prompt-field", "--answer-field", "--choices-field",
               "--split", "--out"]
#: options whose drawn size sets how long a case computes: kept to sizes a tiny audit does in seconds
AUDIT_SIZES = ("--seeds", "--steps", "--probe-iters", "--batch-size")


@settings(FUZZ, max_examples=max(1, int(CASES * SHARE["audit"])))
@given(flags=st.lists(st.tuples(st.sampled_from(AUDIT_FLAGS), VALUE), max_size=3),
       control=st.booleans(), chat=st.booleans())
def test_audit_with_odd_options(tiny_pair, tmp_path_factory, capsys, flags, control, chat):
    base, finetuned, never, cap = tiny_pair
    out = tmp_path_factory.mktemp("audit_out")
    argv = ["audit", base, finetuned, "--capability", cap, "--quiet", "--force", "--out", out,
            "--seeds", "1", "--steps", "2", "--probe-iters", "5", *(["--control", never] if control else []),
            *(["--chat-template"] if chat else [])]
    for flag, value in flags:
        if flag in AUDIT_SIZES and not _small(value):
            continue
        argv += [flag, value]
    _count(check(argv, tmp_path_factory.mktemp("no_store"), capsys))


def _small(value: str) -> bool:
    try:
        return abs(float(yaml.safe_load(value))) <= 8
    except (TypeError, ValueError, yaml.YAMLError, OverflowError):
        return True


def test_zz_the_fuzz_ran_its_cases(tmp_path):
    """The tally of every case above (named to run last in this file): how many, and their exit codes."""
    total = sum(TALLY.values())
    (Path(os.environ.get("FUZZ_TALLY", tmp_path / "tally.json"))).write_text(json.dumps(TALLY))
    print(f"fuzz: {total} cases, exit codes {TALLY}")
    assert total >= 0.8 * CASES * sum(SHARE.values()) - 5
