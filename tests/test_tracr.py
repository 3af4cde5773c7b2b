"""Tracr: compiled programs converted to our GPT must compute exactly what tracr computes."""

import random

import numpy as np
import pytest
import torch

pytest.importorskip("tracr", reason="the tracr extra is not installed (pip install 'wrapperlab[tracr]')")

from wrapperlab.errors import ConfigError  # noqa: E402
from wrapperlab.models.tracr import CompiledModel  # noqa: E402
from wrapperlab.models.tracr.compile import compile_program, reference  # noqa: E402
from wrapperlab.models.tracr.programs import PROGRAMS, program  # noqa: E402

N_INPUTS = 500


def random_inputs(name: str, n: int, seed: int = 0) -> list[list[str]]:
    spec, rng = program(name), random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(spec.min_len, spec.max_seq_len)
        out.append(rng.sample(spec.vocab, length) if spec.distinct else [rng.choice(spec.vocab) for _ in range(length)])
    return out


@pytest.fixture(scope="module", params=sorted(PROGRAMS))
def compiled(request):
    return request.param, *compile_program(request.param)


def test_parity_with_tracr(compiled):
    """Decoded outputs equal tracr's on 500 random inputs (run as one padded batch on our side) where the
    program defines them (every position, or RASP index 1 for the paper's programs, whose other
    positions average several values into near-ties), and the residual stream after every sub-layer
    matches within 1e-4 at every real position."""
    name, ours, theirs = compiled
    inputs = random_inputs(name, N_INPUTS)
    ref_decoded, ref_resid = reference(theirs, inputs)
    model = ours.model()
    decoded = ours.run(inputs, model)
    if ours.answer == "index1":
        decoded, ref_decoded = [d[1] for d in decoded], [d[1] for d in ref_decoded]
    if ours.output_values is None:  # numerical output: compare values
        assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(decoded, ref_decoded))
    else:
        assert decoded == ref_decoded
    hooks = [f"blocks.{l}.hook_resid_{w}" for l in range(ours.gpt.n_layers) for w in ("mid", "post")]
    _, cache = model.run_with_cache(torch.from_numpy(ours.encode(inputs)), names_filter=lambda n: n in hooks)
    worst = 0.0
    for i, x in enumerate(inputs):
        for j, hook in enumerate(hooks):
            worst = max(worst, float(np.abs(cache[hook][i, : 1 + len(x)].numpy() - ref_resid[i][j]).max()))
    assert worst < 1e-4, worst


def test_compiled_model_round_trips_through_files(tmp_path):
    compiled, _ = compile_program("counter")
    compiled.save(tmp_path / "counter")
    loaded = CompiledModel.load(tmp_path / "counter")
    assert loaded.residual_labels == compiled.residual_labels and loaded.input_vocab == compiled.input_vocab
    inputs = random_inputs("counter", 50)
    assert loaded.run(inputs) == compiled.run(inputs)
    assert loaded.model().residual_labels[:3] == compiled.residual_labels[:3]


def test_counter_and_max_identifier_compute_the_papers_tasks():
    """Counter: count(a) at RASP index 1; Max-identifier: the 5th token in the order a > b > c ..."""
    counter, _ = compile_program("counter")
    inputs = random_inputs("counter", 200, seed=1)
    assert [out[1] for out in counter.run(inputs)] == [x.count("a") for x in inputs]
    maxid, _ = compile_program("max-identifier")
    assert maxid.run([list("bdafhmxpqn")])[0][1] == "h"  # the paper's Fig. 13 example
    inputs = random_inputs("max-identifier", 200, seed=1)
    assert [out[1] for out in maxid.run(inputs)] == [sorted(x)[4] for x in inputs]


def test_programs_compiled_for_the_fine_tuning_target_compute_it_exactly():
    """The Tracr Scr.+FT baseline's model: counter-b counts b (never a), max-identifier-6 finds the 6th largest; the
    same architecture as the program it stands beside (so its reFT is comparable step for step)."""
    counter_b, _ = compile_program("counter-b")
    inputs = random_inputs("counter", 200, seed=2)
    assert [out[1] for out in counter_b.run(inputs)] == [x.count("b") for x in inputs]
    counter_a, _ = compile_program("counter")
    assert counter_b.gpt == counter_a.gpt and program("counter-b").task == "counter"
    sixth, _ = compile_program("max-identifier-6")
    inputs = [x for x in random_inputs("max-identifier", 200, seed=2) if len(x) >= 6]
    assert [out[1] for out in sixth.run(inputs)] == [sorted(x)[5] for x in inputs]
    with pytest.raises(ConfigError, match="counter-<letter>"):
        program("counter-z")


def test_the_counter_spec_reverse_fine_tunes_each_ft_lr_at_the_same_reft_lrs_beside_baselines():
    """Table 4 without the confound: the fine-tunings at η_M and η_L each get reFT at η_M, η_S and η_VS; per
    (seed, reFT lr) one Scr.+FT (from the program compiled for b) and one Scr. run, listed before the reFTs that
    wait for them; baselines without named reFT lrs are refused before anything runs."""
    from wrapperlab.orchestration.spec import load_spec
    from wrapperlab.settings.tracr.nodes import expand

    nodes = expand(load_spec("tracr-counter"), "quick")
    refts = [n for n in nodes if n.stage == "reft"]
    assert sorted((n.point["lr"], n.point["reft_lr"]) for n in refts if n.point["seed"] == 0) == sorted(
        (ft, r) for ft in ("M", "L") for r in ("M", "S", "VS"))
    assert len([n for n in nodes if n.stage == "scrft"]) == len([n for n in nodes if n.stage == "scratch"]) == 9
    compiles = [n for n in nodes if n.stage == "compile"]
    assert [c.point for c in compiles] == [{"program": "counter"}, {"program": "counter", "target": "ft"}]
    seen = set()
    for node in nodes:  # dependency order: every executor relies on it
        assert all(p in seen for p in node.parents), node.key
        seen.add(node.key)
    for node in refts:
        stages = {p.split(" ")[0] for p in node.parents}
        assert stages == {"finetune", "scrft", "scratch"}


def test_tracr_baselines_without_reft_lrs_are_refused_before_anything_runs(tmp_path):
    from wrapperlab.cli.main import main

    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\nkind: tracr\nprogram: counter\naxes: {lr: [M], c_tr: [1.0]}\n"
                    "analyses: {reft: {baselines: true}}\n")
    assert main(["reproduce", str(spec), "--profile", "test", "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    assert not list((tmp_path / "runs").glob("tracr-*"))


def test_unembedding_is_the_output_projection_not_an_identity():
    counter, _ = compile_program("counter")
    unembed = counter.state["unembed.weight"]
    assert unembed.shape == (len(counter.output_values), counter.gpt.d_model)
    for row, value in enumerate(counter.output_values):
        assert counter.residual_labels[int(unembed[row].argmax())] == f"{counter.output_label}:{value}"


def test_bad_requests_are_clear_errors():
    with pytest.raises(ConfigError, match="program"):
        program("sorting-hat")
    counter, _ = compile_program("counter")
    with pytest.raises(ConfigError, match="input token"):
        counter.encode([["a", "z"]])
    with pytest.raises(ConfigError, match="input length"):
        counter.encode([["a"] * 40])
    with pytest.raises(ConfigError, match="vocab"):
        compile_program("counter", vocab=["a", "BOS"])


def test_package_imports_without_jax():
    """Only compiling needs JAX: loading and running a compiled model, and the CLI, must not import it."""
    import subprocess
    import sys

    code = "import sys, wrapperlab.cli, wrapperlab.models.tracr; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def store_with_counter(tmp_path_factory):
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.tracr.stages import compile_config, compile_stage

    store = RunStore(tmp_path_factory.mktemp("tracr") / "runs")
    return store, compile_stage(compile_config("counter"), store, say=lambda _: None)


def test_finetune_and_reft_stages(store_with_counter):
    """Noise of the default size keeps the compiled count exact; training moves the weights; reFT
    names its parent and asks the pretraining question; the stored model reloads without JAX."""
    from wrapperlab.settings.tracr.stages import compiled_of, tracr_finetune, tracr_finetune_config, tracr_reft_config
    from wrapperlab.training.config import Runtime

    store, compiled = store_with_counter
    quiet = Runtime(progress=False)
    cfg = tracr_finetune_config(compiled.run, "test", {"train.lr": "M", "data.c_tr": 1.0})
    ft = tracr_finetune(cfg, store, quiet, say=lambda _: None)
    assert ft.result["before"]["acc_pt_cte0"] == 1.0  # noise 1e-4 does not break the compiled counter
    assert ft.result["before"]["acc_ft_cte1"] == 0.0  # count(b) = count(a) + 1 there: never right before FT
    before = compiled_of(compiled.run).state
    after = compiled_of(ft.run).state
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(before["unembed.weight"], after["unembed.weight"])  # the read-out stays fixed
    reft = tracr_finetune(tracr_reft_config(ft.run, "test"), store, quiet, say=lambda _: None, kind="tracr-reft")
    rcfg = reft.run.config()
    assert rcfg["parent"] == ft.run.id and rcfg["data"]["ask"] == "pt" and rcfg["data"]["c_tr"] == 0.0
    assert rcfg["train"]["lr"] == pytest.approx(cfg.train.lr * 0.1)
    again = tracr_finetune(cfg, store, quiet, say=lambda _: None)
    assert again.reused


def test_noise_scale_is_a_setting_that_matters(store_with_counter):
    """The paper's std 1e-3 breaks the compiled counter (its MLP reads activations in the hundreds)."""
    from wrapperlab.settings.tracr.evaluate import tracr_accuracies, tracr_test_sets
    from wrapperlab.settings.tracr.stages import add_noise, compiled_of, data_for, tracr_finetune_config

    store, compiled = store_with_counter
    model_cfg = compiled_of(compiled.run)
    data = data_for(model_cfg, tracr_finetune_config(compiled.run, "test").data)
    tests = tracr_test_sets(data, 1000, 0)
    accs = {}
    for std in (1e-4, 1e-3):
        model = model_cfg.model()
        add_noise(model, std, seed=0)
        accs[std] = tracr_accuracies(model, data, tests)["acc_pt_cte0"]
    assert accs[1e-4] >= 0.99 and accs[1e-3] < 0.9, accs


def test_tracr_cli(store_with_counter, capsys):
    from wrapperlab.cli.main import main

    store, compiled = store_with_counter
    root = str(store.root)
    assert main(["tracr", "run", compiled.run.id, "aab", "bab", "--runs", root]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("aab\t2") and out[1].startswith("bab\t1")
    assert main(["tracr", "finetune", compiled.run.id, "--profile", "test", "--lr", "S", "--c-tr", "1",
                 "--runs", root, "--quiet"]) == 0
    assert "O_PT C_Te=0 %" in capsys.readouterr().out
    ft = next(p.name for p in store.root.iterdir() if p.name.startswith("tracr-finetune"))
    # the general analysis verbs take tracr runs too
    assert main(["attention", ft, "--runs", root]) == 0 and "block 1:" in capsys.readouterr().out
    assert main(["diff", compiled.run.id, ft, "--runs", root]) == 0 and "blocks.1.mlp" in capsys.readouterr().out
    assert main(["eval", ft, "--runs", root]) == 0 and "floor O_PT" in capsys.readouterr().out
    assert main(["probe", ft, "--runs", root]) == 2
    assert "tracr maps" in capsys.readouterr().err
    bad = [["tracr", "finetune", compiled.run.id, "--lr", "XL", "--runs", root],
           ["tracr", "finetune", compiled.run.id, "--set", "data.ft=z", "--runs", root],
           ["tracr", "reft", compiled.run.id, "--runs", root],
           ["tracr", "eval", compiled.run.id, "--runs", root],
           ["tracr", "run", "nope", "a", "--runs", root],
           ["tracr", "compile", "sorting-hat", "--runs", root]]
    for argv in bad:
        assert main(argv) == 2, argv
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not list(store.root.glob("*sorting*")) and len(list(store.root.glob("tracr-compile-*"))) == 1


def test_without_the_extra_compile_says_how_to_install(tmp_path):
    """With tracr unimportable, `tracr compile` ends in one line naming the extra (exit 2) and the
    other verbs still work from a stored compiled model."""
    import subprocess
    import sys

    compiled, _ = compile_program("counter")
    compiled.save(tmp_path / "c")
    code = (
        "import sys; sys.modules['tracr'] = None\n"
        "from wrapperlab.cli.main import main\n"
        f"rc = main(['tracr', 'compile', 'counter', '--runs', {str(tmp_path / 'runs')!r}])\n"
        "assert rc == 2, rc\n"
        "from wrapperlab.models.tracr import CompiledModel\n"
        f"assert CompiledModel.load({str(tmp_path / 'c')!r}).run([list('aab')])[0][1] == 2\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'wrapperlab[tracr]'" in lines[0]
    assert not (tmp_path / "runs").exists()


def _counter_data(compiled):
    from wrapperlab.data.tracr_data import TracrData, TracrDataConfig

    return TracrData(TracrDataConfig(), compiled.input_vocab, compiled.output_values, compiled.bos, compiled.pad)


def test_single_weight_search_finds_a_planted_wrapper():
    """Plant a one-weight 'wrapper' (a block-2 MLP bias that pushes every answer to count 0): the exhaustive
    search must rank exactly that weight first and restore the compiled accuracy."""
    from wrapperlab.data.samples import stream_rng
    from wrapperlab.settings.tracr.analysis import SearchOptions, single_weight_search
    from wrapperlab.settings.tracr.evaluate import tracr_test_sets

    compiled, _ = compile_program("counter")
    data = _counter_data(compiled)
    model = compiled.model()
    target = compiled.label_index(f"{compiled.output_label}:0")
    with torch.no_grad():
        model.blocks[2].mlp.fc_out.bias[target] = 5.0
    search = data.sample(200, stream_rng(0, "prune"), c=0.0)
    result = single_weight_search(model, data, search, tracr_test_sets(data, 500, 0), compiled.residual_labels,
                                  SearchOptions(keep=3))
    assert result.baseline["acc_pt_cte0"] < 0.5  # the wrapper hides the count
    best = result.best[0]
    assert best.param == "blocks.2.mlp.fc_out.bias" and best.index == [target]
    assert best.acc_pt_cte0 == 1.0 and result.gain > 0.5
    assert best.name == f"B2 mlp.fc_out bias [{compiled.output_label}:0]"
    assert sum(best.histogram.values()) == 500 and len(best.histogram) > 2  # many classes, not a constant


def test_maps_are_labelled_by_the_residual_basis():
    from wrapperlab.settings.tracr.analysis import top_writes, tracr_maps, weight_name

    compiled, _ = compile_program("counter")
    tokens = compiled.encode([list("abacbda")])[0]
    names = [str(compiled.input_vocab[t]) for t in tokens]
    maps = tracr_maps(compiled.model(), tokens, names, compiled.residual_labels)
    patterns = np.asarray(maps["patterns"])
    assert np.allclose(patterns.sum(-1), 1.0, atol=1e-5)
    writes = dict(top_writes(maps, position=2)[1])  # block 1's MLP decodes the selector width: count = 3
    assert any(label.endswith(":3") and value > 0.5 for label, value in writes.items()), writes
    a_row, a_col = compiled.token_ids["a"], compiled.label_index("tokens:a")
    assert weight_name("embed.weight", (a_row, a_col), compiled.residual_labels, 18, 1) == f"embed [token {a_row} -> tokens:a]"


@pytest.mark.slow
def test_compiled_counter_learns_a_wrapper_at_small_lr_and_count_b_at_large(store_with_counter):
    """The quick profile's two clearest Tracr results (seed 0): with C_Tr = 1 at η_S the model answers
    count(a) + 1 and its counting head keeps attending to a, never to b; with C_Tr = 0 at η_L it learns
    count(b)."""
    from wrapperlab.settings.tracr.stages import attention_run, tracr_finetune, tracr_finetune_config
    from wrapperlab.training.config import Runtime

    store, compiled = store_with_counter
    quiet = Runtime(progress=False)
    small = tracr_finetune(tracr_finetune_config(compiled.run, "quick", {"train.lr": "S", "data.c_tr": 1.0}),
                           store, quiet, say=lambda _: None)
    after = small.result["after"]
    attention = attention_run(store, small.run.id).data["after"][1]
    print("η_S, C_Tr=1:", {k: v for k, v in after.items() if not k.startswith("by_")}, "block-1 attention:", attention)
    assert after["shortcut_cte0"] >= 0.95 and after["acc_ft_cte0"] <= 0.05
    assert attention["a"] >= 0.5 and attention["b"] <= 0.05
    large = tracr_finetune(tracr_finetune_config(compiled.run, "quick", {"train.lr": "L", "data.c_tr": 0.0}),
                           store, quiet, say=lambda _: None)
    print("η_L, C_Tr=0:", large.result["after"]["acc_ft_cte0"])
    assert large.result["after"]["acc_ft_cte0"] >= 0.95


def test_any_user_rasp_program_compiles_and_runs():
    from tracr.rasp import rasp

    from wrapperlab.models.tracr.compile import compile_rasp

    same = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    hist = rasp.categorical(rasp.SelectorWidth(same)).named("my_hist")
    compiled, _ = compile_rasp(hist, vocab="xyz", max_seq_len=6, name="my-hist")
    inputs = random_inputs("hist", 50)
    inputs = [["xyz"["abcde".index(t) % 3] for t in x][:6] for x in inputs]
    assert compiled.run(inputs) == [[x.count(t) for t in x] for x in inputs]
