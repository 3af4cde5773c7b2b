"""The audit of a model pair (data/capability.py, the audit package, report/audit.py, `wrapperlab audit`): the
capability file and its splits, answer scoring and the measurements on tiny Hugging Face models read natively, eight
architectures audited end to end, parity with the converted path, the gates, and bad input as one line."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers", reason="the audit reads models through transformers (pip install 'wrapperlab[hf]')")

import tiny_lm as T  # noqa: E402

from wrapperlab.audit.config import AuditConfig, RelearnConfig  # noqa: E402
from wrapperlab.audit.encode import encode  # noqa: E402
from wrapperlab.audit.measure import (  # noqa: E402,E501
    answer_losses,
    answer_queries,
    probe_answer,
    prune_curve,
    relearn,
    row_saliency,
    score,
)
from wrapperlab.audit.models import CausalLM, load_model, load_tokenizer  # noqa: E402
from wrapperlab.cli.main import main  # noqa: E402
from wrapperlab.data.capability import Capability, Example, load_capability  # noqa: E402
from wrapperlab.errors import ConfigError, UserError  # noqa: E402

FAST = ["--steps", "4", "--probe-iters", "50", "--batch-size", "8", "--quiet"]


@pytest.fixture(scope="module")
def gpt2_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpt2")
    base, finetuned, never = T.build_pair("gpt2", root)
    return base, finetuned, never, T.write_capability(root / "cap.jsonl")


def _lm(path, role="BASE") -> CausalLM:
    return load_model(path, role, torch.float32, "cpu")


def test_capability_file_checks_name_the_line(tmp_path):
    good = T.write_capability(tmp_path / "cap.jsonl")
    cap = load_capability(good)
    assert len(cap.examples) == T.N_KEYS and cap.examples[2] == Example("Q k2 =", f"v{T.answer_of(2)}", 3)
    bad = tmp_path / "bad.jsonl"
    n = T.N_KEYS + 1
    for text, match in ((good.read_text() + "{oops\n", rf"bad.jsonl:{n}"),
                        (good.read_text() + '{"prompt": "q"}\n', rf"bad.jsonl:{n}: answer"),
                        (good.read_text() + '["a list"]\n', rf"bad.jsonl:{n}"),
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


def test_answers_are_scored_exactly(gpt2_pair):
    base, _, _, cap_file = gpt2_pair
    tok, lm, cap = load_tokenizer(base, "BASE"), _lm(base), load_capability(cap_file)
    enc = encode(cap, tok, n_ctx=32)
    # "<bos> Q k0 =" then the answer "v3": position 3 predicts it, nothing else is scored
    answer = T.WORDS.index(f"v{T.answer_of(0)}")
    assert enc.tokens[0, :5].tolist() == [1, 4, T.WORDS.index("k0"), 5, answer]
    assert enc.target[0, :5].tolist() == [-1, -1, -1, answer, -1] and enc.mask[0, :5].tolist() == [1] * 5
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(input_ids=enc.tokens[:1, :5]).logits, -1)[0]
    assert score(lm, enc).logprob[0] == pytest.approx(float(logp[3, answer]), abs=1e-5)
    assert score(lm, enc, max_tokens=5).logprob == pytest.approx(score(lm, enc).logprob, abs=1e-5)  # batches of one
    with pytest.raises(ConfigError, match=r"cap.jsonl:1: got '5 tokens"):
        encode(cap, tok, n_ctx=4)


@pytest.mark.parametrize("lora", [None, 4])
def test_relearning_learns_the_attack_split_and_leaves_the_model_as_it_was(gpt2_pair, lora):
    _, finetuned, _, cap_file = gpt2_pair
    tok, lm = load_tokenizer(finetuned, "FINETUNED"), _lm(finetuned, "FINETUNED")
    enc = encode(load_capability(cap_file), tok, n_ctx=32)
    before = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    cfg = RelearnConfig(steps=30, lr=3e-3, batch_size=8, lora=lora)
    done = relearn(lm, (enc, enc), cfg, seed=0)
    assert [p["step"] for p in done.curve] == cfg.eval_at and done.diverged_at is None
    assert done.curve[-1]["logprob"] > done.curve[0]["logprob"] + 0.3  # it learned what it trained on
    after = dict(lm.model.named_parameters())
    assert set(after) == set(before) and all(torch.equal(before[n], after[n]) for n in before)  # untouched
    assert type(lm.model).__name__ == "GPT2LMHeadModel"  # LoRA's adapters gone again
    again = relearn(lm, (enc, enc), cfg.model_copy(update={"steps": 3}), seed=1)
    assert again.curve == relearn(lm, (enc, enc), cfg.model_copy(update={"steps": 3}), seed=1).curve  # seeded


def test_a_relearning_that_diverges_is_reported_as_such(gpt2_pair, monkeypatch):
    """A non-finite gradient stops the run before any update with it; the audit's relearning verdicts then say it
    diverged (inconclusive), never read a number off it."""
    import wrapperlab.audit.measure as M

    base, finetuned, never, cap = gpt2_pair
    real_clip, real_student, steps = torch.nn.utils.clip_grad_norm_, M._student, [0]

    def student(*args):  # a relearning run begins
        steps[0] = 0
        return real_student(*args)

    def clip(params, max_norm):  # every relearning run's third step has an infinite gradient norm
        steps[0] += 1
        norm = real_clip(params, max_norm)
        return torch.tensor(float("inf")) if steps[0] == 3 else norm

    monkeypatch.setattr(M, "_student", student)
    monkeypatch.setattr(M.torch.nn.utils, "clip_grad_norm_", clip)
    result = _api_audit(base, finetuned, cap, never, relearn={"steps": 6, "lr": 1e-3, "batch_size": 8})
    assert all(s.diverged == {"real": 3, "never_known": 3, "control": 3} for s in result.seeds)
    assert [p.step for p in result.seeds[0].relearn_real] == [0, 1, 2]  # nothing measured after it
    for rule in ("never_known", "control"):
        assert result.verdicts[rule].outcome == "inconclusive" and "diverged" in result.verdicts[rule].reason
    assert result.verdict.outcome == "inconclusive"


def test_the_signatures_read_the_records(gpt2_pair):
    """Probe labels are the first answer tokens at the last prompt position; pruning's K = 0 is the unpruned model,
    the top row lowers the loss it was chosen on (first order), and the model is never touched."""
    base, _, _, cap_file = gpt2_pair
    tok, lm, cap = load_tokenizer(base, "BASE"), _lm(base), load_capability(cap_file)
    enc = encode(cap, tok, n_ctx=32)
    attack, held = cap.split(seed=0)
    query, label = answer_queries(enc)
    assert query[:3].tolist() == [3, 3, 3] and label[:2].tolist() == [T.WORDS.index(f"v{T.answer_of(k)}") for k in (0, 1)]
    acc = probe_answer({"base": lm, "twin": lm.twin(0)}, enc, enc, iters=200, seed=0)
    assert len(acc["base"]) == 3 and all(0 <= a <= 1 for a in acc["twin"])  # B0 and after each of two layers
    before = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    rows = row_saliency(lm, answer_losses(enc), top=3)
    assert rows[0][0].startswith("transformer.h.") and rows[0][2] >= rows[-1][2]
    curve = prune_curve(lm, enc, enc)
    assert [p["k"] for p in curve] == [0, 1, 2, 3, 5, 10, 15]
    assert curve[0]["logprob"] == pytest.approx(score(lm, enc).mean_logprob, abs=1e-6)
    assert all(torch.equal(before[n], p) for n, p in lm.model.named_parameters())


def _api_audit(base, finetuned, cap, control=None, **settings):
    from wrapperlab.api import audit

    cfg = {"seeds": 3, "probe_iters": 50, "relearn": {"steps": 4, "lr": 1e-3, "batch_size": 8}, **settings}
    return audit(base, finetuned, cap, control=control, **cfg)


@pytest.mark.parametrize("family", list(T.SHAPES))
def test_every_architecture_is_audited_end_to_end(tmp_path, family):
    """Eight decoder families, each trained here on the toy capability and unlearned by gradient ascent, audited
    through transformers with every signature — no per-family code in the audit."""
    base, finetuned, never = T.build_pair(family, tmp_path)
    result = _api_audit(base, finetuned, T.write_capability(tmp_path / "cap.jsonl"), never)
    assert result.model["model_type"] == family and result.model["n_layers"] == 2
    assert result.verdict.outcome in ("wrapped", "deleted", "inconclusive")
    assert set(result.verdicts) == {"removed", "never_known", "control"} and set(result.signatures) == {"probe", "pruning"}
    for s in result.seeds:
        assert s.gap > 0 and math.isfinite(s.relearn_real[-1].logprob) and not s.diverged
        assert set(s.probe) == {"finetuned", "base", "random_init", "control"} and len(s.probe["base"]) == 3
        assert [p.k for p in s.prune_control] == [0, 1, 2, 3, 5, 10, 15]
    assert result.answered["true"] > result.answered["shuffled"] + 0.1  # BASE answers what it is audited on
    assert result.weight_diff and all(d["rel_change"] > 0 for d in result.weight_diff if ".0." in d["name"])


def test_multiple_choice_is_scored_among_its_letters_and_audited(tmp_path, capsys):
    """WMDP / MMLU-style records (question, choices, right index or letter) from a CSV of choice columns: the letter's
    log-prob is what is scored, accuracy is the right letter likeliest among the record's letters (checked against
    the logits by hand), and the audit runs end to end through the CLI's field options."""
    import csv

    base, finetuned, never = T.build_pair("gpt2", tmp_path, recs=T.choice_training_records())
    cap_file = tmp_path / "mc.csv"
    with open(cap_file, "w", newline="") as f:
        w = csv.DictWriter(f, ["q", "A", "B", "C", "D", "right"])
        w.writeheader()
        w.writerows({"q": r["question"], **dict(zip(T.LETTERS, r["choices"])), "right": T.LETTERS[r["answer"]]}
                    for r in T.choice_records())
    from wrapperlab.data.capability import CapabilityFields

    cap = load_capability(cap_file, CapabilityFields(question="q", choices="A,B,C,D", answer="right"))
    tok = load_tokenizer(base, "BASE")
    enc = encode(cap, tok, n_ctx=32)
    letter_ids = [tok(" " + x, add_special_tokens=False).input_ids[0] for x in T.LETTERS]
    assert enc.options.tolist() == [letter_ids] * len(cap.examples) and ((enc.target >= 0).sum(1) == 1).all()
    for path in (base, finetuned, never):
        lm = _lm(path)
        got = score(lm, enc)
        with torch.no_grad():
            logits = lm.model(input_ids=enc.tokens, attention_mask=enc.mask).logits
        at = (enc.target >= 0).int().argmax(1)
        by_hand = [int(logits[i, at[i], letter_ids].argmax()) == T.LETTERS.index(e.answer)
                   for i, e in enumerate(cap.examples)]
        assert got.exact == by_hand
    assert score(_lm(base), enc).accuracy == 1.0 and score(_lm(never), enc).accuracy < 0.5
    out = tmp_path / "out"
    assert main(["audit", base, finetuned, "--capability", cap_file, "--control", never, "--out", out, *FAST,
                 "--question-field", "q", "--choices-field", "A,B,C,D", "--answer-field", "right"]) == 0
    result = json.loads((out / "audit.json").read_text())
    assert result["multiple_choice"] and result["config"]["fields"]["choices"] == "A,B,C,D"
    assert result["answered"]["true"] > result["answered"]["shuffled"] + 1  # BASE knows the letters
    assert all(s["gap"] > 0 for s in result["seeds"]) and "accuracy %" in (out / "audit.md").read_text()
    capsys.readouterr()
    assert main(["audit", base, finetuned, "--capability", cap_file, "--out", tmp_path / "out2", *FAST]) == 2  # fields not named
    assert "mc.csv:2: prompt: got 'missing'" in capsys.readouterr().err  # read as prompt/answer records


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_native_log_probs_equal_the_converted_path(tmp_path, family):
    """One audit pipeline: a model of ours exported (models/hf.py) and read natively by transformers scores every
    held-out answer as our own GPT does (the path the audit used to take)."""
    from wrapperlab.models.gpt import GPT, GPTConfig
    from wrapperlab.models.hf import export_hf

    shape = {"gpt2": {}, "llama": {"norm": "rmsnorm", "act": "swiglu", "positions": "rope", "bias": False}}[family]
    torch.manual_seed(0)
    ours = GPT(GPTConfig.preset("test", vocab_size=len(T.WORDS), n_ctx=16, **shape)).eval()
    T.tokenizer().backend_tokenizer.save(str(tmp_path / "tok.json"))
    export_hf(ours, tmp_path / "hf", tokenizer=tmp_path / "tok.json")
    cap = load_capability(T.write_capability(tmp_path / "cap.jsonl"))
    tok, lm = load_tokenizer(tmp_path / "hf", "BASE"), _lm(tmp_path / "hf")
    enc = encode(cap, tok, n_ctx=16)
    with torch.no_grad():
        logp = torch.log_softmax(ours(enc.tokens).float(), -1)
    mask = enc.target >= 0
    theirs = ((logp.gather(-1, enc.target.clamp(min=0)[..., None])[..., 0] * mask).sum(1) / mask.sum(1)).tolist()
    assert score(lm, enc).logprob == pytest.approx(theirs, abs=1e-4)


def test_audit_command_writes_the_report(gpt2_pair, tmp_path, capsys, monkeypatch):
    base, finetuned, control, cap = gpt2_pair
    out = tmp_path / "audits" / "quick" / "tiny"
    argv = ["audit", base, finetuned, "--capability", cap, "--control", control, "--out", out, *FAST]
    assert main(argv) == 0
    printed = capsys.readouterr()
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(argv) == 2 and "--force" in capsys.readouterr().err  # a re-run does not replace it silently
    import wrapperlab.report.audit as report_audit

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(out / "audit.html"))

    monkeypatch.setattr(report_audit, "html_page", full_disk)  # the disk fills while the set is rendered
    assert main([*argv, "--force"]) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # the earlier set as it was, no staging left
    monkeypatch.undo()
    assert printed.out.startswith("verdict: ") and str(out / "audit.html") in printed.out
    assert "estimate: peak memory" in printed.err
    result = json.loads((out / "audit.json").read_text())
    assert len(result["seeds"]) == 3 and set(result["verdicts"]) == {"removed", "never_known", "control"}
    assert result["decisive"] == result["verdicts"]["control"]["claim"] and result["model"]["model_type"] == "gpt2"
    html = (out / "audit.html").read_text()
    assert "Verdict: deleted or wrapped" in html and "data:image/png;base64" in html
    md = (out / "audit.md").read_text()
    assert "| L1 |" in md and "attn.c_attn ‖ΔW‖/‖W‖ %" in md  # where the fine-tune wrote, per layer and module
    assert "random-init twin %" in md and "K rows zeroed" in md  # the probe and pruning tables
    from wrapperlab.report.docs import update_docs  # published from the result, never typed

    docs = tmp_path / "audit.md"
    docs.write_text("x\n<!-- wrapperlab:audits audits/quick -->\nold\n<!-- /wrapperlab -->\n")
    assert update_docs({}, [docs]) == {docs: 1}
    table = docs.read_text()
    assert "[tiny](audits/quick/tiny/audit.md)" in table and f"**{result['verdict']['outcome']}**" in table


def test_the_documented_api_example_runs(gpt2_pair, tmp_path, monkeypatch):
    """docs/audit.md's Python example, on the tiny pair."""
    base, finetuned, never, cap = gpt2_pair
    doc = (Path(__file__).resolve().parents[1] / "docs" / "audit.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    for name, path in (("base", base), ("finetuned", finetuned), ("never-learned", never), ("forget.jsonl", cap)):
        (tmp_path / name).symlink_to(path)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example.replace("steps=100", "steps=4").replace("probe_iters=1000", "probe_iters=50"),
                 "docs/audit.md", "exec"), namespace)
    assert namespace["result"].verdict.outcome in ("wrapped", "deleted", "inconclusive")
    assert (tmp_path / "audit" / "audit.html").is_file()


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_the_gates_refuse_a_bad_pair_in_one_line(gpt2_pair, tmp_path, capsys):
    base, finetuned, never, cap = gpt2_pair
    llama = T.build_pair("llama", tmp_path / "llama")[0]
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = {**T.SHAPES["gpt2"], "n_embd": 48}  # the same family, another width
    wide = T.save(AutoModelForCausalLM.from_config(AutoConfig.for_model("gpt2", vocab_size=len(T.WORDS), **T.SPECIAL,
                                                                        **shape)), tmp_path / "wide")
    retok = _copy(finetuned, tmp_path / "retok")  # another tokenizer: two words swapped
    vocab = json.loads((retok / "tokenizer.json").read_text())
    model = vocab["model"]["vocab"]
    model["k0"], model["k1"] = model["k1"], model["k0"]
    (retok / "tokenizer.json").write_text(json.dumps(vocab))
    nan = _copy(finetuned, tmp_path / "nan")
    from safetensors.torch import load_file, save_file
    state = load_file(str(nan / "model.safetensors"))
    name = sorted(state)[3]
    state[name][0] = float("nan")
    save_file(state, str(nan / "model.safetensors"), metadata={"format": "pt"})
    torn = _copy(finetuned, tmp_path / "torn")
    data = (torn / "model.safetensors").read_bytes()
    (torn / "model.safetensors").write_bytes(data[: len(data) // 2])
    noweights = _copy(finetuned, tmp_path / "noweights")
    (noweights / "model.safetensors").unlink()
    untrained = T.save(T.fresh("gpt2", seed=3), tmp_path / "untrained")  # answers nothing
    cases = [((base, tmp_path / "missing", cap), "no config.json"),
             ((base, llama, cap), "differ"),
             ((base, wide, cap), "n_embd"),
             ((base, retok, cap), "another tokenizer (vocabulary differ"),
             ((base, nan, cap), f"non-finite values in {name}"),
             ((base, torn, cap), "torn/model.safetensors: unreadable weights"),
             ((base, noweights, cap), "no weights"),
             ((untrained, finetuned, cap), "records BASE answers"),
             ((base, finetuned, cap, "--control", base), "CONTROL: got"),
             ((base, finetuned, cap, "--probe-iters", "-1"), "probe_iters"),
             ((base, finetuned, cap, "--lr", "inf"), "lr"),
             ((base, finetuned, cap, "--lora", "0"), "lora")]
    for (b, f, c, *extra), message in cases:
        assert main(["audit", b, f, "--capability", c, "--out", tmp_path / "x", *FAST, *extra]) == 2, message
        err = capsys.readouterr().err.strip().splitlines()
        errors = [line for line in err if "error" in line]
        assert len(errors) == 1 and message in errors[0], (message, err)
        assert "Traceback" not in "\n".join(err)


def _edit_weights(src: Path, dst: Path, edit) -> Path:
    from safetensors.torch import load_file, save_file

    out = _copy(src, dst)
    state = load_file(str(out / "model.safetensors"))
    edit(state)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def _with_tokenizer(src: Path, dst: Path, edit) -> Path:
    out = _copy(src, dst)
    tok = load_tokenizer(out, "x")
    edit(tok)
    tok.save_pretrained(out)
    return out


def test_what_slipped_through_the_gates_is_refused_in_one_line(gpt2_pair, tmp_path, capsys):
    """Inputs a hostile user found accepted (exit 0 with garbage or NaN numbers, or a traceback): each now one line,
    exit 2, before any measurement, and no empty --out directory is left behind."""
    base, finetuned, never, cap = gpt2_pair

    def first(state):  # the name of a tensor every GPT-2 has
        return next(k for k in sorted(state) if k.endswith("ln_f.weight"))

    missing = _edit_weights(finetuned, tmp_path / "missing_t", lambda st: st.pop(sorted(st)[3]))
    extra = _edit_weights(finetuned, tmp_path / "extra_t", lambda st: st.update(bogus=torch.zeros(2)))
    huge = _edit_weights(finetuned, tmp_path / "huge", lambda st: st[first(st)].fill_(3e38))  # finite, overflows
    base_copy = _copy(base, tmp_path / "base_copy")
    from tokenizers import processors

    def no_bos(tok):
        tok.backend_tokenizer.post_processor = processors.TemplateProcessing(single="$A")

    nobos = _with_tokenizer(finetuned, tmp_path / "nobos", no_bos)
    template = "{{ messages[0]['content'] | nosuchfilter }}"
    broken = [_with_tokenizer(m, tmp_path / f"ct_{m.name}", lambda t: setattr(t, "chat_template", template))
              for m in (base, finetuned)]
    surrogate = tmp_path / "surrogate.jsonl"
    surrogate.write_text(cap.read_text() + '{"prompt": "Q k3 = \\ud800", "answer": "v1"}\n')
    cases = [((base, missing, cap), "missing weights"),
             ((base, extra, cap), "unexpected weights (bogus)"),
             ((base, huge, cap), "non-finite answer log-probs"),
             ((base, base, cap), "a model other than BASE"),
             ((base, finetuned, cap, "--control", base_copy), "the same weights as BASE"),
             ((base, nobos, cap), "tokenization rules differ"),
             ((*broken, cap, "--chat-template"), "a template that fails"),
             ((base, finetuned, surrogate), "valid Unicode"),
             ((base, finetuned, cap, "--out", base), "apart from the audit's inputs"),
             ((base, finetuned, cap, "--out", ""), "out: got 'an empty path'"),
             ((base, finetuned, cap, "--control", ""), "control: got 'an empty path'")]
    for (b, f, c, *extra_args), message in cases:
        out = tmp_path / "never_made"
        assert main(["audit", b, f, "--capability", c, "--out", out, *FAST, *extra_args]) == 2, message
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and not captured.out, (message, err, captured.out)
        assert not out.exists(), message
    assert not list(base.glob("audit*"))  # nothing was written into a model's directory


def test_multiple_choice_letters_must_be_known_tokens():
    from wrapperlab.audit.encode import letter_tokens

    assert len(letter_tokens(T.tokenizer(), ("A", "B", "C", "D"), False)) == 4
    with pytest.raises(ConfigError, match="unknown"):  # "E" is not in the vocabulary: it would be scored as <unk>
        letter_tokens(T.tokenizer(), ("A", "B", "C", "D", "E"), False)


def test_sharded_safetensors_and_pytorch_bin_read(gpt2_pair, tmp_path):
    """Weights as people ship them: sharded safetensors with an index, or pytorch_model.bin."""
    base, _, _, cap = gpt2_pair
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True)
    reference = score(_lm(base), encode(load_capability(cap), load_tokenizer(base, "BASE"), 32)).logprob
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 1
    T.tokenizer().save_pretrained(tmp_path / "sharded")
    binary = _copy(base, tmp_path / "bin")
    torch.save(model.state_dict(), binary / "pytorch_model.bin")
    (binary / "model.safetensors").unlink()
    for path in (tmp_path / "sharded", binary):
        got = score(_lm(path), encode(load_capability(cap), load_tokenizer(path, "BASE"), 32)).logprob
        assert got == pytest.approx(reference, abs=1e-6)


def test_audit_config_refuses_what_cannot_be_run():
    from wrapperlab.runs.profiles import validated

    for bad, field in (({"probe_iters": -5}, "probe_iters"), ({"relearn": {"lr": float("inf")}}, "lr"),
                       ({"relearn": {"lr": 5.0}}, "lr"), ({"seeds": 0}, "seeds"), ({"dtype": "fp8"}, "dtype")):
        with pytest.raises(ConfigError, match=field):
            validated(AuditConfig, bad)


def test_a_pcfg_run_exports_and_reaches_the_same_audit(tmp_path, capsys):
    """A task of ours as a capability: `data sample --capability` lines, read by the exported model's word-level
    tokenizer as the very ids the model was trained on, and the audit's gate on it — a model pretrained 4 steps does
    not answer counts, so there is no removal to audit: refused in one line naming what BASE scores."""
    from wrapperlab.data.samples import PCFGData
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.pcfg.stages import load_model as load_pcfg
    from wrapperlab.settings.pcfg.stages import pretraining_config

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
    capsys.readouterr()
    tok, lm = load_tokenizer(tmp_path / "hf", "BASE"), _lm(tmp_path / "hf")
    ours = load_pcfg(RunStore(runs).resolve(run))
    ids = tok(first["prompt"]).input_ids
    vocab = PCFGData(pretraining_config(RunStore(runs).resolve(run)).data).vocab
    assert ids == [vocab.id(t) for t in first["prompt"].split()]  # the ids the model was trained on
    with torch.no_grad():
        t = torch.tensor([ids])
        assert torch.allclose(lm.model(input_ids=t).logits, ours(t), atol=1e-5)  # read natively: the same model
    assert main(["pretrain", "--profile", "test", "--quiet", "--runs", runs, "--iters", "4", "--seed", "1"]) == 0
    other = next(p.name for p in runs.iterdir() if p.name.startswith("pretrain-") and p.name != run)
    assert main(["export", other, tmp_path / "hf1", "--runs", runs]) == 0  # another model: FINETUNED is not BASE
    capsys.readouterr()
    assert main(["audit", tmp_path / "hf", tmp_path / "hf1", "--capability", tmp_path / "count_a.jsonl", "--out",
                 tmp_path / "audit", *FAST]) == 2
    err = capsys.readouterr().err
    assert "records BASE answers" in err and "Traceback" not in err


def test_the_docs_print_the_estimates_what_fits_table():
    from wrapperlab.audit.estimate import fits_table

    assert fits_table() in (Path(__file__).resolve().parents[1] / "docs" / "audit.md").read_text()


def test_a_capability_mostly_outside_the_vocabulary_is_refused_and_a_little_is_said(gpt2_pair, tmp_path):
    """Words the tokenizer does not know became <unk> without a word: the audit measured the unknown token."""
    from wrapperlab.audit.encode import check_unknown

    tok = load_tokenizer(gpt2_pair[0], "BASE")
    said: list[str] = []
    clean = load_capability(gpt2_pair[3])
    assert check_unknown(encode(clean, tok, 32), tok, clean, said.append) == 0 and not said
    some = Capability("some", tuple(Example(e.prompt, e.answer, e.line) for e in clean.examples[:-1])
                      + (Example("Q k1 =", "zebra", 99),))  # one unknown token in ~100
    assert check_unknown(encode(some, tok, 32), tok, some, said.append) == 1 and "<unk>" in said[0]
    foreign = Capability("foreign", tuple(Example(f"Q {w} =", "v1", i + 1) for i, w in
                                          enumerate(["zebra", "k1", "yak", "k2"] * 6)))
    with pytest.raises(ConfigError, match=r"foreign:1: got '\d+ of \d+ tokens unknown"):
        check_unknown(encode(foreign, tok, 32), tok, foreign, said.append)


def test_the_capability_gate_asks_control_where_shuffled_answers_cannot_tell(gpt2_pair):
    """A feature of every answer (here: one answer for every prompt) survives shuffling, so BASE's true and shuffled
    answers tie; a CONTROL that never had the capability can still show BASE has something to remove."""
    from wrapperlab.audit.run import Models, answered

    base, finetuned, never, _ = gpt2_pair
    tok = load_tokenizer(base, "BASE")
    same = Capability("one answer", tuple(Example(f"Q k{k} =", f"v{T.answer_of(0)}", k + 1) for k in [0] * 24))
    real = shuffled = encode(same, tok, 32)
    cfg = AuditConfig()
    with pytest.raises(ConfigError, match="records BASE answers"):
        answered(Models(_lm(base), _lm(finetuned, "FINETUNED"), None, tok), real, shuffled, same, cfg)
    gate = answered(Models(_lm(base), _lm(finetuned, "FINETUNED"), _lm(never, "CONTROL"), tok), real, shuffled, same,
                    cfg)
    assert gate["true"] == gate["shuffled"] and gate["true"] - gate["control"] >= 0.1


def test_a_sigkill_while_the_audit_writes_never_leaves_two_audits_mixed(gpt2_pair, tmp_path):
    """A real SIGKILL at every file operation of the write (each rename and removal, in a forked child): the
    directory holds the earlier set whole, or part of the new one without audit.json, or the new set whole — never
    files of two audits side by side (what a kill left before the write became one set); the next write completes."""
    import os
    import signal

    from wrapperlab import api
    from wrapperlab.report.audit import AUDIT_FILES, STAGING, write_audit

    base, finetuned, control, cap = gpt2_pair
    settings = {"relearn": {"steps": 4, "batch_size": 8}, "probe_iters": 50}
    out, ref = tmp_path / "out", tmp_path / "ref"
    api.audit(base, finetuned, cap, control=control, out=out, **settings)
    new = api.audit(base, finetuned, cap, control=control, attack_share=0.4, **settings)
    write_audit(new, ref)
    old_set = {n: (out / n).read_bytes() for n in AUDIT_FILES}
    new_set = {n: (ref / n).read_bytes() for n in AUDIT_FILES}
    assert all(old_set[n] != new_set[n] for n in ("audit.json", "audit.md"))  # the two audits can be told apart
    outcomes, k = set(), 0
    while True:
        k += 1
        pid = os.fork()
        if pid == 0:  # the child dies at its k-th rename or removal
            calls = [0]
            real = {"replace": os.replace, "unlink": os.unlink}

            def dying(name):
                def op(*args, **kwargs):
                    calls[0] += 1
                    if calls[0] == k:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return real[name](*args, **kwargs)
                return op

            os.replace, os.unlink = dying("replace"), dying("unlink")
            try:
                write_audit(new, out)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        files = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(STAGING)}
        assert set(files) <= set(AUDIT_FILES)
        sets = {"old" if files[n] == old_set[n] else "new" if files[n] == new_set[n] else "other" for n in files}
        assert len(sets) <= 1 and "other" not in sets, (k, sets)
        if "audit.json" in files:
            assert set(files) == set(AUDIT_FILES), k  # audit.json only beside a whole set
        outcomes.add((sets.pop() if sets else "none", "audit.json" in files))
        if not os.WIFSIGNALED(status):
            break
        for name in AUDIT_FILES:  # back to the earlier set for the next kill
            (out / name).write_bytes(old_set[name])
    assert k > 8 and ("old", True) in outcomes and ("new", False) in outcomes and ("new", True) in outcomes
    write_audit(new, out)
    assert {p.name for p in out.iterdir()} == set(AUDIT_FILES)  # a killed child's staging removed by the next
