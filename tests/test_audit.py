"""The audit of a model pair (data/capability.py, analysis/audit.py, report/audit.py, `wrapperlab audit`): the
capability file and its splits, answer scoring, the pipeline on tiny exported models, and bad input as one line."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from wrapperlab.analysis.audit import RelearnConfig, encode, relearn, score
from wrapperlab.cli.main import main
from wrapperlab.data.capability import Capability, Example, load_capability
from wrapperlab.errors import ConfigError, UserError
from wrapperlab.models.gpt import GPT, GPTConfig
from wrapperlab.models.hf import export_hf

WORDS = ["<pad>", "q", "a", "is", "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "y0", "y1", "y2", "y3"]


def _tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(path))
    return tok


def _capability_file(path, n=16):
    lines = [json.dumps({"prompt": f"q x{i % 8} is", "answer": f"y{i % 4} a"}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _model(seed: int, **shape) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig.preset("test", vocab_size=len(WORDS), n_ctx=8, **shape))


def _pair(tmp_path, **shape):
    _tokenizer(tmp_path / "tok.json")
    dirs = []
    for i, name in enumerate(("base", "finetuned", "control")):
        dirs.append(export_hf(_model(i, **shape), tmp_path / name, tokenizer=tmp_path / "tok.json"))
    return dirs


def test_capability_file_checks_name_the_line(tmp_path):
    good = _capability_file(tmp_path / "cap.jsonl")
    cap = load_capability(good)
    assert len(cap.examples) == 16 and cap.examples[2] == Example("q x2 is", "y2 a", 3)
    bad = tmp_path / "bad.jsonl"
    for text, match in ((good.read_text() + "{oops\n", r"bad.jsonl:17"),
                        (good.read_text() + '{"prompt": "q"}\n', r"bad.jsonl:17: answer"),
                        (good.read_text() + '["a list"]\n', r"bad.jsonl:17"),
                        ('{"prompt": "q", "answer": "a"}\n' * 3, "at least 8"),
                        ('{"prompt": "q", "answer": "a"}\n' * 9, "at least two")):
        bad.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_capability(bad)
    with pytest.raises(UserError, match="no such capability file"):
        load_capability(tmp_path / "missing.jsonl")


def test_splits_and_the_never_known_twin():
    cap = Capability("c", tuple(Example(f"p{i}", f"a{i}", i + 1) for i in range(20)))
    attack, held = cap.split(seed=3)
    assert sorted(attack + held) == list(range(20)) and len(attack) == 10
    assert cap.split(seed=3) == (attack, held) and cap.split(seed=4) != (attack, held)
    twin = cap.never_known(seed=0)
    assert [e.prompt for e in twin.examples] == [e.prompt for e in cap.examples]
    assert all(t.answer != e.answer for t, e in zip(twin.examples, cap.examples))  # nobody keeps its answer
    assert sorted(e.answer for e in twin.examples) == sorted(e.answer for e in cap.examples)
    with pytest.raises(ConfigError, match="attack_share"):
        cap.split(0, attack_share=1.0)


def test_answers_are_scored_exactly(tmp_path):
    tok = _tokenizer(tmp_path / "tok.json")
    cap = load_capability(_capability_file(tmp_path / "cap.jsonl"))
    enc = encode(cap, tok, n_ctx=8)
    # "q x0 is" + "y0 a": positions 2 and 3 predict the answer tokens y0 and a, nothing else is scored
    assert enc.tokens[0, :5].tolist() == [1, 4, 3, 12, 2] and enc.target[0].tolist()[:5] == [-1, -1, 12, 2, -1]
    model = _model(0)
    with torch.no_grad():
        logp = torch.log_softmax(model(enc.tokens[:1]), -1)[0]
    scored = score(model, enc).logprob[0]
    assert scored == pytest.approx(float(logp[2, 12] + logp[3, 2]) / 2, abs=1e-5)
    with pytest.raises(ConfigError, match=r"cap.jsonl:1: got '5 tokens"):
        encode(cap, tok, n_ctx=4)


def test_relearning_learns_the_attack_split(tmp_path):
    tok = _tokenizer(tmp_path / "tok.json")
    cap = load_capability(_capability_file(tmp_path / "cap.jsonl", n=32))
    enc = encode(cap, tok, n_ctx=8)
    model = _model(0)
    before = [p.detach().clone() for p in model.parameters()]
    curve = relearn(model, enc, enc, RelearnConfig(steps=40, lr=3e-3, batch_size=8), seed=0)
    assert [p["step"] for p in curve] == RelearnConfig(steps=40).eval_at
    assert curve[-1]["logprob"] > curve[0]["logprob"] + 0.5  # it learned what it trained on
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # on a copy: the model is untouched
    assert relearn(model, enc, enc, RelearnConfig(steps=5), seed=1) == relearn(model, enc, enc, RelearnConfig(steps=5), seed=1)


def test_the_signatures_read_the_records(tmp_path):
    """Probe labels are the first answer tokens at the last prompt position; pruning's K = 0 is the unpruned model,
    the top row lowers the loss it was chosen on (first order), and the model is never touched."""
    from wrapperlab.analysis.audit import answer_losses, answer_queries, probe_answer, prune_curve
    from wrapperlab.analysis.probing import ProbeConfig

    tok = _tokenizer(tmp_path / "tok.json")
    cap = load_capability(_capability_file(tmp_path / "cap.jsonl", n=32))
    enc = encode(cap, tok, n_ctx=8)
    attack, held = cap.split(seed=0)
    query, label = answer_queries(enc)
    assert query[:3].tolist() == [2, 2, 2] and label[:5].tolist() == [12, 13, 14, 15, 12]  # "q xi is" -> y(i % 4)
    model = _model(0)
    trained = copy.deepcopy(model)
    opt = torch.optim.AdamW(trained.parameters(), lr=3e-3)
    for _ in range(60):  # learn the capability: the answer is a function of x_i, readable after attention
        loss = sum(answer_losses(enc)(trained))
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc = probe_answer({"trained": trained, "random": model}, enc.take(attack), enc.take(held), ProbeConfig(iters=300),
                       seed=0)
    assert len(acc["trained"]) == 3 and all(0 <= a <= 1 for a in acc["random"])
    assert max(acc["trained"][1:]) == 1.0  # x_i mod 4 is the answer: the trained model's residual holds it
    before = [p.detach().clone() for p in model.parameters()]
    curve = prune_curve(model, enc, enc)
    assert curve[0]["logprob"] == pytest.approx(score(model, enc).mean_logprob)
    assert curve[1]["logprob"] > curve[0]["logprob"]  # the most salient row helps the loss it was picked on
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_audit_command_writes_the_report(tmp_path, capsys):
    base, finetuned, control = _pair(tmp_path)
    cap = _capability_file(tmp_path / "cap.jsonl")
    out = tmp_path / "audits" / "quick" / "tiny"
    args = ["audit", base, finetuned, "--capability", cap, "--control", control, "--out", out, "--steps", "4",
            "--probe-iters", "100"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("verdict: ") and str(out / "audit.html") in printed
    result = json.loads((out / "audit.json").read_text())
    assert len(result["seeds"]) == 3 and set(result["verdicts"]) == {"removed", "never_known", "control"}
    assert set(result["signatures"]) == {"probe", "pruning"}
    probe = result["seeds"][0]["probe"]
    assert set(probe) == {"finetuned", "base", "random_init", "control"} and len(probe["finetuned"]) == 3  # B0-B2
    assert [p["k"] for p in result["seeds"][0]["prune_control"]] == [0, 1, 2, 3, 5, 10, 15]
    assert result["verdict"]["outcome"] in ("wrapped", "deleted", "inconclusive")
    assert result["decisive"] == result["verdicts"]["control"]["claim"]
    html = (out / "audit.html").read_text()
    assert "Verdict: deleted or wrapped" in html and "data:image/png;base64" in html
    md = (out / "audit.md").read_text()
    assert "| B1 |" in md  # where the fine-tune wrote, per block
    assert "random-init twin %" in md and "K rows zeroed" in md  # the probe and pruning tables
    # published from the result, never typed: a docs block beside the audits lists each one
    from wrapperlab.report.docs import update_docs

    docs = tmp_path / "audit.md"
    docs.write_text("x\n<!-- wrapperlab:audits audits/quick -->\nold\n<!-- /wrapperlab -->\n")
    assert update_docs({}, [docs]) == {docs: 1}
    table = docs.read_text()
    assert "[tiny](audits/quick/tiny/audit.md)" in table and f"**{result['verdict']['outcome']}**" in table and "old" not in table


def test_bad_input_is_one_line(tmp_path, capsys):
    base, finetuned, _ = _pair(tmp_path)
    cap = _capability_file(tmp_path / "cap.jsonl")
    other = export_hf(_model(5, d_model=32), tmp_path / "narrow", tokenizer=tmp_path / "tok.json")
    (tmp_path / "notamodel").mkdir()
    llama_like = tmp_path / "neox"
    llama_like.mkdir()
    (llama_like / "config.json").write_text(json.dumps({"model_type": "gpt_neox"}))
    (llama_like / "tokenizer.json").write_text((tmp_path / "tok.json").read_text())
    badcap = tmp_path / "bad.jsonl"
    badcap.write_text(cap.read_text() + '{"prompt": "q", "answer": 3}\n')
    from tokenizers import Tokenizer, models, pre_tokenizers

    mismatched = tmp_path / "mismatched"
    export_hf(_model(1), mismatched)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(reversed(WORDS))}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(mismatched / "tokenizer.json"))
    (tmp_path / "notokenizer").mkdir()
    (tmp_path / "notokenizer" / "config.json").write_text((tmp_path / "base" / "config.json").read_text())
    cases = {(base, tmp_path / "notamodel", cap): "notamodel: no config.json",
             (base, tmp_path / "notokenizer", cap): "notokenizer: no tokenizer.json",
             (base, llama_like, cap): "model_type: got 'gpt_neox'",
             (base, finetuned, badcap): "bad.jsonl:17: answer",
             (base, mismatched, cap): "another vocabulary",
             (base, other, cap): "d_model differ"}
    for (b, f, c), message in cases.items():
        assert main(["audit", b, f, "--capability", c, "--out", tmp_path / "x", "--steps", "2"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_a_pcfg_run_exports_and_audits_through_the_hf_path(tmp_path, capsys):
    """A task of ours as a capability: `data sample --capability` lines, read by the exported model's word-level
    tokenizer as the very ids the model was trained on."""
    from wrapperlab.models.hf import load_hf, load_hf_tokenizer
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.pcfg.stages import load_model

    runs = tmp_path / "runs"
    assert main(["pretrain", "--profile", "test", "--quiet", "--runs", runs, "--iters", "4"]) == 0
    run = next(p.name for p in runs.iterdir() if p.name.startswith("pretrain-"))
    capsys.readouterr()
    assert main(["data", "sample", "--task", "count", "--operand", "a", "--window", "64", "--n", "12",
                 "--capability"]) == 0
    lines = capsys.readouterr().out
    (tmp_path / "count_a.jsonl").write_text(lines)
    first = json.loads(lines.splitlines()[0])
    assert first["prompt"].startswith("<sos> <C> a") and first["prompt"].endswith("<art>") and first["answer"].isdigit()
    assert main(["export", run, tmp_path / "hf", "--runs", runs]) == 0
    assert "GPT-2 layout, with its tokenizer" in capsys.readouterr().out
    tok = load_hf_tokenizer(tmp_path / "hf")
    ours = load_model(RunStore(runs).resolve(run))
    ids = tok.encode(first["prompt"]).ids
    from wrapperlab.data.samples import PCFGData
    from wrapperlab.settings.pcfg.stages import pretraining_config

    vocab = PCFGData(pretraining_config(RunStore(runs).resolve(run)).data).vocab
    assert ids == [vocab.id(t) for t in first["prompt"].split()]  # the ids the model was trained on
    with torch.no_grad():
        t = torch.tensor([ids])
        assert torch.equal(load_hf(tmp_path / "hf")(t), ours(t))
    assert main(["audit", tmp_path / "hf", tmp_path / "hf", "--capability", tmp_path / "count_a.jsonl", "--out",
                 tmp_path / "audit", "--steps", "2", "--seeds", "3", "--probe-iters", "50", "--quiet"]) == 0
    verdict = json.loads((tmp_path / "audit" / "audit.json").read_text())["verdict"]
    # a model audited against itself removed nothing: neither word applies
    assert verdict["outcome"] == "inconclusive" and verdict["reason"].startswith("removal not shown")
