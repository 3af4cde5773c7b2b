"""Trust (issue 17): no silent NaN or corrupt weights, one line and exit 2 for every bad input or bad file, and a
run that resumes after any fault. Each test reproduces a defect a hostile-but-fair user found, through the
command line a user types (the test profile: seconds per run)."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TEST = ["--profile", "test", "--quiet"]


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "wrapperlab", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def one_line_exit_2(r, *words: str) -> str:
    """The refusal contract: exit 2, one error line naming what is wrong (after at most two progress lines such as
    "pretraining into ..."), no traceback."""
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    errors = [line for line in lines if re.match(r"wrapperlab( [a-z-]+)*: error: ", line)]  # ours or argparse's
    assert len(lines) <= 3 and len(errors) == 1, r.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


def runs(store: Path) -> list[Path]:
    return sorted(p for p in store.iterdir() if p.is_dir()) if store.exists() else []


def unfinished(store: Path) -> list[Path]:
    return [p for p in runs(store) if not (p / "DONE").exists()]


def flip_bytes(path: Path, n: int = 200, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    start = len(data) // 2 if at is None else at
    for i in range(start, min(start + n, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def store(tmp_path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def pretrained(store) -> Path:
    r = run_cli("pretrain", *TEST, "--runs", store)
    assert r.returncode == 0, r.stderr
    (run,) = runs(store)
    return run


# --- divergence: a non-finite loss stops the run, keeps the last good checkpoint, never writes DONE -----------------

def test_a_diverging_run_stops_with_one_line_and_no_done(store):
    r = run_cli("pretrain", *TEST, "--runs", store, "--lr", "1e6")
    line = one_line_exit_2(r, "diverged", "step")
    assert "lr" in line
    (run,) = runs(store)
    assert not (run / "DONE").exists() and not (run / "model.safetensors").exists()
    pointer = run / "checkpoint" / "checkpoint.json"
    if pointer.exists():  # whatever checkpoint is kept holds finite weights only
        weights = load_file(str(run / "checkpoint" / json.loads(pointer.read_text())["weights"]))
        assert all(torch.isfinite(t).all() for t in weights.values())


def test_a_run_that_diverges_before_its_first_checkpoint_leaves_no_run_behind(store):
    """Nothing to resume from and a re-run that repeats the divergence: the directory is cleared (only its lock file
    stays), so no listing or resume mistakes it for a run that can be finished; a re-run says the same one line."""
    argv = ("pretrain", *TEST, "--runs", store, "--lr", "1e6", "--set", "train.checkpoint_every=1000")
    one_line_exit_2(run_cli(*argv), "diverged")
    (run,) = runs(store)
    assert [p.name for p in run.iterdir()] == [".lock"]
    one_line_exit_2(run_cli("resume", run.name, "--runs", store, "--quiet"), "config.json")
    one_line_exit_2(run_cli(*argv), "diverged")
    assert [p.name for p in run.iterdir()] == [".lock"]


@pytest.mark.parametrize("damage", ["flip", "delete"])
def test_a_finished_run_whose_weights_are_damaged_is_computed_again_not_reused(pretrained, store, damage):
    """DONE alone is not trusted: the final weights must hold the sha256 recorded when they were written. A damaged
    or missing file is said in one line and the run computed again — to the same weights, bit for bit."""
    import hashlib

    weights = pretrained / "model.safetensors"
    good = hashlib.sha256(weights.read_bytes()).hexdigest()
    flip_bytes(weights) if damage == "flip" else weights.unlink()
    for argv in (["pretrain", *TEST, "--runs", store], ["resume", pretrained.name, "--runs", store, "--quiet"]):
        r = run_cli(*argv)
        assert r.returncode == 0, r.stderr
        assert "computing it again" in r.stderr and "reusing finished run" not in r.stderr
        assert ("missing" if damage == "delete" else "sha256") in r.stderr
        assert hashlib.sha256(weights.read_bytes()).hexdigest() == good
        flip_bytes(weights) if damage == "flip" else weights.unlink()


@pytest.mark.parametrize("argv", [["--lr", "inf"], ["--lr", "nan"], ["--set", "train.lr=.inf"],
                                  ["--set", "train.warmup_frac=.nan"], ["--set", "train.iters=true"],
                                  ["--set", "train.eval_at=[-5]"], ["--set", "train.batch_size=false"],
                                  ["--tasks", "count,count"], ["--set", "model.vocab_size=3"],
                                  ["--set", "model.n_ctx=5"], ["--seed", "99999999999999999999999"],
                                  ["--set", "model=22"], ["--set", "=3"], ["--set", "train..lr=1"]])
def test_nonsense_values_are_refused_before_a_run_dir_exists(store, argv):
    one_line_exit_2(run_cli("pretrain", *TEST, "--runs", store, *argv))
    assert runs(store) == []


def test_a_spec_with_a_nonfinite_value_is_refused_before_anything_runs(tmp_path, store):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\nkind: pcfg\nbase:\n  finetune: {data.task: count, data.operand: b, "
                    "data.pt_operand: a, train.weight_decay: .inf}\naxes: {prior: [low], lr: [M], c_tr: [1.0]}\n")
    one_line_exit_2(run_cli("reproduce", spec, "--profile", "test", "--runs", store, "--quiet"), "weight_decay")
    assert runs(store) == []


# --- integrity: weights and checkpoints are verified against the sha256 recorded when they were written -----------

def test_flipped_bytes_in_finished_weights_are_named_not_used(pretrained, store):
    flip_bytes(pretrained / "model.safetensors")
    one_line_exit_2(run_cli("eval", pretrained.name, "--runs", store), "model.safetensors", "sha256")
    before = runs(store)
    one_line_exit_2(run_cli("finetune", pretrained.name, *TEST, "--runs", store), "model.safetensors")
    assert runs(store) == before  # no child run is made from corrupt content


def test_a_corrupt_checkpoint_falls_back_to_the_previous_one(store):
    """Two checkpoints, the latest damaged: loading falls back to the previous; both damaged: the error names one."""
    from wrapperlab.models.gpt import GPT
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.pcfg.configs import pretrain_config
    from wrapperlab.training.checkpoint import load_checkpoint, save_checkpoint
    from wrapperlab.training.optim import make_optimizer

    cfg = pretrain_config("test")
    model = GPT(cfg.model)
    opt = make_optimizer(model, cfg.train)
    directory = store / "ckpt"
    save_checkpoint(directory, 10, model, opt, {})
    save_checkpoint(directory, 20, model, opt, {})
    pointer = json.loads((directory / "checkpoint.json").read_text())
    flip_bytes(directory / pointer["weights"])
    got = load_checkpoint(directory, GPT(cfg.model), make_optimizer(model, cfg.train))
    assert got is not None and got["step"] == 10
    flip_bytes(directory / got["weights"])
    from wrapperlab.errors import IntegrityError
    with pytest.raises(IntegrityError, match="model-00000010.safetensors"):
        load_checkpoint(directory, GPT(cfg.model), make_optimizer(model, cfg.train))
    assert RunStore(store).runs() == []


def _edit_step(pointer: Path) -> None:
    data = json.loads(pointer.read_text())
    pointer.write_text(json.dumps({**data, "step": 5}, indent=1))


@pytest.mark.parametrize("damage, named", [
    (lambda ckpt: flip_bytes(ckpt / "model-00000020.safetensors"), "model-00000020.safetensors"),
    # issue 34: an edited step made the resume continue from step 5 and finish with other weights
    (lambda ckpt: _edit_step(ckpt / "checkpoint.json"), "checkpoint.json"),
])
def test_a_killed_run_whose_last_checkpoint_is_corrupt_resumes_bit_identically(store, tmp_path, kill_at_checkpoint,
                                                                               damage, named):
    """Killed after its step-20 checkpoint, which is then damaged (its weights, or its pointer edited): the same
    command resumes from step 10 and ends with exactly the weights of an uninterrupted run."""
    from wrapperlab.cli.main import main

    # one thread in every part (in this process and in the subprocess): the thread count changes a run's bits, and
    # an earlier test may have left this process at another count
    args = ["pretrain", *TEST, "--set", "train.checkpoint_every=10", "--threads", "1"]
    threads = torch.get_num_threads()  # restored below: --threads in this process outlives the call
    assert main([*args, "--runs", tmp_path / "clean"]) == 0
    kill_at_checkpoint(20)
    assert main([*args, "--runs", store]) == 130
    kill_at_checkpoint.disarm()
    (run,) = runs(store)
    damage(run / "checkpoint")
    r = run_cli(*args, "--runs", store)
    assert r.returncode == 0, r.stderr
    assert named in r.stderr and "step 10" in r.stderr  # the fallback is said, not silent
    (clean,) = runs(tmp_path / "clean")
    torch.set_num_threads(threads)
    a, b = load_file(str(run / "model.safetensors")), load_file(str(clean / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_effective_thread_count_is_recorded_and_a_resume_at_another_is_said(store, kill_at_checkpoint):
    """runtime.json holds the threads a run trained with (the flag's value, else this process's count); resumed at
    another count, the run says so in one line and keeps what the first attempt ran with."""
    from wrapperlab.cli.main import main

    args = ["pretrain", *TEST, "--set", "train.checkpoint_every=10", "--runs", store]
    threads = torch.get_num_threads()
    kill_at_checkpoint()
    assert main([*args, "--threads", "1"]) == 130
    torch.set_num_threads(threads)
    (run,) = runs(store)
    assert json.loads((run / "runtime.json").read_text())["threads"] == 1
    r = run_cli(*args, "--threads", "2")
    assert r.returncode == 0, r.stderr
    said = [line for line in r.stderr.splitlines() if "resumed with 2 threads" in line]
    assert len(said) == 1 and "begun with 1" in said[0]
    recorded = json.loads((run / "runtime.json").read_text())
    assert recorded["threads"] == 2 and [e["threads"] for e in recorded["earlier"]] == [1]


# --- resumable after any fault -----------------------------------------------------------------------------------

def test_a_torn_metrics_line_is_tolerated(pretrained, store):
    with open(pretrained / "metrics.jsonl", "a") as f:
        f.write('{"step": 99, "lo')
    r = run_cli("eval", pretrained.name, "--runs", store)
    assert r.returncode == 0, r.stderr
    from wrapperlab.runs.store import RunStore

    assert all("step" in m for m in RunStore(store).resolve(pretrained.name).metrics())


def test_a_corrupt_config_json_on_resume_is_rewritten_from_the_id(store):
    r = run_cli("pretrain", *TEST, "--runs", store, "--iters", "20")
    assert r.returncode == 0, r.stderr
    (run,) = runs(store)
    (run / "DONE").unlink()
    good = (run / "config.json").read_text()
    (run / "config.json").write_text("{torn")
    r = run_cli("pretrain", *TEST, "--runs", store, "--iters", "20")
    assert r.returncode == 0, r.stderr
    assert (run / "config.json").read_text() == good and (run / "DONE").exists()


def test_a_failure_before_the_first_checkpoint_leaves_no_duplicate_metrics(store):
    args = ("pretrain", *TEST, "--runs", store, "--set", "train.eval_at=[0]", "--set", "train.checkpoint_every=40")
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    (run,) = runs(store)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    # replay: as if the first attempt died after logging (no checkpoint yet) and the run was started again
    (run / "DONE").unlink()
    (run / "model.safetensors").unlink()
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == len(set(steps)) == len(lines)


# --- one error path: file-system and lookup failures are one line ------------------------------------------------

@pytest.mark.parametrize("ref", ["/definitely/not/a/run", "x" * 400, "../../etc"])
def test_a_run_reference_that_is_no_run_is_one_line(store, ref):
    one_line_exit_2(run_cli("eval", ref, "--runs", store))
    one_line_exit_2(run_cli("prune", ref, "--runs", store))


def test_a_binary_spec_file_is_one_line(tmp_path, store):
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(os.urandom(512) + b"\xff\xfe\x00")
    one_line_exit_2(run_cli("reproduce", spec, "--profile", "test", "--runs", store, "--quiet"), "spec.yaml")


def test_a_store_that_is_a_file_is_one_line(tmp_path):
    not_a_dir = tmp_path / "runs"
    not_a_dir.write_text("I am a file")
    one_line_exit_2(run_cli("pretrain", *TEST, "--runs", not_a_dir), "runs")
    assert not_a_dir.read_text() == "I am a file"


def test_attention_with_a_negative_example_is_one_line(pretrained, store):
    one_line_exit_2(run_cli("attention", pretrained.name, "--runs", store, "--example", "-1"), "example")


def test_stories_generate_into_a_directory_is_one_line(tmp_path):
    one_line_exit_2(run_cli("stories", "generate", "--n", "2", "--out", tmp_path), "out")


def test_debug_shows_the_traceback(store):
    r = run_cli("--debug", "eval", "/definitely/not/a/run", "--runs", store)
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_nan_is_never_written_into_result_json(tmp_path):
    from wrapperlab.runs.store import Run

    run = Run(tmp_path / "pretrain-000000000000")
    run.path.mkdir()
    run.write_json("result.json", {"loss": math.nan, "nested": [1.0, math.inf]})
    data = json.loads((run.path / "result.json").read_text())  # strict JSON: NaN is not valid
    assert data == {"loss": None, "nested": [1.0, None]}


# --- stories on real data: small files, no Twist stories, streamed shards, exclusions before the record cap --------

def _real_file(path: Path, n: int, exclude: tuple[str, ...] = ()) -> Path:
    """A TinyStories-Instruct-format text file of ``n`` generated records (the real format, made here)."""
    from wrapperlab.data.stories.generator import StoryGenerator
    from wrapperlab.data.stories.records import END_OF_TEXT, format_record

    recs = StoryGenerator(3, exclude=exclude).records(n)
    path.write_text("".join(f"{format_record(r)}\n{END_OF_TEXT}\n" for r in recs))
    return path


@pytest.mark.parametrize("n, exclude, words", [(5, (), "no held-out Twist"), (0, (), "no training records"),
                                               (300, ("Twist",), "no held-out Twist")])
def test_a_real_corpus_too_small_for_its_measurements_is_one_line_before_a_run_dir(tmp_path, store, n, exclude,
                                                                                   words):
    source = _real_file(tmp_path / "small.txt", n, exclude) if n else tmp_path / "empty.txt"
    source.touch()
    one_line_exit_2(run_cli("stories", "pretrain", *TEST, "--runs", store, "--set", f"data.source={source}"),
                    "data.source", words)
    assert runs(store) == []


def test_a_json_shard_is_streamed_not_read_whole(tmp_path):
    """Records come out before the end of the file is parsed: a shard whose tail is damaged still yields its first
    records (decoding the whole file first, as before, failed on the tail and held the whole file in memory)."""
    from wrapperlab.data.stories.loader import read_records

    shard = tmp_path / "data00.json"
    items = [{"story": f"Story number {i}.", "instruction": {"words": ["a"], "features": ["Twist"]}} for i in range(3)]
    shard.write_text(json.dumps(items)[:-1] + ", {" + "x" * (3 << 20))  # 3 MB of damage after the third record
    assert [r.story for r in read_records(shard, limit=3)] == [i["story"] for i in items]


def test_exclusions_apply_before_the_record_cap_on_real_data(tmp_path):
    """The "not in PT" control trains on as many records as its twin: n_records counts kept records."""
    from wrapperlab.data.stories.corpus import StoriesDataConfig, records

    source = _real_file(tmp_path / "real.txt", 400)
    twin = list(records(StoriesDataConfig(source=str(source), n_records=100)))
    control = list(records(StoriesDataConfig(source=str(source), n_records=100, exclude=("Twist",))))
    assert len(twin) == len(control) == 100
    assert not any("Twist" in r.has for r in control) and any("Twist" in r.has for r in twin)


def test_a_grid_above_the_cap_asks_for_yes_with_its_size_and_estimate(tmp_path, store):
    """A typo in an axis (2,001 c_tr values; 12.6 million runs) is refused before anything is written, with its
    size and estimated time; --yes is the way past the cap (checked on the count, not run)."""
    import yaml

    from wrapperlab.orchestration.reproduce import GRID_CAP, check_size, estimate_seconds, grid_runs
    from wrapperlab.orchestration.spec import load_spec
    from wrapperlab.runs.store import RunStore

    base = {"finetune": {"data.task": "count", "data.operand": "b", "data.pt_operand": "a"}}
    spec = tmp_path / "big.yaml"
    spec.write_text(yaml.safe_dump({"name": "big", "kind": "pcfg", "base": base, "axes": {
        "prior": ["low"], "lr": ["M"], "c_tr": [i / 4000 for i in range(GRID_CAP + 1)]}}))
    huge = tmp_path / "huge.yaml"
    huge.write_text(yaml.safe_dump({"name": "huge", "kind": "pcfg", "base": base, "profiles": {"test": {"seeds": 200}},
                                    "axes": {"prior": ["low", "high"], "lr": [1e-4, 2e-4, 3e-4],
                                             "c_tr": [i / 40000 for i in range(10_000)]}}))
    line = one_line_exit_2(run_cli("reproduce", spec, *TEST, "--runs", store), f"{GRID_CAP + 1:,} runs", "--yes")
    assert "nodes" in line
    one_line_exit_2(run_cli("reproduce", huge, *TEST, "--runs", store), "12,000,000 runs", "--yes")
    assert not store.exists()
    assert f"{GRID_CAP:,}" in run_cli("reproduce", "--help").stdout
    # in-process: --yes passes the check; an estimate comes from the store's earlier computed nodes of the profile
    big = load_spec(spec)
    assert grid_runs(big, "test") == GRID_CAP + 1
    check_size(big, "test", RunStore(store), None, 1, yes=True)
    (store / "reproductions").mkdir(parents=True)
    (store / "reproductions" / "x-test.json").write_text(json.dumps({"nodes": [
        {"stage": "finetune", "seconds": 3.0, "reused": False}, {"stage": "finetune", "seconds": 99.0, "reused": True},
        {"stage": "pretrain", "seconds": 10.0, "reused": False}]}))
    from wrapperlab.orchestration.spec import expand

    seconds, unknown = estimate_seconds(expand(big, "test"), RunStore(store), "test", workers=2)
    assert seconds == pytest.approx((10.0 + 3.0 * (GRID_CAP + 1)) / 2) and unknown == []


def test_help_shows_defaults_examples_that_parse_and_every_shipped_spec():
    """Every verb's --help ends with examples, each of which the parser accepts as typed; options show their
    defaults; reproduce --help names every shipped spec."""
    import argparse
    import shlex

    from wrapperlab.cli.main import build_parser
    from wrapperlab.orchestration.spec import shipped_specs

    parser = build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    checked = 0
    for name, sub in verbs.items():
        groups = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        leaves = groups[0].choices.items() if groups else [(name, sub)]
        for leaf, p in leaves:
            if name == "data":
                continue  # data dumps: their flags are the data config's own
            assert p.epilog and p.epilog.startswith("examples:"), f"{name} {leaf}: no examples"
            for line in p.epilog.splitlines()[1:]:
                argv = shlex.split(line.split("  #")[0])[1:]
                parser.parse_args(argv)  # exits 2 on an example that does not parse
                checked += 1
    assert checked >= 40
    text = verbs["reproduce"].format_help()
    assert all(spec in text for spec in shipped_specs())
    assert "(default: cpu)" in verbs["eval"].format_help() and "(default: 0)" in verbs["prune"].format_help()


# --- a full or read-only disk: one line, and the store as it was ------------------------------------------------------

@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MB tmpfs (skipped where this process may not mount one)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not allowed here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_or_read_only_disk_is_one_line_and_leaves_the_store_as_it_was(tiny_disk):
    store = tiny_disk / "runs"
    assert run_cli("pretrain", *TEST, "--iters", "3", "--runs", store).returncode == 0
    (finished,) = runs(store)
    filler = tiny_disk / "filler"
    with open(filler, "wb") as f:  # fill the disk to the last block
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    one_line_exit_2(run_cli("pretrain", *TEST, "--iters", "4", "--runs", store), "No space left")
    assert runs(store) == [finished]  # the half-made run was removed
    filler.unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    one_line_exit_2(run_cli("pretrain", *TEST, "--iters", "5", "--runs", store), "Read-only")
    assert runs(store) == [finished] and (finished / "DONE").exists()
    reused = run_cli("pretrain", *TEST, "--iters", "3", "--runs", store)  # issue 34: was ".lock: Permission denied"
    assert reused.returncode == 0 and "reusing finished run" in reused.stderr, reused.stderr
    assert run_cli("eval", finished.name, "--n", "50", "--runs", store).returncode == 0  # still readable


@pytest.mark.parametrize("stage, setting", [("reft", "train.iters: true"), ("finetune", "train.lr: .inf"),
                                            ("pretrain", "model.n_ctx: 5")])
def test_a_stories_spec_is_checked_whole_before_anything_runs(tmp_path, store, stage, setting):
    """A bad value in any stage of a stories spec is one line before the first pretraining (it used to stop the
    reproduction after the pretrainings had run)."""
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"name: bad\nkind: stories\nbase:\n  {stage}: {{{setting}}}\n"
                    "axes: {protocol: [filter], lr: [M]}\nanalyses: {reft: {baselines: true, corpora: [twist]}}\n")
    one_line_exit_2(run_cli("reproduce", spec, "--profile", "test", "--runs", store, "--quiet"), setting.split(":")[0])
    assert runs(store) == []


@pytest.mark.parametrize("stage, setting", [("reft", "train.iters: true"), ("finetune", "noise_std: -1"),
                                            ("finetune", "data.max_len: 99")])
def test_a_tracr_spec_is_checked_whole_before_anything_compiles(tmp_path, store, stage, setting):
    """A bad value in a Tracr spec's fine-tuning or reFT is one line before the compilation (it used to surface only
    after JAX had compiled the program and the fine-tunings had run)."""
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"name: bad\nkind: tracr\nprogram: counter\nbase:\n  {stage}: {{{setting}}}\n"
                    "axes: {lr: [M], c_tr: [1.0]}\nanalyses: {reft: {}}\n")
    one_line_exit_2(run_cli("reproduce", spec, "--profile", "test", "--runs", store, "--quiet"), setting.split(":")[0])
    assert runs(store) == []


# --- hostile specs and reports (issue 34): bounded YAML, names confined to the store, damaged records named -----------

def _laughs(levels: int = 9) -> str:
    """Nested aliases: a few lines that stand for 9 ** levels values."""
    lines = ["  a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines)


@pytest.mark.parametrize("body, words", [
    ("axes: " + "[" * 5000 + "]" * 5000, ["nesting deeper"]),       # was a RecursionError, 3,000 lines
    ("axes:\n" + _laughs(), ["aliases"]),                            # was a hang at 100 % CPU
    ("axes: {c_tr: [" + ", ".join(["1"] * 400_000) + "]}", ["characters"]),
])
def test_a_spec_too_deep_aliased_or_large_is_one_line_before_anything_runs(tmp_path, store, body, words):
    spec = tmp_path / "hostile.yaml"
    spec.write_text(f"name: hostile\nkind: pcfg\n{body}\n")
    one_line_exit_2(run_cli("reproduce", spec, "--profile", "test", "--runs", store, "--quiet"), "hostile.yaml", *words)
    assert not store.exists() or not any(store.iterdir())


@pytest.mark.parametrize("name", ["../../../../outside", "a/b", "/abs", ".hidden", ""])
def test_a_spec_name_cannot_leave_the_store(tmp_path, store, name):
    from wrapperlab.orchestration.spec import _read

    text = _read("pcfg-counter")[0]
    spec = tmp_path / "named.yaml"
    spec.write_text(re.sub(r"^name: .*$", f"name: {json.dumps(name)}", text, count=1, flags=re.M))
    one_line_exit_2(run_cli("reproduce", spec, "--profile", "test", "--runs", store, "--quiet"), "name")
    assert not (tmp_path / "outside-test.json").exists() and not store.exists()


@pytest.mark.parametrize("content", [
    "garbage{", "[1]", '{"spec": "x", "kind": "pcfg", "profile": "q", "nodes": 5}',
    '{"spec": "x", "kind": "pcfg", "profile": "q", "nodes": [7]}',
    '{"spec": "x", "kind": "pcfg", "profile": "q", "nodes": [{"stage": "pretrain"}]}',
    '{"spec": "x", "kind": "nope", "profile": "q", "nodes": []}',
])
def test_report_on_a_damaged_reproduction_record_names_it_in_one_line(tmp_path, content):
    (tmp_path / "reproductions").mkdir()
    (tmp_path / "reproductions" / "damaged-q.json").write_text(content)
    one_line_exit_2(run_cli("report", tmp_path), "damaged-q.json")


@pytest.mark.parametrize("size", ["1m", "3m"])
def test_a_full_disk_mid_run_is_one_line_and_resumes_identically_after_space_is_freed(tmp_path, size):
    """1 MB fills at the first checkpoint (the optimiser state: torch.save said only "unexpected pos"), 3 MB at the
    third (safetensors' SafetensorError): each was a 40-50-line traceback, exit 1, with a partial file left."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        argv = ["pretrain", *TEST, "--iters", "200", "--threads", "1"]
        one_line_exit_2(run_cli(*argv, "--runs", mnt / "runs"), "No space left", "run the same command again")
        for run in runs(mnt / "runs"):  # no partial file: every weights/optimiser file is one a pointer names
            for f in (run / "checkpoint").glob("*"):
                assert not f.name.endswith(".tmp"), f
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        assert run_cli(*argv, "--runs", mnt / "runs").returncode == 0
        assert run_cli(*argv, "--runs", tmp_path / "ref").returncode == 0
        (resumed,), (ref,) = runs(mnt / "runs"), runs(tmp_path / "ref")
        assert (resumed / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_short_metrics_append_is_cut_back_so_no_torn_line_is_left(pretrained, store, monkeypatch):
    """A full disk mid-append wrote part of a line; the torn tail was then dropped on resume, and with it a step
    before the checkpoint that is never logged again. Now the part written is cut back off."""
    from wrapperlab.runs.store import RunStore

    run = RunStore(store).resolve(pretrained.name)
    before = (pretrained / "metrics.jsonl").read_bytes()
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, data[:len(data) // 2]))
    with pytest.raises(OSError, match="No space"):
        run.log_metrics({"step": 10**6, "loss": 1.0})
    monkeypatch.setattr(os, "write", real)
    assert (pretrained / "metrics.jsonl").read_bytes() == before
