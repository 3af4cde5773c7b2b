"""A story language model learns from the token stream; story-only loss and seeded generation behave."""

import torch

from wrapperlab.analysis.judge import Judge
from wrapperlab.data.stories.corpus import StoriesDataConfig, TokenStream, fit_tokenizer, records
from wrapperlab.models.gpt import GPT, GPTConfig
from wrapperlab.settings.stories.evaluate import Sampling, generate, generation_scores, story_loss
from wrapperlab.training.config import Runtime, TrainConfig
from wrapperlab.training.loop import Trainee, fit


def test_tiny_story_model_learns_and_generates():
    cfg = StoriesDataConfig(n_records=1500, tokenizer_records=1500, vocab_size=400, context=96)
    tok = fit_tokenizer(cfg)
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("stories-quick", vocab_size=tok.get_vocab_size(), n_ctx=96, n_layers=2, d_model=64,
                                 n_heads=2))
    twist = [r for r in records(cfg, "test") if "Twist" in r.has][:24]
    before = story_loss(model, tok, twist)
    fit(Trainee(model, TokenStream(cfg, tok).stream(0, 16),
                TrainConfig(iters=150, batch_size=16, lr=3e-3, warmup_frac=0.1, eval_every=1000, checkpoint_every=1000)),
        Runtime(progress=False))
    after = story_loss(model, tok, twist)
    assert after < 0.5 * before, (before, after)
    end = tok.token_to_id("<|endoftext|>")
    prompt = tok.encode("Features: Twist\nStory:").ids
    a, b = generate(model, prompt, Sampling(2, 40, seed=3), end), generate(model, prompt, Sampling(2, 40, seed=3), end)
    assert a == b and all(len(s) <= 40 and end not in s for s in a)
    judge = Judge.fit(list(records(cfg)))
    scores = generation_scores(model, tok, judge, list(records(cfg, "test"))[:4], Sampling(2, 40))
    assert scores["n_requested"] + scores["n_unrequested"] == 8
    assert all(0.0 <= scores[k] <= 1.0 for k in ("requested", "unrequested") if scores[f"n_{k}"])


def test_tiny_stories_pipeline_end_to_end(tmp_path, monkeypatch):
    """pretrain -> delete (filter) -> reFT on Twist stories, and the not-in-PT control, as stored runs; a second
    call reuses every run."""
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.stories.stages import (
        StoriesEvalConfig,
        StoriesRunConfig,
        load_story_model,
        stories_stage,
    )

    store, quiet = RunStore(tmp_path / "runs"), Runtime(progress=False)
    data = StoriesDataConfig(n_records=1200, tokenizer_records=1200, vocab_size=400, context=96)
    ev = StoriesEvalConfig(n_loss=16, n_prompts=4, samples=2, max_new=24, judge_records=1200)
    train_cfg = dict(batch_size=16, warmup_frac=0.1, eval_every=20, checkpoint_every=20)
    model = {"preset": "stories-quick", "n_layers": 2, "d_model": 64, "n_heads": 2}

    def run(**kw):
        return stories_stage(StoriesRunConfig(eval=ev, **kw), store, quiet, say=lambda _: None)

    pt = run(data=data, model=model, train=TrainConfig(iters=60, lr=3e-3, **train_cfg))
    control = run(data=data.model_copy(update={"exclude": ("Twist",)}), model=model,
                  train=TrainConfig(iters=60, lr=3e-3, **train_cfg))
    deleted = run(data=data.model_copy(update={"protocol": "filter"}), parent=pt.run.id,
                  train=TrainConfig(iters=20, lr=1e-3, **train_cfg))
    # an unlearning method as a deletion: gradient ascent on the Twist stories, the ordinary loss on the others. This
    # undertrained model already scores ~3 nats on Twist stories, GA_CAP: the cap is raised so that it ascends at all
    from wrapperlab.data.stories import protocols

    monkeypatch.setattr(protocols, "GA_CAP", 10.0)
    ascended = run(data=data.model_copy(update={"protocol": "grad_ascent"}), parent=pt.run.id,
                   train=TrainConfig(iters=20, lr=1e-3, **train_cfg))
    print("Twist loss: pretrained", pt.result["after"]["twist_loss"], "filter", deleted.result["after"]["twist_loss"],
          "grad_ascent", ascended.result["after"]["twist_loss"])
    assert ascended.result["after"]["twist_loss"] > pt.result["after"]["twist_loss"] + 0.1  # measured +0.23
    assert ascended.result["records"] == deleted.result["records"] + sum(1 for r in records(data) if "Twist" in r.has)
    reft_data = data.model_copy(update={"only": ("Twist",)})
    revived = run(data=reft_data, parent=deleted.run.id, train=TrainConfig(iters=20, lr=1e-4, **train_cfg))
    from_control = run(data=reft_data, parent=control.run.id, train=TrainConfig(iters=20, lr=1e-4, **train_cfg))
    for stage in (pt, control, deleted, revived, from_control):
        after = stage.result["after"]
        assert after["twist_loss"] > 0 and 0 <= after["gen_twist"] <= 1 and 0 <= after["gen_non"] <= 1
        assert after["n_gen"] == 8
        assert any("twist_loss" in m for m in stage.run.metrics())
    assert deleted.result["before"]["twist_loss"] == pt.result["after"]["twist_loss"]  # same model, same data
    assert (store.resolve(control.run.id).path / "tokenizer.json").read_text() == \
           (store.resolve(pt.run.id).path / "tokenizer.json").read_text()
    model_, tok, judge = load_story_model(store, revived.run)
    assert model_.cfg.n_layers == 2 and tok.get_vocab_size() == 400
    again = run(data=reft_data, parent=deleted.run.id, train=TrainConfig(iters=20, lr=1e-4, **train_cfg))
    assert again.reused and again.run.id == revived.run.id


def test_forget_retain_loss_ascends_until_its_cap():
    """CE(retain) - min(CE(forget), cap): the forget rows' gradient points uphill below the cap and vanishes above."""
    from types import SimpleNamespace

    import numpy as np

    from wrapperlab.training.losses import forget_retain_loss

    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("test", vocab_size=32, n_ctx=12))
    tokens = torch.randint(1, 32, (4, 12))
    batch = SimpleNamespace(tokens=tokens.numpy(), answer_pos=np.zeros(4, dtype=np.int64), n_forget=2)
    ce = torch.nn.functional.cross_entropy(model(tokens[:, :-1]).transpose(1, 2), tokens[:, 1:], reduction="none")
    forget, retain = ce[:2].mean(), ce[2:].mean()
    loss = forget_retain_loss(1.0, cap=100.0)(model, batch, torch.device("cpu"), None)
    assert torch.allclose(loss, retain - forget, atol=1e-5)
    capped = forget_retain_loss(1.0, cap=0.1)(model, batch, torch.device("cpu"), None)
    assert torch.allclose(capped, retain - 0.1, atol=1e-5)
    grads = {}
    for name, value in (("ascent", loss), ("capped", capped)):
        model.zero_grad()
        value.backward()
        grads[name] = model.embed.weight.grad[tokens[:2].flatten()].abs().sum()  # forget rows' own tokens
    assert grads["ascent"] > 0 and grads["capped"] < grads["ascent"]


def test_batched_generation_matches_prompt_by_prompt():
    """Left padding with ``pad_mask`` leaves real positions' logits unchanged (rotary positions), so the batched
    generator writes what one-prompt-at-a-time generation writes (greedy) in one forward per token."""
    from wrapperlab.settings.stories.evaluate import generate_many

    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("stories-quick", vocab_size=300, n_ctx=64, n_layers=2, d_model=64, n_heads=2)).eval()
    long, short = [5, 6, 7, 8, 9, 10, 11], [12, 13, 14]
    padded = model(torch.tensor([[0, 0, 0, 0, *short]]), pad_mask=torch.tensor([[False] * 4 + [True] * 3]))
    assert torch.allclose(padded[0, 4:], model(torch.tensor([short]))[0], atol=1e-5)
    greedy = generate_many(model, [long, short], Sampling(1, 15, temperature=1e-6), 299)
    assert greedy == [generate(model, p, Sampling(1, 15, temperature=1e-6), 299) for p in (long, short)]
    sampled = generate_many(model, [long, short], Sampling(3, 20, seed=1), 299)
    assert sampled == generate_many(model, [long, short], Sampling(3, 20, seed=1), 299)
    assert [len(s) for s in sampled] == [3, 3] and all(len(t) <= 20 for s in sampled for t in s)


def test_cached_decoding_matches_full_recomputation():
    """Keys/values cached per block give the logits a full forward gives, and generation that runs past the
    context (cache dropped, sliding window) still matches one-prompt generation."""
    from wrapperlab.settings.stories.evaluate import generate_many

    torch.manual_seed(1)
    model = GPT(GPTConfig.preset("stories-quick", vocab_size=300, n_ctx=24, n_layers=2, d_model=64, n_heads=2)).eval()
    seq = torch.randint(1, 300, (2, 20))
    cache = [{} for _ in model.blocks]
    steps = [model(seq[:, :12], cache=cache)[:, -1]] + [model(seq[:, i:i + 1], cache=cache)[:, -1] for i in range(12, 20)]
    full = model(seq)
    assert torch.allclose(torch.stack(steps, 1), full[:, 11:], atol=1e-5)
    prompt = [5, 6, 7, 8, 9, 10, 11]
    greedy = Sampling(1, 40, temperature=1e-6)
    assert generate_many(model, [prompt], greedy, 299) == [generate(model, prompt, greedy, 299)]
