"""A story language model learns from the token stream; story-only loss and seeded generation behave."""

import torch

from wrapperlab.analysis.judge import Judge
from wrapperlab.analysis.story_eval import generate, generation_scores, story_loss
from wrapperlab.data.stories.corpus import StoriesDataConfig, TokenStream, fit_tokenizer, records
from wrapperlab.models.gpt import GPT, GPTConfig
from wrapperlab.training.config import Runtime, TrainConfig
from wrapperlab.training.loop import train


def test_tiny_story_model_learns_and_generates():
    cfg = StoriesDataConfig(n_records=1500, tokenizer_records=1500, vocab_size=400, context=96)
    tok = fit_tokenizer(cfg)
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("stories-quick", vocab_size=tok.get_vocab_size(), n_ctx=96, n_layers=2, d_model=64,
                                 n_heads=2))
    twist = [r for r in records(cfg, "test") if "Twist" in r.has][:24]
    before = story_loss(model, tok, twist)
    train(model, TokenStream(cfg, tok).stream(0, 16),
          TrainConfig(iters=150, batch_size=16, lr=3e-3, warmup_frac=0.1, eval_every=1000, checkpoint_every=1000),
          Runtime(progress=False))
    after = story_loss(model, tok, twist)
    assert after < 0.5 * before, (before, after)
    end = tok.token_to_id("<|endoftext|>")
    prompt = tok.encode("Features: Twist\nStory:").ids
    a, b = generate(model, prompt, 2, 40, end, seed=3), generate(model, prompt, 2, 40, end, seed=3)
    assert a == b and all(len(s) <= 40 and end not in s for s in a)
    judge = Judge.fit(list(records(cfg)))
    scores = generation_scores(model, tok, judge, list(records(cfg, "test"))[:4], samples=2, max_new=40)
    assert scores["n_requested"] + scores["n_unrequested"] == 8
    assert all(0.0 <= scores[k] <= 1.0 for k in ("requested", "unrequested") if scores[f"n_{k}"])
