"""Story generation speed, as ratios measured in one run (absolute times on these machines are noise).

Every generation score samples stories for many prompts; the stories stage measures before and after each run
and mid-reFT, so generation is a large share of the stories experiment's time. Compared, on the quick story
model shape (2 x 128, context 160) with 16 prompts x 4 samples of up to 128 new tokens:

(a) one prompt at a time, recomputing the whole window every token (the straightforward loop: ``generate``);
(b) all prompts in one left-padded batch with cached keys/values (``generate_many``; what the stages use).

Prints (a) / (b) per round and the median: how many times faster the stages' generator is.

    python benchmarks/story_generation.py [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from wrapperlab.models.gpt import GPT, GPTConfig
from wrapperlab.settings.stories.evaluate import Sampling, generate, generate_many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("stories-quick", vocab_size=1024, n_ctx=160, n_layers=2)).eval()
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(1, 1023, (int(torch.randint(38, 56, (1,), generator=gen)),), generator=gen).tolist()
               for _ in range(args.prompts)]
    end = 1023  # an untrained model seldom samples it: stories run to full length, the costly case
    ratios = []
    for r in range(args.rounds):
        t0 = time.perf_counter()
        for i, p in enumerate(prompts):
            generate(model, p, Sampling(args.samples, args.max_new, seed=r + i), end)
        plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        generate_many(model, prompts, Sampling(args.samples, args.max_new, seed=r), end)
        batched = time.perf_counter() - t0
        ratios.append(plain / batched)
        print(f"round {r}: prompt by prompt / batched + cached = {ratios[-1]:.2f}x")
    print(f"median speed-up of the stages' generator: {statistics.median(ratios):.2f}x "
          f"({args.prompts} prompts x {args.samples} samples x {args.max_new} tokens, {args.threads} thread(s))")


if __name__ == "__main__":
    main()
