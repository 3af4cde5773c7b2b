"""The stories experiment: probe designs, the spec's graph, the tiny pipeline through `reproduce` and the report,
and the one-stage CLI verbs."""

from collections import Counter

import pytest
import torch

from wrapperlab.analysis.probing import ProbeConfig
from wrapperlab.cli.main import main
from wrapperlab.data.stories.corpus import (
    StoriesDataConfig,
    fit_tokenizer,
    prompt_and_story,
    records,
)
from wrapperlab.models.gpt import GPT, GPTConfig
from wrapperlab.orchestration.reproduce import reproduce
from wrapperlab.orchestration.spec import expand, load_spec
from wrapperlab.report.render import write_report
from wrapperlab.runs.store import RunStore
from wrapperlab.settings.stories.probes import DESIGNS, design_set, informative, probe_story_model
from wrapperlab.training.config import Runtime


@pytest.fixture(scope="module")
def corpus():
    cfg = StoriesDataConfig(n_records=1500, tokenizer_records=1500, vocab_size=400, context=96)
    return cfg, fit_tokenizer(cfg), list(records(cfg, "test"))


def test_probe_designs_are_built_as_documented(corpus):
    _, tok, held = corpus
    last10 = design_set("last10", held, tok, 512)
    assert set(last10.labels) == {"Twist", "Foreshadowing", "Dialogue", "BadEnding", "MoralValue", "Conflict"}
    for seq, pos, r in zip(last10.seqs[:50], last10.positions, held):
        prompt, story = prompt_and_story(r, tok)
        assert pos == list(range(len(seq) - 10, len(seq))) and min(pos) >= len(prompt)  # story tokens only
    requested = design_set("requested", held, tok, 512)
    assert requested.labels["Twist"].mean() == 0.5  # balanced
    assert all(p == [len(s) - 1] and tok.decode(s).endswith("Story:") for s, p in zip(requested.seqs, requested.positions))
    matched = design_set("requested_matched", held, tok, 512)
    y = matched.labels["Twist"]
    assert len(y) >= 40 and list(y[:4]) == [1, 0, 1, 0]
    for pos_seq, neg_seq in zip(matched.seqs[::2], matched.seqs[1::2]):
        # the pair holds the same tokens — "Twist" moved from the Features line to the Words line
        assert Counter(pos_seq) == Counter(neg_seq) and pos_seq != neg_seq
        assert "Words:" in tok.decode(neg_seq) and ", Twist" in tok.decode(neg_seq).split("Words:")[1].split("\n")[0]
    with pytest.raises(ValueError):
        design_set("vibes", held, tok, 512)


def test_probes_run_on_a_model_and_its_random_twin(corpus):
    _, tok, held = corpus
    torch.manual_seed(0)
    shape = GPTConfig.preset("stories-quick", vocab_size=tok.get_vocab_size(), n_ctx=96, n_layers=2, d_model=32, n_heads=2)
    result = probe_story_model(GPT(shape), GPT(shape), held[:300], tok, ProbeConfig(iters=50), DESIGNS)
    assert result.layers == ["B0", "B1", "B2"] and set(result.accuracy) == set(DESIGNS)
    for design, targets in result.accuracy.items():
        for accs in targets.values():
            assert len(accs["model"]) == len(accs["random_init"]) == 3
            assert all(0.0 <= a <= 1.0 for a in accs["model"] + accs["random_init"])
    assert informative([0.5, 0.9], [0.5, 0.8]) and not informative([0.9, 0.9], [0.88, 0.9])


def test_stories_spec_graph():
    spec = load_spec("stories-twist")
    quick = expand(spec, "quick")
    per_seed = {stage: sum(n.stage == stage and n.point["seed"] == 0 for n in quick)
                for stage in ("pretrain", "control", "finetune", "reft", "probe")}
    # 3 protocols x 2 lrs deletions; reFT on Twist stories from each, on the mix from F at eta_M, both from the
    # control; probes of PT, the control and the two F deletions
    assert per_seed == {"pretrain": 1, "control": 1, "finetune": 6, "reft": 6 + 1 + 2, "probe": 2 + 2}
    assert {n.point["seed"] for n in quick} == {0, 1, 2}
    control_refts = [n for n in quick if n.stage == "reft" and n.point.get("from") == "control"]
    assert all(n.parents == [f"control seed={n.point['seed']}"] for n in control_refts)


def test_tiny_stories_reproduction_and_report(tmp_path):
    """The CI-sized pipeline: generate, tokenize, pretrain + control, a deletion, reFT on both corpora, probes,
    judge — then the report's stories section; a second call computes nothing."""
    store = RunStore(tmp_path / "runs")
    first = reproduce(load_spec("stories-twist"), "test", store, runtime=Runtime(progress=False, threads=1),
                      say=lambda _: None)
    assert first.computed == len(first.nodes) == 10
    again = reproduce(load_spec("stories-twist"), "test", store, runtime=Runtime(progress=False), say=lambda _: None)
    assert again.computed == 0
    deleted = first.outcomes["finetune seed=0 protocol=filter lr=M"]
    assert deleted.result.before == first.outcomes["pretrain seed=0"].result.after  # measured once, reused
    reft = first.outcomes["reft seed=0 protocol=filter lr=M corpus=twist"]
    logged = store.resolve(reft.run_id).metrics()
    assert any("gen_twist" in m and m["step"] == 5 for m in logged)  # generation scored mid-reFT (gen_at)
    judge = first.outcomes["pretrain seed=0"].result.judge_accuracy
    assert set(judge) >= {"Twist", "all"} and all(0.0 <= v <= 1.0 for v in judge.values())
    markdown = write_report(store.root)["markdown"].read_text()
    assert "## stories-twist (test profile" in markdown
    for text in ("Twist-story loss", "paper Table 1", "Probe design `requested_matched`", "not in PT", "| F η_M |"):
        assert text in markdown, text
    assert "44 / 81 / 81 / 82" in markdown  # the paper's Table 1 row for F at eta_M beside ours


def test_stories_model_verbs(tmp_path, capsys):
    runs = str(tmp_path / "runs")
    common = ["--profile", "test", "--runs", runs, "--quiet", "--threads", "1"]
    assert main(["stories", "pretrain", *common]) == 0
    pt = next(p.name for p in (tmp_path / "runs").iterdir() if p.name.startswith("stories-pretrain"))
    assert main(["stories", "delete", pt, "--protocol", "filter_randomise", "--lr", "S", *common]) == 0
    out = capsys.readouterr().out
    assert "before: Twist-story loss" in out and "after : Twist-story loss" in out
    ft = out.strip().splitlines()[-1].split("/")[-1]
    assert main(["stories", "reft", ft, "--corpus", "mixed", *common]) == 0
    # a deletion exported as a Hugging Face directory: the same model back through the importer, its root's tokenizer
    from wrapperlab.models.hf import load_hf, load_hf_tokenizer
    from wrapperlab.settings.stories.nodes import load_model

    out = tmp_path / "hf"
    assert main(["export", ft, str(out), "--runs", runs]) == 0
    assert "Llama layout, with its tokenizer" in capsys.readouterr().out
    ours, back = load_model(RunStore(runs).resolve(ft)), load_hf(out)
    tokens = torch.tensor([load_hf_tokenizer(out).encode("Story: Once upon a time").ids])
    with torch.no_grad():
        assert torch.equal(ours(tokens), back(tokens))
    assert main(["export", ft, str(out), "--runs", runs]) == 2  # never overwrites
    assert "nothing is overwritten" in capsys.readouterr().err
    assert main(["stories", "probe", ft, "--designs", "requested", *common]) == 0
    assert "requested" in capsys.readouterr().out
    for bad in (["stories", "delete", pt, "--protocol", "forget"], ["stories", "delete", pt, "--lr", "huge"],
                ["stories", "reft", ft, "--corpus", "poems"], ["stories", "probe", ft, "--designs", "vibes"],
                ["stories", "reft", "no-such-run"], ["stories", "pretrain", "--set", "data.vocab_size=10"],
                ["stories", "pretrain", "--set", f"data.source={tmp_path / 'missing.txt'}"]):
        assert main([*bad, "--profile", "test", "--runs", runs, "--quiet"]) == 2, bad
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    bad = tmp_path / "bad.txt"  # a malformed real-data file: one line naming the file and its first bad record
    bad.write_text("Features: Twist\nStory: fine\n<|endoftext|>\nno story marker\n<|endoftext|>\n")
    assert main(["stories", "pretrain", "--set", f"data.source={bad}", "--profile", "test", "--runs", runs]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "record 2" in err
